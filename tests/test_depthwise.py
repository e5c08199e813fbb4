"""The compiled depthwise convolution (`backbone.depthwise_conv2d`) against a plain NumPy reference of the
output and both gradients, on random shapes, strides, filters and thread counts (hypothesis)."""
import numpy as np
import paddle
from hypothesis import given, settings, strategies as st

from conftest import compare_network_gradients
from feature_extraction import backbone
from feature_extraction.backbone import depthwise_conv2d


def taps(k: int, stride: int, out_h: int, out_w: int):
    "For each filter tap, its index and the slices of the padded input it reads for every output pixel."
    for ky in range(k):
        for kx in range(k):
            rows = slice(ky, ky + stride * (out_h - 1) + 1, stride)
            yield ky, kx, (rows, slice(kx, kx + stride * (out_w - 1) + 1, stride))


def reference(x, w, stride, pad, grad_y):
    "Output, input gradient and filter gradient of the depthwise convolution, by NumPy slicing."
    n, c, h, wd = x.shape
    k = w.shape[-1]
    oh, ow = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    y, gxp, gw = np.zeros((n, c, oh, ow)), np.zeros_like(xp), np.zeros(w.shape)
    for ky, kx, (rows, cols) in taps(k, stride, oh, ow):
        tap = w[:, 0, ky, kx].astype(np.float64)[None, :, None, None]
        y += tap * xp[:, :, rows, cols]
        gxp[:, :, rows, cols] += tap * grad_y
        gw[:, 0, ky, kx] = (grad_y * xp[:, :, rows, cols]).sum(axis=(0, 2, 3))
    return y, gxp[:, :, pad:pad + h, pad:pad + wd], gw


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 9), h=st.integers(1, 13), w=st.integers(1, 13),
       k=st.sampled_from([1, 3, 5, 7]), stride=st.integers(1, 3), threads=st.integers(1, 3), seed=st.integers(0, 2**31))
def test_matches_numpy_reference(n, c, h, w, k, stride, threads, seed):
    pad = (k - 1) // 2
    rng = np.random.default_rng(seed)
    x, wt = rng.standard_normal((n, c, h, w), dtype=np.float32), rng.standard_normal((c, 1, k, k), dtype=np.float32)
    xt, wtt = paddle.to_tensor(x, stop_gradient=False), paddle.to_tensor(wt, stop_gradient=False)
    y = depthwise_conv2d(xt, wtt, stride=stride, padding=pad, num_threads=threads)
    grad_y = rng.standard_normal(y.shape).astype(np.float32)
    (y * paddle.to_tensor(grad_y)).sum().backward()
    for got, want in zip((y, xt.grad, wtt.grad), reference(x, wt, stride, pad, grad_y)):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max()))


def test_strided_views_are_made_contiguous():
    x = paddle.rand([2, 8, 6, 6]).transpose([0, 1, 3, 2])  # a strided view in Paddle 3
    w = paddle.rand([8, 1, 3, 3])
    want = paddle.nn.functional.conv2d(x.contiguous(), w, padding=1, groups=8)
    np.testing.assert_allclose(depthwise_conv2d(x, w, padding=1).numpy(), want.numpy(), rtol=1e-5, atol=1e-5)


def test_network_uses_the_compiled_kernel_and_trains():
    "PPLCNetV2_small runs the compiled kernel, and every parameter gets the gradient Paddle's own convolution gives."
    def paddle_forward(layer, x):
        return paddle.nn.functional.conv2d(x, layer.weight, layer.bias, layer.conv_stride, layer.conv_padding,
                                           groups=layer.weight.shape[0])
    grads = compare_network_gradients(backbone.DepthwiseConv2D, paddle_forward, min_layers=10)
    assert any("dw_conv" in name for name in grads)
