# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# distutils: language = c++
"""Compiled depthwise convolution behind `feature_extraction.backbone` (private: call
`backbone.depthwise_conv2d`, which checks every tensor and the geometry first)."""
from libc.stdint cimport int64_t

cdef extern from "depthwise_kernels.hpp" namespace "fe":
    cdef struct DepthwiseGeometry:
        int64_t n, c, h, w, k, stride, pad, oh, ow
    void depthwise_forward(const float* x, const float* filters, DepthwiseGeometry g, int num_threads,
                           float* y) nogil
    void depthwise_input_grad(const float* gy, const float* filters, DepthwiseGeometry g, int num_threads,
                              float* gx) nogil
    void depthwise_filter_grad(const float* x, const float* gy, DepthwiseGeometry g, int num_threads,
                               float* gf) nogil


cdef DepthwiseGeometry geometry(const Py_ssize_t* in_shape, int64_t k, int64_t stride, int64_t pad,
                                const Py_ssize_t* out_shape) noexcept:
    cdef DepthwiseGeometry g
    g.n, g.c, g.h, g.w = in_shape[0], in_shape[1], in_shape[2], in_shape[3]
    g.k, g.stride, g.pad = k, stride, pad
    g.oh, g.ow = out_shape[2], out_shape[3]
    return g


def forward(const float[:, :, :, ::1] x, const float[:, :, ::1] filters, int64_t stride, int64_t pad,
            int num_threads, float[:, :, :, ::1] y):
    """y [n, c, oh, ow] = x [n, c, h, w] convolved with `filters` [c, k, k]."""
    cdef DepthwiseGeometry g = geometry(x.shape, filters.shape[1], stride, pad, y.shape)
    with nogil:
        depthwise_forward(&x[0, 0, 0, 0], &filters[0, 0, 0], g, num_threads, &y[0, 0, 0, 0])


def input_grad(const float[:, :, :, ::1] gy, const float[:, :, ::1] filters, int64_t stride, int64_t pad,
               int num_threads, float[:, :, :, ::1] gx):
    """gx [n, c, h, w], the gradient of the input, from the output gradient `gy` [n, c, oh, ow]."""
    cdef DepthwiseGeometry g = geometry(gx.shape, filters.shape[1], stride, pad, gy.shape)
    with nogil:
        depthwise_input_grad(&gy[0, 0, 0, 0], &filters[0, 0, 0], g, num_threads, &gx[0, 0, 0, 0])


def filter_grad(const float[:, :, :, ::1] x, const float[:, :, :, ::1] gy, int64_t k, int64_t stride, int64_t pad,
                int num_threads, float[:, :, ::1] gf):
    """gf [c, k, k], the gradient of the filters, from the input `x` and the output gradient `gy`."""
    cdef DepthwiseGeometry g = geometry(x.shape, k, stride, pad, gy.shape)
    with nogil:
        depthwise_filter_grad(&x[0, 0, 0, 0], &gy[0, 0, 0, 0], g, num_threads, &gf[0, 0, 0])
