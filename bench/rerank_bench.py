"""Benchmark of k-reciprocal re-ranking (`feature_extraction.rerank`), run by hand (not a test).

Part 1, memory. Q = G = 50,000 clustered 512-d features (`eval_bench.make_dataset`; query set == gallery set, self
matches left out by unique ids, as PaddleClas evaluates), evaluated with `retrieval_metrics(..., scorer=KReciprocal())`
(k1 20, k2 6, lambda 0.3) in a subprocess: its time and its peak RSS above the features, against what the dense
method (PaddleClas's, fast-reid's) would hold: the original distances (float32), their argsort (int32), the weights
and the expanded weights (float16) of all N = Q + G points, N^2 each, and the Jaccard distances (float16, Q x N).
Target: under 2 GiB above the features.

Part 2, speed. Q = G = 5,000 (N = 10,000): the re-ranked distances by `KReciprocal.distances` and by PaddleClas's
`compute_re_ranking_dist` (transcribed below, float16 and all), timed in the same run, and how far apart they are
(PaddleClas's float16 keeps them about 2e-3 apart).

    python bench/rerank_bench.py                      # both parts, about 4 minutes on 2 cores
    python bench/rerank_bench.py --skip-memory --size 2000
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eval_bench import cpu_description, machine_info, make_dataset, peak_rss_mib, try_reset_hwm  # noqa: E402 (this folder's scripts)

from feature_extraction.metrics import retrieval_metrics  # noqa: E402
from feature_extraction.rerank import KReciprocal  # noqa: E402

MEMORY_SIZE, SPEED_SIZE, TARGET_MIB = 50_000, 5_000, 2048


def paddleclas_re_ranking(query: np.ndarray, gallery: np.ndarray, k1=20, k2=6, lambda_value=0.3) -> np.ndarray:
    "PaddleClas's `compute_re_ranking_dist` (ppcls/engine/evaluation/retrieval.py), in NumPy as it runs there."
    feat = np.concatenate([query, gallery]).astype(np.float32)
    query_num, all_num = len(query), len(feat)
    sq = (feat ** 2).sum(1, keepdims=True)
    original_dist = sq + sq.T - 2 * feat @ feat.T
    original_dist = np.transpose(original_dist / np.max(original_dist, axis=0))
    V = np.zeros_like(original_dist).astype(np.float16)
    initial_rank = np.argsort(original_dist).astype(np.int32)
    for i in range(all_num):
        forward_k_neigh_index = initial_rank[i, :k1 + 1]
        backward_k_neigh_index = initial_rank[forward_k_neigh_index, :k1 + 1]
        k_reciprocal_index = forward_k_neigh_index[np.where(backward_k_neigh_index == i)[0]]
        k_reciprocal_expansion_index = k_reciprocal_index
        for candidate in k_reciprocal_index:
            candidate_forward = initial_rank[candidate, :int(np.around(k1 / 2)) + 1]
            candidate_backward = initial_rank[candidate_forward, :int(np.around(k1 / 2)) + 1]
            candidate_k_reciprocal = candidate_forward[np.where(candidate_backward == candidate)[0]]
            if len(np.intersect1d(candidate_k_reciprocal, k_reciprocal_index)) > 2 / 3 * len(candidate_k_reciprocal):
                k_reciprocal_expansion_index = np.append(k_reciprocal_expansion_index, candidate_k_reciprocal)
        k_reciprocal_expansion_index = np.unique(k_reciprocal_expansion_index)
        weight = np.exp(-original_dist[i, k_reciprocal_expansion_index])
        V[i, k_reciprocal_expansion_index] = weight / np.sum(weight)
    original_dist = original_dist[:query_num]
    if k2 != 1:
        V_qe = np.zeros_like(V, dtype=np.float16)
        for i in range(all_num):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
    inv_index = [np.where(V[:, i] != 0)[0] for i in range(all_num)]
    jaccard_dist = np.zeros_like(original_dist, dtype=np.float16)
    for i in range(query_num):
        temp_min = np.zeros(shape=[1, all_num], dtype=np.float16)
        ind_non_zero = np.where(V[i, :] != 0)[0]
        ind_images = [inv_index[ind] for ind in ind_non_zero]
        for j in range(len(ind_non_zero)):
            temp_min[0, ind_images[j]] = temp_min[0, ind_images[j]] + np.minimum(V[i, ind_non_zero[j]],
                                                                                 V[ind_images[j], ind_non_zero[j]])
        jaccard_dist[i] = 1 - temp_min / (2 - temp_min)
    final_dist = jaccard_dist * (1 - lambda_value) + original_dist * lambda_value
    return final_dist[:query_num, query_num:]


def dense_mib(n_query: int, n_gallery: int) -> float:
    "What the dense method holds at once: distances float32, argsort int32, V and V_qe float16 (N^2 each), Jaccard."
    n = n_query + n_gallery
    return (n * n * (4 + 4 + 2 + 2) + n_query * n * 2) / 2**20


def memory_child(n: int, threads: int):
    "In a fresh process: the features, then the re-ranked evaluation; one JSON line with its time and peak RSS."
    feats, labels, ids = make_dataset(n)
    reset, base = try_reset_hwm(), peak_rss_mib()
    start = time.perf_counter()
    found = retrieval_metrics(feats, feats, labels, labels, ids, ids, scorer=KReciprocal(), num_threads=threads)
    seconds, peak = time.perf_counter() - start, peak_rss_mib()
    plain = retrieval_metrics(feats, feats, labels, labels, ids, ids, num_threads=threads)
    print(json.dumps({"n": n, "features_mib": feats.nbytes / 2**20, "above_mib": peak - base, "hwm_reset": reset,
                      "seconds": seconds, "reranked": found, "cosine": plain}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--size", type=int, default=SPEED_SIZE, help="Q = G of the timed comparison")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child: return memory_child(args.memory_child, args.threads)
    info = machine_info()
    print(f"machine: {cpu_description()}; {info['usable_cores']} cores; {args.threads} threads")
    ok = True
    if not args.skip_memory:
        command = [sys.executable, os.path.abspath(__file__), "--memory-child", str(MEMORY_SIZE), "--threads",
                   str(args.threads)]
        report = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        ok &= report["above_mib"] < TARGET_MIB
        print(f"Q = G = {MEMORY_SIZE}: re-ranked evaluation in {report['seconds']:.1f} s, peak RSS "
              f"{report['above_mib']:.0f} MiB above the features ({report['features_mib']:.0f} MiB; target < "
              f"{TARGET_MIB}); the dense method would hold {dense_mib(MEMORY_SIZE, MEMORY_SIZE) / 1024:.0f} GiB")
        for name in ("cosine", "reranked"):
            m = report[name]
            print(f"  {name:9} recall1 {m['recall1']:.4f} recall5 {m['recall5']:.4f} mAP {m['mAP']:.4f}")
    feats, _, _ = make_dataset(2 * args.size)
    query, gallery = feats[:args.size], feats[args.size:]
    start = time.perf_counter()
    ours = KReciprocal().distances(query, gallery, args.threads)
    ours_seconds = time.perf_counter() - start
    start = time.perf_counter()
    theirs = paddleclas_re_ranking(query, gallery)
    theirs_seconds = time.perf_counter() - start
    print(f"Q = G = {args.size}: KReciprocal {ours_seconds:.1f} s, PaddleClas's method {theirs_seconds:.1f} s "
          f"({theirs_seconds / ours_seconds:.1f}x; dense memory {dense_mib(args.size, args.size):.0f} MiB); largest "
          f"difference {np.abs(ours - theirs).max():.1e} (PaddleClas works in float16)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
