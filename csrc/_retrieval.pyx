# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# distutils: language = c++
"""Compiled ranking kernels behind `feature_extraction.metrics` (private: call the wrappers there,
which check shapes, dtypes and contiguity before anything reaches these functions). Each function runs
single-threaded with the GIL released, so worker threads can run them side by side."""
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
                    RankStatsOut out) nogil
    cdef struct Positives:
        const int64_t* offsets
        float* score
        int64_t* index
    void collect_positives(const float* band, int64_t nr, int64_t nc, int64_t row0, int64_t col0,
                           const int64_t* class_start, const int64_t* class_end, const int64_t* ids,
                           cbool use_ids, const int64_t* orig, Positives P) nogil
    void count_tile(const float* tile, int64_t nr, int64_t nc, int64_t ld, int64_t row0, int64_t col0, cbool diagonal,
                    const int64_t* labels, const int64_t* orig, const float* lowest, Positives P,
                    int64_t* diff) nogil
    void finish_symmetric(int64_t n, const Positives& P, const int64_t* diff, RankStatsOut out) nogil
    void topk_rows(const float* scores, int64_t n_rows, int64_t n_gallery, int64_t ld, int64_t k,
                   const int64_t* q_ids, const int64_t* g_ids, cbool use_ids,
                   float* out_scores, int64_t* out_index) nogil


cdef RankStatsOut _stats_out(int64_t[::1] n_pos, int64_t[::1] first_rank, int64_t[::1] last_rank,
                             double[::1] ap, double[::1] ap_at_r, double[::1] r_precision):
    cdef RankStatsOut out
    out.n_pos = &n_pos[0]
    out.first_rank = &first_rank[0]
    out.last_rank = &last_rank[0]
    out.ap = &ap[0]
    out.ap_at_r = &ap_at_r[0]
    out.r_precision = &r_precision[0]
    return out


def rank_stats_block(const float[:, ::1] scores,
                     const int64_t[::1] q_labels, const int64_t[::1] q_ids,
                     const int64_t[::1] labels, const int64_t[::1] offsets, const int64_t[::1] sorted_index,
                     const int64_t[::1] g_ids,
                     int64_t[::1] n_pos, int64_t[::1] first_rank, int64_t[::1] last_rank,
                     double[::1] ap, double[::1] ap_at_r, double[::1] r_precision):
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
    out = _stats_out(n_pos, first_rank, last_rank, ap, ap_at_r, r_precision)
    with nogil:
        rank_stats(&scores[0, 0], scores.shape[0], scores.shape[1], scores.shape[1],
                   &q_labels[0], qid_ptr, by_label, gid_ptr, use_ids, out)


def topk_block(const float[:, ::1] scores, int64_t k,
               const int64_t[::1] q_ids, const int64_t[::1] g_ids,
               float[:, ::1] out_scores, int64_t[:, ::1] out_index):
    """Fill `out_scores`/`out_index` [B, k] with each row's top k; ids are used when non-empty."""
    cdef cbool use_ids = g_ids.shape[0] > 0
    cdef const int64_t* qid_ptr = &q_ids[0] if use_ids else NULL
    cdef const int64_t* gid_ptr = &g_ids[0] if use_ids else NULL
    with nogil:
        topk_rows(&scores[0, 0], scores.shape[0], scores.shape[1], scores.shape[1], k,
                  qid_ptr, gid_ptr, use_ids, &out_scores[0, 0], &out_index[0, 0])


cdef Positives _positives(const int64_t[::1] offsets, float[::1] score, int64_t[::1] index):
    cdef Positives P
    P.offsets = &offsets[0]
    P.score = &score[0] if score.shape[0] > 0 else NULL
    P.index = &index[0] if index.shape[0] > 0 else NULL
    return P


def collect_positives_block(const float[:, ::1] band, int64_t row0, int64_t col0,
                            const int64_t[::1] class_start, const int64_t[::1] class_end,
                            const int64_t[::1] ids, const int64_t[::1] orig,
                            const int64_t[::1] offsets, float[::1] score, int64_t[::1] index):
    """Symmetric case, phase 1: sorted positives of the queries at positions row0.. from their band
    [rows, columns col0..]; ids are used when non-empty."""
    cdef Positives P = _positives(offsets, score, index)
    cdef cbool use_ids = ids.shape[0] > 0
    cdef const int64_t* ids_ptr = &ids[0] if use_ids else NULL
    with nogil:
        collect_positives(&band[0, 0], band.shape[0], band.shape[1], row0, col0, &class_start[0], &class_end[0],
                          ids_ptr, use_ids, &orig[0], P)


def count_tile_block(const float[:, :] tile, int64_t row0, int64_t col0, cbool diagonal,
                     const int64_t[::1] labels, const int64_t[::1] orig, const float[::1] lowest,
                     const int64_t[::1] offsets, float[::1] score, int64_t[::1] index, int64_t[::1] diff):
    """Symmetric case: count the different-class pairs of one tile, in both directions off the diagonal, into
    `diff`, on the calling thread (each worker thread has counters of its own). The tile may be a column slice
    of a larger C-contiguous array (unit column stride)."""
    if tile.strides[1] != sizeof(float):
        raise ValueError("tile columns must be contiguous")
    cdef Positives P = _positives(offsets, score, index)
    cdef int64_t* diff_ptr = &diff[0] if diff.shape[0] > 0 else NULL
    with nogil:
        count_tile(&tile[0, 0], tile.shape[0], tile.shape[1], tile.strides[0] // sizeof(float), row0, col0, diagonal,
                   &labels[0], &orig[0], &lowest[0], P, diff_ptr)


def finish_symmetric_stats(const int64_t[::1] offsets, float[::1] score, int64_t[::1] index,
                           const int64_t[::1] diff,
                           int64_t[::1] n_pos, int64_t[::1] first_rank, int64_t[::1] last_rank,
                           double[::1] ap, double[::1] ap_at_r, double[::1] r_precision):
    """Symmetric case, last step: per-position statistics from the counts."""
    cdef Positives P = _positives(offsets, score, index)
    cdef RankStatsOut out
    cdef const int64_t* diff_ptr = &diff[0] if diff.shape[0] > 0 else NULL
    out = _stats_out(n_pos, first_rank, last_rank, ap, ap_at_r, r_precision)
    with nogil:
        finish_symmetric(n_pos.shape[0], P, diff_ptr, out)
