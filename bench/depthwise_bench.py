"""Benchmark of the compiled depthwise convolution, run by hand (not a test).

In PP-LCNetV2 the depthwise convolutions dominate a CPU training step when Paddle computes them. This times, in
the same run and on the same model, batch and input, the bare training step (forward, mean loss, backward,
Momentum step) with `backbone.DepthwiseConv2D` as shipped (the compiled kernels) and with its forward replaced by
Paddle's own `conv2d(groups=C)`, in alternating rounds, and prints images/s and the median ratio of the rounds.
Both use the same CPU thread count (`backbone.set_cpu_threads`, Paddle's kernels included).

    python bench/depthwise_bench.py                   # PPLCNetV2_small 32x32 x128, PPLCNetV2_base_ShiTu 64x64 x64
    python bench/depthwise_bench.py --threads 1 --rounds 5
"""

import argparse
import statistics
import time

import paddle
import paddle.nn.functional as F

from feature_extraction import backbone

CASES = [("PPLCNetV2_small", dict(class_expand=256, last_stride=1, last_conv_bias=True, last_act=False), 32, 128),
         ("PPLCNetV2_base_ShiTu", dict(class_expand=512), 64, 64)]
compiled_forward = backbone.DepthwiseConv2D.forward

def paddle_forward(self, x):
    return F.conv2d(x, self.weight, self.bias, self.conv_stride, self.conv_padding, groups=self.weight.shape[0])


def images_per_second(model, opt, x, steps: int) -> float:
    t = time.perf_counter()
    for _ in range(steps):
        model(x).mean().backward()
        opt.step()
        opt.clear_grad()
    return steps * x.shape[0] / (time.perf_counter() - t)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all this process may use)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="training steps per round and variant")
    args = parser.parse_args()
    threads = backbone.set_cpu_threads(args.threads)
    backbone.set_cpu_threads(threads, paddle_threads=threads)  # Paddle's depthwise convolution gets the same threads
    print(f"CPU threads: {threads}")
    for arch, kwargs, size, batch in CASES:
        paddle.seed(0)
        model = getattr(backbone, arch)(**kwargs)
        opt = paddle.optimizer.Momentum(0.01, parameters=model.parameters())
        x = paddle.rand([batch, 3, size, size])
        speeds = {"compiled": [], "paddle": []}
        for _ in range(args.rounds):
            for name, forward in (("compiled", compiled_forward), ("paddle", paddle_forward)):
                backbone.DepthwiseConv2D.forward = forward
                images_per_second(model, opt, x, 1)  # warm-up
                speeds[name].append(images_per_second(model, opt, x, args.steps))
        backbone.DepthwiseConv2D.forward = compiled_forward
        ratio = statistics.median(c / p for c, p in zip(speeds["compiled"], speeds["paddle"]))
        print(f"{arch} {size}x{size} batch {batch}: compiled {statistics.median(speeds['compiled']):.1f} img/s, "
              f"Paddle's depthwise conv {statistics.median(speeds['paddle']):.1f} img/s, ratio {ratio:.2f}x")


if __name__ == "__main__":
    main()
