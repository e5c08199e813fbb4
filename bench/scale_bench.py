"""Benchmark: a gallery of ten million vectors built from `fe_extract` shards on one machine; run by hand (not a test).

For each size N (default 10,000,000 and 1,000,000) this writes N synthetic clustered 256-d float32 vectors as the
shards of one extraction (shard-I-of-S folders with `features.npy`, `index.tsv`, `failed.tsv` and `extract.json`, a
shard per million vectors), then, each step in its own process so that its peak resident memory (VmHWM) is its own:

- exact top-10 of 1,000 queries by the metrics engine's `knn` over the shards' memory-mapped features, one at a time;
- `build_from_features` (what `fe_index build --features` runs) for each index type: the coarse quantiser trained
  once on a sample, the vectors read a block at a time and added by parallel workers, the lists merged;
- the saved gallery loaded and searched: queries per second (1,000 queries, k = 10, after 10 warm-up queries) and
  recall@10 against the exact answers, with the gallery's vectors in the page cache (read once before); IVF-PQ
  with its default re-scoring (10 candidates per answer scored by the float vectors), with 50, and by its codes
  alone.

The vectors are clustered like image features, as in `index_bench.py`: N / 1000 centres on the unit sphere, each
vector its centre plus Gaussian noise of the same expected norm, L2-normalised; queries are drawn the same way.
At 10M the index type is `IVF4096,PQ32` (32-byte codes): the library's default for that size, IVF16384,PQ32, trains
its coarse quantiser on 1M vectors, about four times longer than this on 2 cores. The 1M comparison adds IVF-Flat and
HNSW32. Peak resident memory (VmHWM) also counts the pages of mapped files that the page cache holds (a search
maps the gallery's vectors.npy, whose pages were just written); "not file-backed" is the search process's own
memory (RssAnon) at its end. The data is kept in --work and reused by a later run with the same sizes (about 22 GB
at the defaults).

    python bench/scale_bench.py                                    # 10M IVF-PQ, 1M three ways: 20 min on 2 cores
    python bench/scale_bench.py --sizes 200000 --types IVF256,PQ32   # a quick check of the script
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eval_bench import cpu_description  # noqa: E402 (this folder's scripts)

DIM, QUERIES, K, SEED, CHUNK = 256, 1000, 10, 0, 65536
MEMORY_TARGET_GIB = 8  # peak resident memory of the 10M build


def memory_mib() -> dict:
    "This process's peak resident memory (VmHWM), and its resident memory that is not mapped files (RssAnon), MiB."
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {"peak_mib": int(status["VmHWM"].split()[0]) / 1024, "anon_mib": int(status["RssAnon"].split()[0]) / 1024}


def draw(rng, centres: np.ndarray, count: int) -> tuple:
    "(vectors [count, DIM] float32 L2-normalised, their centre numbers): a centre plus noise of its norm."
    which = rng.integers(0, len(centres), count)
    noisy = centres[which] + rng.standard_normal((count, DIM), dtype=np.float32) / np.float32(np.sqrt(DIM))
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True), which


def write_shards(folder: str, n: int, shards: int) -> dict:
    "N synthetic vectors as the `shards` shards of one extraction in `folder`, and the queries in queries.npy."
    from feature_extraction import __version__
    from feature_extraction.inference import shard_folder
    from feature_extraction.shards import write_float32_header
    rng = np.random.default_rng(SEED)
    centres = rng.standard_normal((max(10, n // 1000), DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    np.save(Path(folder)/"queries.npy", draw(np.random.default_rng(SEED + 1), centres, QUERIES)[0])
    bounds = np.linspace(0, n, shards + 1).astype(np.int64)
    common = {"model": "synthetic", "fingerprint": hashlib.sha256(b"synthetic").hexdigest(), "images": n,
              "inputs": hashlib.sha256(f"synthetic {n} {SEED}".encode()).hexdigest(), "chunk_size": CHUNK,
              "version": __version__}
    for shard in range(shards):
        out = Path(folder)/shard_folder(shard, shards)
        out.mkdir(parents=True, exist_ok=True)
        start, stop = int(bounds[shard]), int(bounds[shard + 1])
        with open(out/"features.npy", "wb") as feats, open(out/"index.tsv", "w") as index:
            write_float32_header(feats, stop - start, DIM)
            index.write("path\tlabel\n")
            for first in range(start, stop, CHUNK):
                vectors, labels = draw(rng, centres, min(CHUNK, stop - first))
                feats.write(vectors.tobytes())
                index.write("".join(f"/synthetic/{first + i:09d}.jpg\t{label}\n" for i, label in enumerate(labels)))
        (out/"failed.tsv").write_text("path\treason\n")
        (out/"extract.json").write_text(json.dumps({**common, "shard": [shard, shards]}, indent=2))
    return {}


def exact(folder: str, threads: int) -> dict:
    "The exact top-K of the queries over every shard's memory-mapped features (metrics.knn), merged: exact.npy."
    from feature_extraction.large import feature_parts
    from feature_extraction.metrics import knn
    queries, scores, ids, done = np.load(Path(folder)/"queries.npy"), [], [], 0
    for part in feature_parts(folder)[0]:
        feats = np.load(part/"features.npy", mmap_mode="r")
        part_scores, part_ids = knn(queries, feats, K, normalize=False, num_threads=threads)
        scores.append(part_scores)
        ids.append(part_ids + done)
        done += len(feats)
    scores, ids = np.concatenate(scores, axis=1), np.concatenate(ids, axis=1)
    best = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    np.save(Path(folder)/"exact.npy", np.take_along_axis(ids, best, axis=1))
    return {}


def build(folder: str, index_dir: str, index_type: str, threads: int, workers: int) -> dict:
    "A gallery of the shards by `build_from_features`, as `fe_index build --features` makes it."
    from feature_extraction.large import build_from_features
    counts = build_from_features(index_dir, folder, index_type, num_threads=threads, workers=workers,
                                 overwrite=True, block=CHUNK)
    version = Path(counts["version"])
    return {"added": counts["added"], "index_mib": (version/"index.faiss").stat().st_size / 2**20
            if (version/"index.faiss").exists() else 0.0,
            "folder_mib": sum(p.stat().st_size for p in version.iterdir()) / 2**20}


def search(folder: str, index_dir: str, threads: int, rescores: list) -> dict:
    "Load the gallery, search the queries (after a warm-up), for each re-scoring depth: q/s and recall@10."
    from feature_extraction.gallery import Gallery, current_version
    with open(current_version(index_dir)/"vectors.npy", "rb") as f:  # into the page cache, as in a running service
        while f.read(1 << 26): pass
    started = time.perf_counter()
    gallery = Gallery.load(index_dir, num_threads=threads)
    loaded = time.perf_counter() - started
    queries, truth, rows = np.load(Path(folder)/"queries.npy"), np.load(Path(folder)/"exact.npy"), []
    for rescore in rescores if gallery.family == "IVFPQ" else [gallery.rescore]:
        gallery.rescore = rescore
        gallery.search(queries[:10], k=K)
        started = time.perf_counter()
        found = gallery.search(queries, k=K).ids
        seconds = time.perf_counter() - started
        recall = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(found, truth)]))
        rows.append({"rescore": rescore, "qps": len(queries) / seconds, "recall10": recall})
    return {"load_s": loaded, "rows": rows, **memory_mib()}  # measured while the gallery is loaded


PHASES = {"write": write_shards, "exact": exact, "build": build, "search": search}


def run_phase(name: str, *args) -> dict:
    "Run one phase in a new process: its result, its wall time and its own peak resident memory."
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--phase", name, json.dumps(args)], stdout=subprocess.PIPE,
                          text=True)
    if done.returncode != 0: raise SystemExit(f"phase {name} {args} failed with status {done.returncode}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "seconds": time.perf_counter() - started}


def types_for(size: int) -> list:
    "IVF-PQ at every size (lists about 4 sqrt(N), at most 4096); IVF-Flat and HNSW32 up to 2M."
    lists = min(4096, 2 ** round(np.log2(4 * np.sqrt(size))))
    return [f"IVF{lists},PQ{DIM // 8}"] + ([f"IVF{lists},Flat", "HNSW32"] if size <= 2_000_000 else [])


def bench_size(size: int, args) -> list:
    "Write (or reuse) the shards of `size` vectors, the exact answers, then build and search each index type."
    folder = Path(args.work)/f"features-{size}"
    marker = folder/"written.json"
    if not marker.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        step = run_phase("write", str(folder), size, max(1, size // 1_000_000))
        marker.write_text(json.dumps(step))
        print(f"N={size:,}: wrote {max(1, size // 1_000_000)} shards in {step['seconds']:.0f} s", flush=True)
    truth = run_phase("exact", str(folder), args.threads)
    print(f"N={size:,}: exact top-{K} of {QUERIES} queries over the memory-mapped shards in {truth['seconds']:.0f} s, "
          f"peak {truth['peak_mib']:.0f} MiB", flush=True)
    rows = []
    for index_type in args.types or types_for(size):
        index_dir = str(Path(args.work)/f"gallery-{size}-{index_type.replace(',', '-')}")
        record = Path(args.work)/f"build-{size}-{index_type.replace(',', '-')}.json"
        if args.reuse and record.exists() and Path(index_dir).exists():
            made = json.loads(record.read_text())  # the build measured by an earlier run
        else:
            made = run_phase("build", str(folder), index_dir, index_type, args.threads, args.workers)
            record.write_text(json.dumps(made))
        found = run_phase("search", str(folder), index_dir, args.threads, [10, 50, 0])
        searches = [(f"re-scored {r['rescore']}" if "PQ" in index_type else "searched", r) for r in found["rows"]]
        print(f"N={size:,} {index_type}: built in {made['seconds']:.0f} s, peak {made['peak_mib']:.0f} MiB, index "
              f"{made['index_mib']:.0f} MiB; loaded in {found['load_s']:.1f} s, peak {found['peak_mib']:.0f} MiB "
              f"({found['anon_mib']:.0f} MiB not file-backed); "
              + "; ".join(f"{how}: {r['qps']:.0f} q/s, recall@10 {r['recall10']:.4f}" for how, r in searches),
              flush=True)
        rows += [{"size": size, "type": index_type, "build": made, "search": found, "row": r} for r in found["rows"]]
        if not args.keep:
            shutil.rmtree(index_dir)
            record.unlink()
    return rows


def table(rows: list) -> str:
    "The results as a Markdown table."
    lines = ["| vectors | index type | re-scored per answer | build (s) | build peak RSS (MiB) | index (MiB) | "
             "search peak RSS (MiB) | search RSS, not file-backed (MiB) | queries/s | recall@10 vs exact |",
             "| --- " * 10 + "|"]
    for r in rows:
        rescore = r["row"]["rescore"] if "PQ" in r["type"] else "-"
        lines.append(f"| {r['size']:,} | {r['type']} | {rescore} | {r['build']['seconds']:.0f} | "
                     f"{r['build']['peak_mib']:.0f} | {r['build']['index_mib']:.0f} | {r['search']['peak_mib']:.0f} | "
                     f"{r['search']['anon_mib']:.0f} | "
                     f"{r['row']['qps']:.0f} | {r['row']['recall10']:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000_000, 1_000_000])
    parser.add_argument("--types", nargs="+", help="faiss factory strings for every size (default: by size)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="threads adding to copies of an IVF index")
    parser.add_argument("--work", default="/tmp/scale_bench", help="where the shards and galleries are written")
    parser.add_argument("--keep", action="store_true", help="keep the galleries (the shards are always kept)")
    parser.add_argument("--reuse", action="store_true",
                        help="search galleries kept (--keep) by an earlier run, with that run's build measurements")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("arguments", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:  # a child process: one step, its result and its peak memory as the last line
        result = PHASES[args.phase](*json.loads(args.arguments))
        print(json.dumps({**memory_mib(), **result}))
        return 0
    print(f"machine: {cpu_description()}; {len(os.sched_getaffinity(0))} cores, {args.threads} threads, "
          f"{args.workers} workers", flush=True)
    rows = [row for size in args.sizes for row in bench_size(size, args)]
    print("\n" + table(rows))
    largest = max(args.sizes)
    peak = max(r["build"]["peak_mib"] for r in rows if r["size"] == largest)
    met = peak < MEMORY_TARGET_GIB * 1024
    print(f"\nbuild peak RSS at {largest:,} vectors: {peak / 1024:.2f} GiB, under {MEMORY_TARGET_GIB} GiB: "
          + ("met" if met else "NOT MET"))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
