"""Benchmark of the exported inference model and of evaluation through it, run by hand (not a test).

Part 1, the model. PaddleClas's reference RecModel (PPLCNetV2_base_ShiTu, BNNeck, its weights from
`../shared/reference/paddleclas/recmodel.pdparams`) is exported three ways in the same run:
re-parameterised for Paddle Inference (what `fe_export` writes), re-parameterised as ONNX (`--format onnx`, run by
onnxruntime), and without re-parameterisation for Paddle Inference (the parallel Rep branches kept). Each is timed
at batch 1 (latency, 224x224) and at batch 32 (throughput, 224x224) with the same number of threads, in
alternating rounds; medians are printed.
Targets: re-parameterised Paddle >= 1.2x unfused Paddle; onnxruntime >= 1.0x Paddle.

Part 2, evaluation. The `fe_eval` command with the same weights on the whole icons test set (5031 images, query =
gallery, 96x96), through the exported model (onnxruntime when the `onnx` extra is installed, else Paddle Inference)
and with `--dygraph` (the dygraph forward, the way PaddleClas's `tools/eval.py` computes features): wall time of
each, process start and export included, and the metrics of both, which must agree to 1e-4.
Target: at most a tenth of PaddleClas's evaluation time on this set (about 4 minutes on this machine, the
issue's figure); the dygraph time of the same run is printed beside it.

    python bench/infer_bench.py                 # both parts, about 4 min on 2 cores
    python bench/infer_bench.py --skip-eval --rounds 3
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FE_SHARED_DIR", ROOT.parent / "shared"))
REF = SHARED / "reference/paddleclas"
PADDLECLAS_EVAL_SECONDS = 240  # the measurement of PaddleClas's evaluation of this set on this machine
TARGET_REP, TARGET_ONNX, TARGET_EVAL, MATCH_TOL = 1.2, 1.0, 0.1, 1e-4


def reference_config(size: int, workers: int) -> dict:
    "PaddleClas's config with the reference weights, evaluated on the whole icons test set at `size` x `size`."
    c = yaml.safe_load(open(REF / "GeneralRecognitionV2_PPLCNetV2_base.yaml"))
    icons = SHARED / "datasets/icons"
    c["Global"].update({"device": "cpu", "pretrained_model": str(REF / "recmodel"), "image_shape": [3, size, size],
                        "output_dir": tempfile.mkdtemp(prefix="infer_bench_")})
    c["Arch"]["Backbone"]["pretrained"] = False
    c["Arch"]["Head"]["class_num"] = 100
    for part in ("Query", "Gallery"):
        ev = c["DataLoader"]["Eval"][part]
        ev["dataset"].update({"image_root": str(icons), "cls_label_path": str(icons / "test_list.txt")})
        ev["dataset"]["transform_ops"][1]["ResizeImage"]["size"] = [size, size]
        ev["sampler"]["batch_size"] = 64
        ev["loader"]["num_workers"] = workers
    return c


def time_calls(fn, x, repeats: int) -> float:
    "Median seconds of `repeats` calls of fn(x), after one warm-up call."
    fn(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_models(threads: int, rounds: int) -> dict:
    from feature_extraction.inference import OnnxPredictor, PaddlePredictor, preprocess_ops
    from feature_extraction.export import export_model, load_for_export
    model = load_for_export(reference_config(224, 1))
    ops = preprocess_ops({"Global": {"image_shape": [3, 224, 224]}})
    tmp = Path(tempfile.mkdtemp(prefix="infer_bench_models_"))
    rep = export_model(model, tmp / "rep", ops, formats=("paddle", "onnx"))
    unfused = export_model(model, tmp / "unfused", ops, reparameterize=False)

    def paddle_predictor(folder):
        return PaddlePredictor(folder / "inference.json", folder / "inference.pdiparams", "cpu", threads)
    predictors = {"paddle, re-parameterised": paddle_predictor(rep),
                  "onnxruntime, re-parameterised": OnnxPredictor(rep / "inference.onnx", "cpu", threads),
                  "paddle, unfused": paddle_predictor(unfused)}
    rng = np.random.default_rng(0)
    x1, x32 = rng.standard_normal((1, 3, 224, 224), np.float32), rng.standard_normal((32, 3, 224, 224), np.float32)
    lat, thr = {k: [] for k in predictors}, {k: [] for k in predictors}
    for r in range(rounds):  # alternating, so that a slow spell of the machine hits every model alike
        for name, p in predictors.items():
            lat[name].append(time_calls(p, x1, 20) * 1000)
            thr[name].append(32 / time_calls(p, x32, 3))
        print(f"round {r + 1}/{rounds}: "
              + ", ".join(f"{k} {lat[k][-1]:.1f} ms / {thr[k][-1]:.0f} img/s" for k in predictors), flush=True)
    return lat, thr


def bench_eval(workers: int) -> dict:
    "Wall time and metrics of `fe_eval` (process start included), through the exported model and in dygraph."
    import json
    import subprocess
    tmp = Path(tempfile.mkdtemp(prefix="infer_bench_eval_"))
    cfg = tmp / "config.yaml"
    yaml.safe_dump(reference_config(96, workers), open(cfg, "w"))
    out = {}
    for name, extra in (("exported", []), ("dygraph", ["--dygraph"])):
        t = time.perf_counter()
        done = subprocess.run(["fe_eval", "-c", str(cfg), "--json", str(tmp / f"{name}.json"), *extra],
                              capture_output=True, text=True)
        if done.returncode: raise RuntimeError(f"fe_eval failed:\n{done.stderr[-3000:]}")
        out[name] = (time.perf_counter() - t, json.loads((tmp / f"{name}.json").read_text()))
        m = out[name][1]
        print(f"fe_eval {name}: {out[name][0]:.1f} s, recall1 {m['recall1']:.4f}, recall5 {m['recall5']:.4f}, "
              f"mAP {m['mAP']:.4f}", flush=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-models", action="store_true")
    parser.add_argument("--skip-eval", action="store_true")
    args = parser.parse_args(argv)
    ok, lines = True, []
    if not args.skip_models:
        lat, thr = bench_models(args.threads, args.rounds)
        base = "paddle, unfused"
        lines += [f"| model (224x224, {args.threads} threads) | batch-1 latency (ms) | batch-32 throughput (img/s) |",
                  "| --- | --- | --- |"]
        lines += [f"| {k} | {statistics.median(lat[k]):.1f} | {statistics.median(thr[k]):.0f} |" for k in lat]
        # median over rounds of the round's ratio numerator / denominator: a slow spell of the machine cancels out
        def ratio(numerator, denominator, values):
            return statistics.median(x / y for x, y in zip(values[numerator], values[denominator]))
        rep, onnx = "paddle, re-parameterised", "onnxruntime, re-parameterised"
        checks = [("re-parameterised vs unfused Paddle, throughput", ratio(rep, base, thr), TARGET_REP),
                  ("re-parameterised vs unfused Paddle, latency", ratio(base, rep, lat), TARGET_REP),
                  ("onnxruntime vs Paddle, throughput", ratio(onnx, rep, thr), TARGET_ONNX),
                  ("onnxruntime vs Paddle, latency", ratio(rep, onnx, lat), TARGET_ONNX)]
        lines += [""] + [f"- {name}: {v:.2f}x (target >= {t}x){'' if v >= t else '  NOT MET'}" for name, v, t in checks]
        ok &= all(v >= t for _, v, t in checks)
    if not args.skip_eval:
        res = bench_eval(args.threads)
        (te, me), (td, md) = res["exported"], res["dygraph"]
        diff = max(abs(me[k] - md[k]) for k in ("recall1", "recall5", "mAP"))
        lines += ["",
                  "| icons test set, 5031 images at 96x96 | seconds | recall1 | recall5 | mAP |",
                  "| --- | --- | --- | --- | --- |",
                  f"| `fe_eval` (exported model) | {te:.1f} | {me['recall1']:.4f} | {me['recall5']:.4f} "
                  f"| {me['mAP']:.4f} |",
                  f"| `fe_eval --dygraph` | {td:.1f} | {md['recall1']:.4f} | {md['recall5']:.4f} | {md['mAP']:.4f} |",
                  "",
                  f"- exported vs dygraph: {td / te:.1f}x faster; largest metric difference {diff:.1e} "
                  f"(target <= {MATCH_TOL})",
                  f"- exported vs PaddleClas's evaluation (~{PADDLECLAS_EVAL_SECONDS} s): "
                  f"{te / PADDLECLAS_EVAL_SECONDS:.3f} of its time (target <= {TARGET_EVAL})"]
        ok &= diff <= MATCH_TOL and te <= TARGET_EVAL * PADDLECLAS_EVAL_SECONDS
    print("\n" + "\n".join(lines))
    print("\nall targets met" if ok else "\nSOME TARGETS NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
