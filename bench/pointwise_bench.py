"""Benchmark of the compiled pointwise (1x1) convolution in a CPU training step, run by hand (not a test).

Times the bare training step (forward, mean loss, backward, Momentum step) of the demo model (the backbone of
`feature_extraction/demo_data/demo.yaml`) at 32x32, batch 128, and of `PPLCNetV2_base_ShiTu` at 64x64, batch 64,
in alternating rounds of one run:

- `compiled`: as shipped, `backbone.PointwiseConv2D` on the compiled GEMM kernel, Paddle's own kernels on one
  thread (`set_cpu_threads`' default);
- `paddle, P threads`: the pointwise convolutions computed by Paddle's `conv2d`, with Paddle's kernels on P = 1
  and P = all threads (the shipped default before the compiled kernel).

The depthwise convolutions are compiled in every variant. A round's speed-up is `compiled` over the faster
`paddle` variant of that round; the last line is the median over rounds for the demo model. The CPU and its
flags are printed first: OpenBLAS picks its kernels by them (AVX2, AVX-512).

    python bench/pointwise_bench.py                 # both models, 5 rounds
    python bench/pointwise_bench.py --rounds 9 --steps 4 --threads 2
"""

import argparse
import statistics
from pathlib import Path

import paddle
import paddle.nn.functional as F
import yaml

from depthwise_bench import images_per_second  # the same bare training step (bench/ is on sys.path)
from eval_bench import cpu_description
from feature_extraction import backbone

DEMO_YAML = Path(backbone.__file__).parent / "demo_data" / "demo.yaml"
compiled_forward = backbone.PointwiseConv2D.forward


def paddle_forward(self, x):
    return F.conv2d(x, self.weight, self.bias)


def demo_backbone():
    "The demo recipe's backbone, built as the engine builds it."
    arch = yaml.safe_load(DEMO_YAML.read_text())["Arch"]["Backbone"]
    kwargs = {k: v for k, v in arch.items() if k not in ("name", "pretrained")}
    return arch["name"], backbone.BACKBONES.get(arch["name"])(**kwargs)


def variants(threads: int) -> dict:
    "Name -> (pointwise forward, Paddle's thread count)."
    return {"compiled": (compiled_forward, 1), "paddle, 1 thread": (paddle_forward, 1),
            f"paddle, {threads} threads": (paddle_forward, threads)}


def run_case(name: str, model, size: int, batch: int, args, threads: int) -> float:
    "Alternating rounds of every variant; prints images/s and returns the median speed-up."
    optimizer = paddle.optimizer.Momentum(0.01, parameters=model.parameters())
    images = paddle.rand([batch, 3, size, size])
    speeds = {v: [] for v in variants(threads)}
    for _ in range(args.rounds):
        for variant, (forward, paddle_threads) in variants(threads).items():
            backbone.PointwiseConv2D.forward = forward
            backbone.set_cpu_threads(threads, paddle_threads=paddle_threads)
            images_per_second(model, optimizer, images, 1)  # warm-up
            speeds[variant].append(images_per_second(model, optimizer, images, args.steps))
    backbone.PointwiseConv2D.forward = compiled_forward
    baselines = [max(s[i] for v, s in speeds.items() if v != "compiled") for i in range(args.rounds)]
    ratio = statistics.median(c / b for c, b in zip(speeds["compiled"], baselines))
    shown = ", ".join(f"{v} {statistics.median(s):.1f}" for v, s in speeds.items())
    print(f"{name} {size}x{size} batch {batch} (img/s, median of {args.rounds} rounds): {shown}; speed-up {ratio:.2f}x")
    return ratio


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all this process may use)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="training steps per round and variant")
    args = parser.parse_args()
    threads = backbone.set_cpu_threads(args.threads)
    print(f"CPU: {cpu_description()}")
    print(f"threads: {threads}; Paddle {paddle.__version__}")
    paddle.seed(0)
    arch, demo_model = demo_backbone()
    demo_ratio = run_case(f"demo model ({arch})", demo_model, 32, 128, args, threads)
    paddle.seed(0)
    run_case("PPLCNetV2_base_ShiTu", backbone.PPLCNetV2_base_ShiTu(class_expand=512), 64, 64, args, threads)
    print(f"median training speed-up {demo_ratio:.2f}x")


if __name__ == "__main__":
    main()
