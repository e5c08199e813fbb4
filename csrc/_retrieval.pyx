# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# distutils: language = c++
"""Compiled ranking kernels behind `feature_extraction.metrics` (private: call the wrappers there,
which check shapes, dtypes and contiguity before anything reaches these functions)."""
from libc.stdint cimport int64_t
from libcpp cimport bool as cbool

cdef extern from "retrieval_kernels.hpp" namespace "fe":
    cdef struct RankStatsOut:
        int64_t* n_pos
        int64_t* first_rank
        int64_t* last_rank
        double* ap
        double* ap_at_r
        double* r_precision
    cdef struct LabelIndex:
        const int64_t* labels
        const int64_t* offsets
        const int64_t* sorted_index
        int64_t n_labels
    void rank_stats(const float* scores, int64_t n_rows, int64_t n_gallery, int64_t ld,
                    const int64_t* q_labels, const int64_t* q_ids,
                    LabelIndex by_label, const int64_t* g_ids, cbool use_ids,
                    RankStatsOut out, int num_threads) nogil
    void topk_rows(const float* scores, int64_t n_rows, int64_t n_gallery, int64_t ld, int64_t k,
                   const int64_t* q_ids, const int64_t* g_ids, cbool use_ids,
                   float* out_scores, int64_t* out_index, int num_threads) nogil


def rank_stats_block(const float[:, ::1] scores,
                     const int64_t[::1] q_labels, const int64_t[::1] q_ids,
                     const int64_t[::1] labels, const int64_t[::1] offsets, const int64_t[::1] sorted_index,
                     const int64_t[::1] g_ids,
                     int64_t[::1] n_pos, int64_t[::1] first_rank, int64_t[::1] last_rank,
                     double[::1] ap, double[::1] ap_at_r, double[::1] r_precision,
                     int num_threads):
    """Fill the per-query outputs for the rows of `scores` [B, G]; ids are used when non-empty.
    The gallery's labels come grouped: items with label labels[c] are sorted_index[offsets[c]:offsets[c+1]]."""
    cdef RankStatsOut out
    cdef LabelIndex by_label
    by_label.labels = &labels[0]
    by_label.offsets = &offsets[0]
    by_label.sorted_index = &sorted_index[0]
    by_label.n_labels = labels.shape[0]
    cdef cbool use_ids = g_ids.shape[0] > 0
    cdef const int64_t* qid_ptr = &q_ids[0] if use_ids else NULL
    cdef const int64_t* gid_ptr = &g_ids[0] if use_ids else NULL
    out.n_pos = &n_pos[0]
    out.first_rank = &first_rank[0]
    out.last_rank = &last_rank[0]
    out.ap = &ap[0]
    out.ap_at_r = &ap_at_r[0]
    out.r_precision = &r_precision[0]
    with nogil:
        rank_stats(&scores[0, 0], scores.shape[0], scores.shape[1], scores.shape[1],
                   &q_labels[0], qid_ptr, by_label, gid_ptr, use_ids, out, num_threads)


def topk_block(const float[:, ::1] scores, int64_t k,
               const int64_t[::1] q_ids, const int64_t[::1] g_ids,
               float[:, ::1] out_scores, int64_t[:, ::1] out_index, int num_threads):
    """Fill `out_scores`/`out_index` [B, k] with each row's top k; ids are used when non-empty."""
    cdef cbool use_ids = g_ids.shape[0] > 0
    cdef const int64_t* qid_ptr = &q_ids[0] if use_ids else NULL
    cdef const int64_t* gid_ptr = &g_ids[0] if use_ids else NULL
    with nogil:
        topk_rows(&scores[0, 0], scores.shape[0], scores.shape[1], scores.shape[1], k,
                  qid_ptr, gid_ptr, use_ids, &out_scores[0, 0], &out_index[0, 0], num_threads)
