# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# distutils: language = c++
"""Compiled k-reciprocal re-ranking kernels behind `feature_extraction.rerank` (private: call the wrappers there,
which check shapes, dtypes and contiguity before anything reaches these functions)."""
import numpy as np
from libc.stdint cimport int64_t
from libcpp.vector cimport vector

cdef extern from "rerank_kernels.hpp" namespace "fe":
    void expanded_rows(const int64_t* nbr, int64_t n, int64_t width, int64_t k1, int64_t k_half,
                       const float* feats, int64_t d, const double* sq_norms, const double* row_max,
                       int num_threads, vector[vector[int64_t]]& index, vector[vector[double]]& weight) nogil
    void refine_neighbours(const int64_t* candidates, int64_t n, int64_t extra, int64_t width, const float* feats,
                           int64_t d, const double* sq_norms, const double* row_max, int num_threads,
                           int64_t* out) nogil
    void min_overlap_block(const int64_t* q_indptr, const int64_t* q_index, const double* q_value, int64_t n_rows,
                           const int64_t* g_indptr, const int64_t* g_row, const double* g_value,
                           int64_t n_gallery, double* out) nogil


def expanded_weights(const int64_t[:, ::1] neighbours, int64_t k1, int64_t k_half, const float[:, ::1] features,
                     const double[::1] sq_norms, const double[::1] row_max, int num_threads):
    """(indptr [n + 1], index, weight) of V, CSR: each point's expanded k-reciprocal set and its weights."""
    cdef vector[vector[int64_t]] index
    cdef vector[vector[double]] weight
    cdef int64_t n = neighbours.shape[0], i, j, at = 0
    with nogil:
        expanded_rows(&neighbours[0, 0], n, neighbours.shape[1], k1, k_half, &features[0, 0], features.shape[1],
                      &sq_norms[0], &row_max[0], num_threads, index, weight)
    indptr = np.zeros(n + 1, np.int64)
    cdef int64_t[::1] ptr = indptr
    for i in range(n): ptr[i + 1] = ptr[i] + index[i].size()
    out_index, out_weight = np.empty(ptr[n], np.int64), np.empty(ptr[n], np.float64)
    cdef int64_t[::1] oi = out_index
    cdef double[::1] ow = out_weight
    with nogil:
        for i in range(n):
            for j in range(<int64_t>index[i].size()):
                oi[at] = index[i][j]
                ow[at] = weight[i][j]
                at += 1
    return indptr, out_index, out_weight


def refined_neighbours(const int64_t[:, ::1] candidates, int64_t width, const float[:, ::1] features,
                       const double[::1] sq_norms, const double[::1] row_max, int num_threads):
    """Each point's first `width` neighbours [n, width], ordered by float64 scaled distance from the candidates."""
    out = np.empty((candidates.shape[0], width), np.int64)
    cdef int64_t[:, ::1] o = out
    with nogil:
        refine_neighbours(&candidates[0, 0], candidates.shape[0], candidates.shape[1], width, &features[0, 0],
                          features.shape[1], &sq_norms[0], &row_max[0], num_threads, &o[0, 0])
    return out


def min_overlap(const int64_t[::1] q_indptr, const int64_t[::1] q_index, const double[::1] q_value,
                const int64_t[::1] g_indptr, const int64_t[::1] g_row, const double[::1] g_value,
                double[:, ::1] out):
    """Add to `out` [rows, gallery] the sums of min(V[query, l], V[gallery, l]) over shared columns l (one thread)."""
    cdef const int64_t* qi = &q_index[0] if q_index.shape[0] > 0 else NULL
    cdef const double* qv = &q_value[0] if q_value.shape[0] > 0 else NULL
    cdef const int64_t* gr = &g_row[0] if g_row.shape[0] > 0 else NULL
    cdef const double* gv = &g_value[0] if g_value.shape[0] > 0 else NULL
    with nogil:
        min_overlap_block(&q_indptr[0], qi, qv, out.shape[0], &g_indptr[0], gr, gv, out.shape[1], &out[0, 0])
