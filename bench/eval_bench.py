"""Benchmark of `feature_extraction.metrics.retrieval_metrics`, run by hand (not a test).

For each size Q = G (query set == gallery set, unique ids so that self-matches are excluded) it times:

1. the engine: `retrieval_metrics(..., topk=(1, 5), metrics=("recall", "mAP"), num_threads=T)`;
2. the bare similarity matmul `q @ g.T`, in the blocks the engine uses, with T BLAS threads;
3. PaddleClas's method, re-implemented in NumPy (see `paddleclas_method`);

and prints the ratios, CPU time / wall time of the engine, where the engine's time goes (its compiled
ranking kernels vs the rest), and the peak memory of the engine at Q = G = 50000 measured in a subprocess.

    python bench/eval_bench.py                       # sizes 5000 and 20000, everything
    python bench/eval_bench.py --sizes 5000 --skip-paddleclas --skip-memory
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from feature_extraction.metrics import auto_block_size, retrieval_metrics

DIM = 512                   # feature dimension
NOISE = 2.4                 # norm of the per-image noise relative to its unit class centre: recall1 ~0.6-0.9
CLASS_SIZES = (4, 8)        # images per class, inclusive range
SEED = 0
TOPK = (1, 5)
METRICS = ("recall", "mAP")
PADDLECLAS_BLOCK = 64       # PaddleClas's default `Global.sim_block_size`
MEMORY_SIZE = 50000         # Q = G for the peak-memory run
MEMORY_TARGET_MIB = 1024
TARGET_VS_PADDLECLAS = 20.0  # PaddleClas-method time / engine time, at least
TARGET_VS_MATMUL = 2.0       # engine time / bare matmul time, at most
TARGET_CPU_UTIL = 1.5        # CPU time / wall time of the engine, at least (2 cores)
MATCH_TOL = 1e-4             # engine metrics vs PaddleClas-method metrics


# ---------------------------------------------------------------------------------------------- data

def make_dataset(n: int, dim: int = DIM, noise: float = NOISE, seed: int = SEED, chunk: int = 4096) -> tuple:
    """Clustered features: (features [n, dim] float32 L2-normalised, labels int64, unique ids int64).

    Classes of 4-8 images; class centres are random on the unit sphere; an image is its centre plus Gaussian
    noise of expected norm `noise`. Rows are made in chunks so that generating them needs little memory beyond
    the result (this keeps the memory baseline of the subprocess honest). Every class has >= 2 images, so every
    query has a positive other than itself.
    """
    rng = np.random.default_rng(seed)
    sizes = rng.integers(CLASS_SIZES[0], CLASS_SIZES[1] + 1, size=n // CLASS_SIZES[0] + 1)
    labels = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)[:n]
    if (labels == labels[-1]).sum() == 1: labels[-1] = labels[-2]  # no singleton class at the end
    centres = rng.standard_normal((int(labels[-1]) + 1, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    feats = np.empty((n, dim), np.float32)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        spread = np.float32(noise / np.sqrt(dim)) * rng.standard_normal((stop - start, dim), dtype=np.float32)
        x = centres[labels[start:stop]] + spread
        feats[start:stop] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return feats, labels, np.arange(n, dtype=np.int64)


# ---------------------------------------------------------------------------------------------- timed runs

def run_engine(feats, labels, ids, threads: int) -> tuple:
    """One engine run: (metrics dict, wall seconds, CPU seconds of the whole process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    res = retrieval_metrics(feats, feats, labels, labels, ids, ids, topk=TOPK, metrics=METRICS, num_threads=threads)
    return res, time.perf_counter() - wall, time.process_time() - cpu


def run_matmul(q, g, threads: int) -> float:
    """Wall seconds of the bare `q @ g.T`, in the engine's default blocks, into one reused buffer."""
    block = auto_block_size(len(q), len(g))
    buf = np.empty((min(block, len(q)), len(g)), np.float32)
    with threadpool_limits(limits=threads, user_api="blas"):
        t = time.perf_counter()
        for start in range(0, len(q), block):
            stop = min(start + block, len(q))
            np.matmul(q[start:stop], g.T, out=buf[:stop - start])
        return time.perf_counter() - t


def engine_breakdown(feats, labels, ids, threads: int) -> dict:
    """Seconds one engine run spends in the compiled ranking kernels (every function of
    `feature_extraction._retrieval`) and outside them (similarity matmuls, checks, normalisation, sorting).

    The kernels are wrapped with timers for the run and restored afterwards, so this follows whichever path
    (blocked or symmetric) the engine takes."""
    from feature_extraction import metrics
    ext, times = metrics.compiled("_retrieval"), {"kernels": 0.0}
    names = [n for n in dir(ext) if not n.startswith("_") and callable(getattr(ext, n))]
    originals = {n: getattr(ext, n) for n in names}

    def timed(fn):
        def run(*args, **kwargs):
            t = time.perf_counter()
            try: return fn(*args, **kwargs)
            finally: times["kernels"] += time.perf_counter() - t
        return run

    for n, fn in originals.items(): setattr(ext, n, timed(fn))
    try: _, wall, _ = run_engine(feats, labels, ids, threads)
    finally:
        for n, fn in originals.items(): setattr(ext, n, fn)
    if not times["kernels"]: raise RuntimeError("the engine called no compiled kernel")
    return times | {"matmul_and_other": wall - times["kernels"], "total": wall}


def best_of(fn, repeats: int):
    """Run `fn()` `repeats` times; return the result whose first timing element is smallest."""
    runs = [fn() for _ in range(repeats)]
    return min(runs, key=lambda r: r[1] if isinstance(r, tuple) else r)


# ---------------------------------------------------------------------------------------------- PaddleClas

def paddleclas_block_recall(sim, keep, q_labels, g_labels, topk) -> dict:
    """Recall@k of one block as PaddleClas's Recallk metric computes it: full descending sort of each row."""
    order = np.argsort(-sim, axis=1)
    flag = (g_labels[order] == q_labels[:, None]) & np.take_along_axis(keep, order, axis=1)
    flag = flag.astype(np.float32)
    real_query_num = np.sum(np.sum(flag, axis=1) > 0)
    cmc = np.sum(np.cumsum(flag, axis=1) > 0, axis=0) / real_query_num
    return {f"recall{k}": float(cmc[k - 1]) for k in topk}


def paddleclas_block_map(sim, keep, q_labels, g_labels) -> float:
    """mAP of one block as PaddleClas's mAP metric computes it: its own full sort of each row."""
    order = np.argsort(-sim, axis=1)
    flag = (g_labels[order] == q_labels[:, None]) & np.take_along_axis(keep, order, axis=1)
    flag = flag.astype(np.float32)
    flag = flag[np.sum(flag, axis=1) > 0]
    precision = np.cumsum(flag, axis=1) / (np.arange(flag.shape[1], dtype=np.float32) + 1)
    ap = np.sum(flag * precision, axis=1) / np.sum(flag, axis=1)
    return float(np.mean(ap))


def paddleclas_method(feats, labels, ids, threads: int, topk=TOPK) -> tuple:
    """PaddleClas's method (ppcls/engine/evaluation/retrieval.py + ppcls/metric/metrics.py) re-implemented in
    NumPy: blocks of 64 queries; per block the similarity matmul, the keep mask (label or unique id differs),
    excluded similarities set to 0, then Recallk and mAP each sorting every row in full, and the block
    metrics averaged with weights block size / number of queries. Returns (metrics dict, wall seconds)."""
    n_query, out = len(feats), {}
    t = time.perf_counter()
    with threadpool_limits(limits=threads, user_api="blas"):
        for start in range(0, n_query, PADDLECLAS_BLOCK):
            stop = min(start + PADDLECLAS_BLOCK, n_query)
            sim = feats[start:stop] @ feats.T
            keep = (labels[start:stop, None] != labels[None, :]) | (ids[start:stop, None] != ids[None, :])
            sim *= keep
            block = paddleclas_block_recall(sim, keep, labels[start:stop], labels, topk)
            block["mAP"] = paddleclas_block_map(sim, keep, labels[start:stop], labels)
            for key, value in block.items():
                out[key] = out.get(key, 0.0) + value * (stop - start) / n_query
    return out, time.perf_counter() - t


# ---------------------------------------------------------------------------------------------- memory

def memory_child(n: int, threads: int) -> None:
    """In a fresh process: make the features, take the RSS high-water mark as baseline, run the engine and
    print one JSON line with the peak RSS above that baseline (MiB) and the engine's wall time."""
    feats, labels, ids = make_dataset(n)
    reset = try_reset_hwm()
    base = peak_rss_mib()
    with threadpool_limits(limits=threads, user_api="blas"):
        res, wall, cpu = run_engine(feats, labels, ids, threads)
    peak = peak_rss_mib()
    print(json.dumps({"n": n, "features_mib": feats.nbytes / 2**20, "baseline_mib": base, "peak_mib": peak,
                      "above_mib": peak - base, "hwm_reset": reset, "seconds": wall, "cpu_util": cpu / wall,
                      "recall1": res["recall1"], "mAP": res["mAP"]}))


def try_reset_hwm() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS, so that temporaries freed before this
    point don't hide later growth; False where /proc/self/clear_refs is not writable."""
    try:
        with open("/proc/self/clear_refs", "w") as f: f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """Peak RSS of this process in MiB: VmHWM from /proc (resettable), else ru_maxrss (KiB on Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"): return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_memory(n: int, threads: int) -> dict:
    """Run `memory_child(n)` in a subprocess of this script and return its JSON report."""
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", str(n), "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- reporting

def cpu_description() -> str:
    "The CPU model and the flags that matter to the kernels (SIMD for BLAS, POPCNT for Hamming), from /proc/cpuinfo."
    model, flags = "unknown CPU", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            if key.strip() == "flags":
                flags = sorted(f for f in value.split() if f.startswith(("avx", "fma", "sse4", "popcnt")))
                break
    except OSError:
        pass
    return f"{model}; flags: {' '.join(flags) or 'none found'}"


def machine_info() -> dict:
    """CPU model, core counts, Python/NumPy versions and the BLAS/OpenMP libraries loaded (threadpoolctl)."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    libs = [f"{i['user_api']}: {i.get('internal_api')} {i.get('version')} ({i.get('architecture', '-')}, "
            f"{os.path.basename(i['filepath'])})" for i in threadpool_info()]
    return {"cpu": model, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "python": platform.python_version(), "numpy": np.__version__, "libs": libs}


def busy_fraction(seconds: float = 1.0) -> float:
    """Fraction of all CPUs' time spent busy over the next `seconds` (from /proc/stat; NaN elsewhere)."""
    def sample():
        with open("/proc/stat") as f: values = [int(v) for v in f.readline().split()[1:]]
        return sum(values), values[3] + values[4]  # total, idle + iowait
    try:
        (total0, idle0), _, (total1, idle1) = sample(), time.sleep(seconds), sample()
    except OSError:
        return float("nan")
    return 1 - (idle1 - idle0) / max(total1 - total0, 1)


def mark(ok: bool) -> str:
    return "yes" if ok else "**NO**"


def table_row(r: dict) -> str:
    """One Markdown table row of `bench_size`'s results."""
    engine, paddle, keys = r["engine"], r.get("paddle"), ("recall1", "recall5", "mAP")
    vs_m = r["engine_s"] / r["matmul_s"]
    cells = [str(r["n"]), f"{r['engine_s']:.3f}", f"{r['matmul_s']:.3f}", f"{r['paddle_s']:.2f}" if paddle else "-"]
    if paddle:
        vs_p = r["paddle_s"] / r["engine_s"]
        cells += [f"{vs_p:.1f}x ({mark(vs_p >= TARGET_VS_PADDLECLAS)})", f"{r['paddle_s'] / r['matmul_s']:.1f}x"]
    else: cells += ["-", "-"]
    cells += [f"{vs_m:.2f}x ({mark(vs_m <= TARGET_VS_MATMUL)})",
              f"{r['cpu_util']:.2f} ({mark(r['cpu_util'] >= TARGET_CPU_UTIL)})"]
    cells += [f"{engine[k]:.4f} / {paddle[k]:.4f}" if paddle else f"{engine[k]:.4f} / -" for k in keys]
    if paddle:
        diff = max(abs(engine[k] - paddle[k]) for k in keys)
        cells.append(f"{mark(diff <= MATCH_TOL)} ({diff:.1e})")
    else: cells.append("-")
    return "| " + " | ".join(cells) + " |"


def print_table(rows: list, memory: dict, info: dict, threads: int) -> None:
    """The final Markdown summary."""
    print("\n## Results\n")
    print(f"Q = G (query set == gallery set, self-matches excluded by id), d = {DIM}, {threads} threads, "
          f"clustered features (classes of {CLASS_SIZES[0]}-{CLASS_SIZES[1]}, noise {NOISE}). "
          f"Targets: PaddleClas/engine >= {TARGET_VS_PADDLECLAS:g}x, engine/matmul <= {TARGET_VS_MATMUL:g}x, "
          f"CPU/wall >= {TARGET_CPU_UTIL:g}.\n")
    print("| Q = G | engine s | matmul s | PaddleClas-method s | PaddleClas / engine | PaddleClas / matmul (ceiling) "
          "| engine / matmul | engine CPU/wall | recall1 engine / PaddleClas | recall5 engine / PaddleClas "
          "| mAP engine / PaddleClas | match (max diff) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
    for r in rows: print(table_row(r))
    print("\n'PaddleClas / matmul' is the best 'PaddleClas / engine' an engine computing the full matmul can reach "
          "(the symmetric path computes half of it).")
    print("\nWhere the engine's time goes (one separate run each): ")
    for r in rows:
        b = r.get("breakdown")
        print(f"- {r['n']}: " + (f"total {b['total']:.3f} s = compiled ranking kernels {b['kernels']:.3f} s "
                                  f"+ similarity matmuls and the rest {b['matmul_and_other']:.3f} s"
                                 if isinstance(b, dict) else f"unavailable ({b})"))
    if memory:
        ok = memory["above_mib"] <= MEMORY_TARGET_MIB
        print(f"\nMemory, Q = G = {memory['n']}: peak RSS {memory['above_mib']:.0f} MiB above the features "
              f"(baseline {memory['baseline_mib']:.0f} MiB incl. features {memory['features_mib']:.0f} MiB, "
              f"peak {memory['peak_mib']:.0f} MiB; target <= {MEMORY_TARGET_MIB} MiB: {mark(ok)}); "
              f"engine time {memory['seconds']:.2f} s, CPU/wall {memory['cpu_util']:.2f}, "
              f"recall1 {memory['recall1']:.4f}, mAP {memory['mAP']:.4f}"
              + ("" if memory["hwm_reset"]
                 else " (VmHWM could not be reset: baseline includes generation temporaries)"))
    print(f"\nMachine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), "
          f"Python {info['python']}, NumPy {info['numpy']}; CPUs busy with other work just before the run: "
          f"{info['busy']:.0%} (well above 0% means competing processes and noisy timings)")
    for lib in info["libs"]: print(f"- {lib}")


# ---------------------------------------------------------------------------------------------- main

def bench_size(n: int, threads: int, skip_paddleclas: bool) -> dict:
    """All timings for Q = G = n, printed as they come."""
    repeats = 3 if n <= 5000 else 2
    feats, labels, ids = make_dataset(n)
    print(f"\n# Q = G = {n}, d = {DIM}: {labels.max() + 1} classes")
    res, wall, cpu = best_of(lambda: run_engine(feats, labels, ids, threads), repeats)
    row = {"n": n, "engine": res, "engine_s": wall, "cpu_util": cpu / wall}
    print(f"engine      : {wall:.3f} s (best of {repeats}), CPU/wall {cpu / wall:.2f}, "
          f"recall1 {res['recall1']:.4f}, recall5 {res['recall5']:.4f}, mAP {res['mAP']:.4f}")
    row["matmul_s"] = best_of(lambda: run_matmul(feats, feats, threads), repeats)
    print(f"bare matmul : {row['matmul_s']:.3f} s (best of {repeats}, blocks of {auto_block_size(n, n)} queries)")
    try: row["breakdown"] = engine_breakdown(feats, labels, ids, threads)
    except Exception as e: row["breakdown"] = f"{type(e).__name__}: {e}"
    print(f"breakdown   : {row['breakdown']}")
    if not skip_paddleclas:
        row["paddle"], row["paddle_s"] = paddleclas_method(feats, labels, ids, threads)
        paddle = row["paddle"]
        print(f"PaddleClas  : {row['paddle_s']:.2f} s (once), recall1 {paddle['recall1']:.4f}, "
              f"recall5 {paddle['recall5']:.4f}, mAP {paddle['mAP']:.4f}")
    return row


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000], help="values of Q = G")
    parser.add_argument("--threads", type=int, default=2, help="engine threads and BLAS threads")
    parser.add_argument("--skip-paddleclas", action="store_true", help="don't time PaddleClas's method")
    parser.add_argument("--skip-memory", action="store_true", help=f"don't run the Q = G = {MEMORY_SIZE} memory run")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.memory_child is not None: return memory_child(args.memory_child, args.threads)
    busy, t_start = busy_fraction(), time.perf_counter()
    with threadpool_limits(limits=args.threads, user_api="blas"):
        warm = np.ones((256, DIM), np.float32)
        _ = warm @ warm.T  # warm up BLAS (thread pool start-up) before any timing
        rows = [bench_size(n, args.threads, args.skip_paddleclas) for n in args.sizes]
    memory = None
    if not args.skip_memory:
        print(f"\n# memory run, Q = G = {MEMORY_SIZE}, in a subprocess")
        memory = run_memory(MEMORY_SIZE, args.threads)
        print(memory)
    print_table(rows, memory, machine_info() | {"busy": busy}, args.threads)
    print(f"\nTotal benchmark time: {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
