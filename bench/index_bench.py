"""Benchmark of `feature_extraction.gallery.Gallery`, run by hand (not a test).

For N synthetic 512-d vectors (default N = 100 000 and 1 000 000) and each index type, in the same run: the time to
build the gallery (add, plus training and indexing), queries per second for 1000 queries at k = 10, recall@10
against exact search (`Flat`, which is the metrics engine's brute-force `knn`), and the memory of what is searched
(the float32 vectors for `Flat`, the serialised faiss index for the others; every gallery also keeps its float32
vectors, for re-scoring and rebuilding). The binary indexes (`BFlat`, `BIVF<lists>`: sign bits, Hamming distance)
are measured with their default re-scoring (10 candidates per answer, by the float vectors), with 50, and without. The
vectors are clustered like image features: N / 1000 cluster centres on the unit sphere, each vector its centre plus
Gaussian noise of the same expected norm, L2-normalised; queries are drawn the same way. Search breadth is the
library's default (IVF nprobe max(16, 2 sqrt(lists)), HNSW efSearch 128).

    python bench/index_bench.py                              # 100k and 1M, all types (1M takes a while on 2 cores)
    python bench/index_bench.py --sizes 100000 --types Flat HNSW32
    python bench/index_bench.py --sizes 1000000 --types Flat BFlat BIVF  # binary codes against float, at 1M
"""
import argparse
import os
import sys
import time

import faiss
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eval_bench import cpu_description  # noqa: E402 (this folder's scripts)

from feature_extraction.gallery import (BINARY_FAMILIES, Gallery, Item, default_index_type,  # noqa: E402
                                        set_search_breadth)
from feature_extraction.metrics import l2_normalize  # noqa: E402

DIM, QUERIES, K, SEED = 512, 1000, 10, 0
EF_SWEEP = (256, 512)  # HNSW efSearch values measured beside the default 128
RESCORE_SWEEP = (50, 0)  # binary indexes: candidates re-scored per answer measured beside the default 10
TARGET_RECALL = 0.95  # HNSW32 and IVF..,Flat against exact search (IVF-PQ is lossy and reported only)


def make_vectors(n: int, queries: int = QUERIES, dim: int = DIM, seed: int = SEED, chunk: int = 65536) -> tuple:
    "(gallery [n, dim], queries [queries, dim]) float32, clustered around n / 1000 centres, L2-normalised."
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.standard_normal((max(10, n // 1000), dim), dtype=np.float32))
    def draw(m):
        out = np.empty((m, dim), np.float32)
        for s in range(0, m, chunk):
            e = min(s + chunk, m)
            out[s:e] = l2_normalize(centres[rng.integers(0, len(centres), e - s)]
                                    + rng.standard_normal((e - s, dim), dtype=np.float32) / np.float32(np.sqrt(dim)))
        return out
    return draw(n), draw(queries)


def index_mib(g: Gallery) -> float:
    "MiB of what a search goes through: the float32 vectors for Flat, else the faiss index (serialised)."
    if g.family == "Flat": return g.vectors.nbytes / 2**20
    serialise = faiss.serialize_index_binary if g.family in BINARY_FAMILIES else faiss.serialize_index
    return len(serialise(g.index)) / 2**20


def timed_search(g: Gallery, queries: np.ndarray, exact, label: str, build: float, memory: float) -> dict:
    t = time.perf_counter()
    ids = g.search(queries, k=K).ids
    qps = len(queries) / (time.perf_counter() - t)
    recall = 1.0 if exact is None else float(np.mean([len(set(a) & set(b)) / K for a, b in zip(ids, exact)]))
    return {"type": label, "build_s": build, "qps": qps, "recall10": recall, "ids": ids, "index_mib": memory}


def bench(index_type: str, gallery: np.ndarray, queries: np.ndarray, exact, threads: int) -> list:
    t = time.perf_counter()
    g = Gallery(DIM, index_type, num_threads=threads)
    g.add(gallery, [Item("")] * len(gallery))  # the metadata is not what is measured: one shared empty item
    if g.family != "Flat": g.build_index()
    build, memory = time.perf_counter() - t, index_mib(g)
    g.search(queries[:10], k=K)  # warm-up
    rescored = f" (re-scored, {g.rescore} per answer)" if g.family in BINARY_FAMILIES else ""
    rows = [timed_search(g, queries, exact, index_type + rescored, build, memory)]
    for ef in (EF_SWEEP if g.family == "HNSW" else ()):  # the same graph searched wider: recall bought with speed
        set_search_breadth(g.index, ef_search=ef)
        rows.append(timed_search(g, queries, exact, f"{index_type} (efSearch {ef})", build, memory))
    for rescore in (RESCORE_SWEEP if g.family in BINARY_FAMILIES else ()):  # more candidates re-scored; 0: Hamming
        g.rescore = rescore
        label = f"{index_type} (re-scored, {rescore} per answer)" if rescore else f"{index_type} (Hamming only)"
        rows.append(timed_search(g, queries, exact, label, build, memory))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--types", nargs="+", default=["Flat", "IVF", "HNSW32", "IVFPQ", "BFlat", "BIVF"],
                        help="factory strings; IVF, IVFPQ and BIVF mean the default lists for the size (PQ64)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    print(f"machine: {cpu_description()}; {len(os.sched_getaffinity(0))} cores, {args.threads} threads", flush=True)
    ok, lines = True, ["| vectors | index type | build (s) | queries/s | recall@10 vs exact | vs Flat speed | "
                       "searched memory (MiB) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for n in args.sizes:
        gallery, queries = make_vectors(n)
        lists = 2 ** round(np.log2(4 * np.sqrt(n)))
        types = [{"IVF": f"IVF{lists},Flat", "IVFPQ": f"IVF{lists},PQ{DIM // 8}", "BIVF": f"BIVF{lists}"}.get(t, t)
                 for t in args.types]
        if "Flat" in types: types.remove("Flat")
        flat = bench("Flat", gallery, queries, None, args.threads)[0]  # the exact answers, measured first
        print(f"N={n} Flat: build {flat['build_s']:.1f} s, {flat['qps']:.0f} q/s (default type for this size: "
              f"{default_index_type(n, DIM)})", flush=True)
        rows = [flat]
        for t in types:
            measured = bench(t, gallery, queries, flat["ids"], args.threads)
            for r in measured:
                print(f"N={n} {r['type']}: build {r['build_s']:.1f} s, {r['qps']:.0f} q/s, "
                      f"recall@10 {r['recall10']:.4f}", flush=True)
            rows += measured
            if "PQ" not in t and not t.startswith("B"):  # IVF-PQ and binary codes are lossy: reported only
                ok &= max(r["recall10"] for r in measured) >= TARGET_RECALL
        lines += [f"| {n:,} | {r['type']} | {r['build_s']:.1f} | {r['qps']:.0f} | {r['recall10']:.4f} | "
                  f"{r['qps'] / flat['qps']:.1f}x | {r['index_mib']:.0f} |" for r in rows]
        del gallery
    print("\n" + "\n".join(lines))
    print(f"\nrecall@10 >= {TARGET_RECALL} for HNSW (at some efSearch) and IVF,Flat: " + ("met" if ok else "NOT MET"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
