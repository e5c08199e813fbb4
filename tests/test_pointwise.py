"""The compiled pointwise convolution (`backbone.pointwise_conv2d`) against a plain NumPy reference of the output
and the three gradients, on random shapes, biases and thread counts (hypothesis), and the network's gradients
against those of Paddle's own `conv2d`."""
import numpy as np
import paddle
from hypothesis import given, settings, strategies as st

from conftest import compare_network_gradients
from feature_extraction import backbone
from feature_extraction.backbone import pointwise_conv2d


def reference(x, w, b, grad_y):
    "Output and the gradients of input, weight and bias of y = W x + b at every position, in float64."
    x64, w64, gy = x.astype(np.float64), w[:, :, 0, 0].astype(np.float64), grad_y.astype(np.float64)
    y = np.einsum("oc,nchw->nohw", w64, x64) + (0 if b is None else b.astype(np.float64)[None, :, None, None])
    grad_x = np.einsum("oc,nohw->nchw", w64, gy)
    grad_w = np.einsum("nohw,nchw->oc", gy, x64)[:, :, None, None]
    return [y, grad_x, grad_w] + ([] if b is None else [gy.sum(axis=(0, 2, 3))])


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 70), c_in=st.integers(1, 40), c_out=st.integers(1, 40), h=st.integers(1, 24),
       w=st.integers(1, 24), with_bias=st.booleans(), threads=st.integers(1, 3), seed=st.integers(0, 2**31))
def test_matches_numpy_reference(n, c_in, c_out, h, w, with_bias, threads, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c_in, h, w), dtype=np.float32)
    wt = rng.standard_normal((c_out, c_in, 1, 1), dtype=np.float32)
    b = rng.standard_normal(c_out, dtype=np.float32) if with_bias else None
    xt, wtt = paddle.to_tensor(x, stop_gradient=False), paddle.to_tensor(wt, stop_gradient=False)
    bt = None if b is None else paddle.to_tensor(b, stop_gradient=False)
    y = pointwise_conv2d(xt, wtt, bt, num_threads=threads)
    grad_y = rng.standard_normal(y.shape).astype(np.float32)
    (y * paddle.to_tensor(grad_y)).sum().backward()
    got = [y, xt.grad, wtt.grad] + ([] if bt is None else [bt.grad])
    for name, g, want in zip(("y", "grad_x", "grad_w", "grad_b"), got, reference(x, wt, b, grad_y)):
        np.testing.assert_allclose(g.numpy(), want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max()), err_msg=name)


def test_strided_views_are_made_contiguous():
    x = paddle.rand([3, 8, 5, 5]).transpose([0, 1, 3, 2])  # a strided view in Paddle 3
    w = paddle.rand([6, 8, 1, 1])
    want = paddle.nn.functional.conv2d(x.contiguous(), w)
    np.testing.assert_allclose(pointwise_conv2d(x, w).numpy(), want.numpy(), rtol=1e-5, atol=1e-5)


def test_static_graph_uses_paddles_conv2d():
    "Traced for export, the layer is Paddle's conv2d (what the inference engines optimise), with the same output."
    layer = backbone.PointwiseConv2D(4, 6)
    layer.eval()
    x = paddle.rand([2, 4, 3, 3])
    spec = [paddle.static.InputSpec([None, 4, 3, 3], "float32")]
    static = paddle.jit.to_static(layer, input_spec=spec, full_graph=True)
    np.testing.assert_allclose(static(x).numpy(), layer(x).numpy(), rtol=1e-5, atol=1e-5)


def test_network_uses_the_compiled_kernel_and_trains():
    "PPLCNetV2_small runs the compiled kernel, and every parameter gets the gradient Paddle's own convolution gives."
    def paddle_forward(layer, x):
        return paddle.nn.functional.conv2d(x, layer.weight, layer.bias)
    grads = compare_network_gradients(backbone.PointwiseConv2D, paddle_forward, min_layers=20)
    assert any("pw_conv" in name for name in grads) and "last_conv.weight" in grads
