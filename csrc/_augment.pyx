# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# distutils: language = c++
"""Compiled augmentation kernel behind `feature_extraction.augment` (private: call
`augment.warp_normalize_batch`, which checks every image, matrix and parameter first)."""
from libc.stdint cimport int64_t, uint8_t
from libcpp cimport bool as cbool
from libcpp.vector cimport vector

cdef extern from "augment_kernels.hpp" namespace "fe":
    cdef struct WarpImage:
        const uint8_t* data
        int64_t height
        int64_t width
    void warp_normalize_batch(const WarpImage* images, int64_t n, const double* matrices, int64_t h, int64_t w,
                              const float* mean, const float* std_, float scale, cbool replicate,
                              cbool round_values, int num_threads, float* out) nogil


def warp_normalize(list images, const double[:, :, ::1] matrices, const float[::1] mean, const float[::1] std,
                   float scale, cbool replicate, cbool round_values, int num_threads, float[:, :, :, ::1] out):
    """Fill `out` [n, 3, h, w] from the uint8 HWC RGB `images` (C-contiguous) warped by `matrices` [n, 2, 3]."""
    cdef vector[WarpImage] views
    cdef WarpImage v
    cdef const uint8_t[:, :, ::1] im
    views.reserve(len(images))
    for obj in images:  # `images` keeps every array alive while the kernel runs
        im = obj
        v.data = &im[0, 0, 0]
        v.height = im.shape[0]
        v.width = im.shape[1]
        views.push_back(v)
    cdef int64_t n = views.size()
    if n == 0: return
    with nogil:
        warp_normalize_batch(views.data(), n, &matrices[0, 0, 0], out.shape[2], out.shape[3],
                             &mean[0], &std[0], scale, replicate, round_values, num_threads, &out[0, 0, 0, 0])
