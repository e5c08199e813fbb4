"""Benchmark of the training engine's overhead, run by hand (not a test).

The bound for any engine is the bare step of the same network: forward, loss, backward, optimizer step, on a batch
already in memory. This times, in the same run and on the same model, batch and input size:

1. the bare step, repeated on one batch;
2. `Engine.train()` on the icons training list (threaded loader, progress bar, logging, a `latest` checkpoint at
   the end), after a warm-up;

and prints images/s of both and their ratio. Target: the engine within 10 % of the bare step (ratio >= 0.9).

    python bench/train_bench.py                      # PPLCNetV2_base_ShiTu, 64x64, batches of 64, 8 iterations
    python bench/train_bench.py --size 96 --batch 32 --iterations 6
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FE_SHARED_DIR", REPO.parent / "shared"))
TARGET = 0.9


def make_config(size: int, batch: int, out_dir: Path) -> dict:
    "PP-ShiTuV2's config on the icons training list at `size` x `size`, P x K batches of `batch`, no evaluation."
    c = yaml.safe_load(open(SHARED / "reference/paddleclas/GeneralRecognitionV2_PPLCNetV2_base.yaml"))
    icons = SHARED / "datasets/icons"
    c["Global"].update({"device": "cpu", "output_dir": str(out_dir), "eval_during_train": False, "epochs": 1,
                        "print_batch_step": 1, "image_shape": [3, size, size]})
    c["Arch"]["Backbone"]["pretrained"] = False
    c["Arch"]["Head"]["class_num"] = 837
    tr = c["DataLoader"]["Train"]
    tr["dataset"].update({"image_root": str(icons), "cls_label_path": str(icons / "train_list.txt")})
    for op in tr["dataset"]["transform_ops"]:
        (name, args), = op.items()
        if name in ("ResizeImage", "RandCropImageV2"): args["size"] = [size, size]
    tr["sampler"].update({"batch_size": batch, "id_list": None, "ratio": None})
    tr["loader"]["num_workers"] = 2
    return c


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=8)
    args = parser.parse_args(argv)
    import paddle
    from feature_extraction.engine import Engine
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(make_config(args.size, args.batch, Path(tmp)), "train")
        engine.config["Global"]["max_iterations"] = 2
        engine.train()                                             # warm-up: threads, kernels, first checkpoint
        engine.config["Global"]["max_iterations"] = args.iterations
        start = time.perf_counter()
        engine.train()
        engine_time = time.perf_counter() - start
        batch = next(iter(engine.train_loader))                    # the bare step, on one batch in memory
        x, y = paddle.to_tensor(batch.images), paddle.to_tensor(batch.labels).reshape([-1, 1])
        start = time.perf_counter()
        for _ in range(args.iterations):
            loss = engine.train_loss(engine.network(x, y), y)["loss"]
            loss.backward()
            engine.optimizer.step()
            engine.optimizer.clear_grad()
            engine.scheduler.step()
        bare_time = time.perf_counter() - start
    n = args.iterations * args.batch
    ratio = bare_time / engine_time
    print(f"PPLCNetV2_base_ShiTu, {args.size}x{args.size}, batches of {args.batch}, {args.iterations} iterations, "
          f"{paddle.get_device()}:")
    print(f"  bare step  {n / bare_time:8.1f} images/s")
    print(f"  engine     {n / engine_time:8.1f} images/s  ({ratio:.3f} of the bare step; target >= {TARGET})")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
