# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# distutils: language = c++
"""Compiled augmentation kernel behind `feature_extraction.augment` (private: call
`augment.warp_normalize_batch`, which checks every image, matrix, window and parameter first)."""
from libc.stdint cimport int64_t, uint8_t
from libcpp cimport bool as cbool
from libcpp.vector cimport vector

cdef extern from "augment_kernels.hpp" namespace "fe":
    cdef struct WarpImage:
        const uint8_t* data
        int64_t height
        int64_t width
    cdef struct ClipWindow:
        pass
    void warp_normalize_batch(const WarpImage* images, int64_t n, const double* matrices,
                              const ClipWindow* windows, const int64_t* window_counts, int64_t max_windows,
                              int64_t h, int64_t w, const float* mean, const float* std_, float scale,
                              cbool replicate, cbool round_values, int num_threads, float* out) nogil
    const char* fast_run_isa()


def instruction_set():
    """The instruction set of the kernel's fast path on this CPU: "avx2" or "scalar"."""
    return fast_run_isa().decode()


def warp_normalize(list images, const double[:, :, ::1] matrices, const double[:, :, ::1] windows,
                   const int64_t[::1] window_counts, const float[::1] mean, const float[::1] std, float scale,
                   cbool replicate, cbool round_values, int num_threads, float[:, :, :, ::1] out):
    """Fill `out` [n, 3, h, w] from the uint8 HWC RGB `images` (C-contiguous) warped by `matrices` [n, 2, 3],
    faded to black outside the clip `windows` [n, k, 16] (the first `window_counts[i]` rows of image i)."""
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
    cdef const double* win = &windows[0, 0, 0] if windows.shape[1] > 0 else NULL
    with nogil:
        warp_normalize_batch(views.data(), n, &matrices[0, 0, 0], <const ClipWindow*>win, &window_counts[0],
                             windows.shape[1], out.shape[2], out.shape[3], &mean[0], &std[0], scale, replicate,
                             round_values, num_threads, &out[0, 0, 0, 0])
