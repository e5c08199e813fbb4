# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# distutils: language = c++
"""Compiled pointwise (1x1) convolution behind `feature_extraction.backbone` (private: call
`backbone.pointwise_conv2d`, which checks every tensor first). The matrix products are scipy's single-precision
BLAS `sgemm` (OpenBLAS), reached through `scipy.linalg.cython_blas`; the threads are the kernel's OpenMP threads."""
from libc.stdint cimport int64_t
from scipy.linalg.cython_blas cimport sgemm

cdef extern from "pointwise_kernels.hpp" namespace "fe":
    ctypedef void (*sgemm_t)(char*, char*, int*, int*, int*, float*, float*, int*, float*, int*, float*, float*,
                             int*) noexcept nogil
    cdef struct PointwiseGeometry:
        int64_t n, cin, cout, p
    void pointwise_forward(sgemm_t sgemm, const float* x, const float* weight, const float* bias,
                           PointwiseGeometry g, int num_threads, float* y) nogil
    void pointwise_backward(sgemm_t sgemm, const float* x, const float* weight, const float* gy,
                            PointwiseGeometry g, int num_threads, float* gx, float* gw, float* gb) nogil


cdef PointwiseGeometry geometry(const Py_ssize_t* x_shape, Py_ssize_t cout) noexcept:
    cdef PointwiseGeometry g
    g.n, g.cin, g.p, g.cout = x_shape[0], x_shape[1], x_shape[2], cout
    return g


def forward(const float[:, :, ::1] x, const float[:, ::1] weight, const float[::1] bias, int num_threads,
            float[:, :, ::1] y):
    """y [n, cout, p] = weight [cout, cin] x [n, cin, p] + bias [cout] (None: no bias)."""
    cdef PointwiseGeometry g = geometry(x.shape, weight.shape[0])
    cdef const float* b = &bias[0] if bias is not None else NULL
    with nogil:
        pointwise_forward(<sgemm_t>sgemm, &x[0, 0, 0], &weight[0, 0], b, g, num_threads, &y[0, 0, 0])


def backward(const float[:, :, ::1] x, const float[:, ::1] weight, const float[:, :, ::1] gy, int num_threads,
             float[:, :, ::1] gx, float[:, ::1] gw, float[::1] gb):
    """gx [n, cin, p] (None: not needed), gw [cout, cin] and gb [cout] (None: no bias) from gy [n, cout, p]."""
    cdef PointwiseGeometry g = geometry(x.shape, weight.shape[0])
    cdef float* gx_ptr = &gx[0, 0, 0] if gx is not None else NULL
    cdef float* gb_ptr = &gb[0] if gb is not None else NULL
    with nogil:
        pointwise_backward(<sgemm_t>sgemm, &x[0, 0, 0], &weight[0, 0], &gy[0, 0, 0], g, num_threads, gx_ptr,
                           &gw[0, 0], gb_ptr)
