// Ranking statistics for retrieval evaluation, computed from a block of similarity rows.
//
// The similarity matrix itself is produced by BLAS (a compiled loop is 15-30x slower than
// sgemm); what BLAS cannot do is rank. We never sort a gallery row: the rank of a positive
// is one plus the number of gallery items ordered before it, where "before" means a higher
// score, or an equal score and a smaller gallery index (a stable, documented tie-break).
// Items with the query's label and id are excluded from the ranking altogether. Every function here is
// single-threaded and runs without the GIL: the Python side gives each worker thread its own blocks.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define FE_SSE2 1
#endif

namespace fe {

// Per-query outputs of rank_stats; every pointer has n_rows elements.
struct RankStatsOut {
    int64_t* n_pos;        // positives of the query that take part in the ranking (R)
    int64_t* first_rank;   // 1-based rank of the best positive, 0 when R == 0
    int64_t* last_rank;    // 1-based rank of the worst positive, 0 when R == 0
    double* ap;            // average precision over the whole ranking
    double* ap_at_r;       // MAP@R term: precision summed over ranks <= R, divided by R
    double* r_precision;   // positives within the first R ranks, divided by R
};

// A positive's sort key: higher score first, then smaller gallery index.
struct Pos {
    float score;
    int64_t index;
};

inline bool before(float sa, int64_t ia, float sb, int64_t ib) {
    return sa > sb || (sa == sb && ia < ib);
}

// Bit j of the result is set when a[j] >= thresholds[j] (or >= the scalar `threshold` when
// `thresholds` is null), for j < n <= 64. Nearly every score is below its query's weakest positive,
// so the hot loops test four scores per instruction and only visit the set bits.
inline uint64_t at_least_mask(const float* a, const float* thresholds, float threshold, int64_t n) {
    uint64_t bits = 0;
    int64_t j = 0;
#ifdef FE_SSE2
    const __m128 scalar = _mm_set1_ps(threshold);
    for (; j + 4 <= n; j += 4) {
        const __m128 thr = thresholds ? _mm_loadu_ps(thresholds + j) : scalar;
        bits |= static_cast<uint64_t>(_mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(a + j), thr))) << j;
    }
#endif
    for (; j < n; ++j) bits |= static_cast<uint64_t>(a[j] >= (thresholds ? thresholds[j] : threshold)) << j;
    return bits;
}

inline int lowest_bit(uint64_t bits) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_ctzll(bits);
#else
    int k = 0;
    while (!(bits & 1)) { bits >>= 1; ++k; }
    return k;
#endif
}

inline bool ranks_before(const Pos& a, const Pos& b) { return before(a.score, a.index, b.score, b.index); }

// Number of sorted positives that item (s, idx) is NOT ordered before, i.e. the first positive it
// precedes. Few positives (the usual case) are counted without branches; many are bisected.
inline int64_t first_after(float s, int64_t idx, const float* pos_score, const int64_t* pos_index, int64_t R) {
    if (R <= 16) {
        int64_t m = 0;
        // !before(s, idx, positive i), with bitwise operators so that no float comparison becomes a branch
        for (int64_t i = 0; i < R; ++i)
            m += (s < pos_score[i]) | ((s == pos_score[i]) & (idx >= pos_index[i]));
        return m;
    }
    int64_t lo = 0, hi = R;
    while (lo < hi) {
        const int64_t mid = (lo + hi) >> 1;
        if (before(s, idx, pos_score[mid], pos_index[mid])) hi = mid; else lo = mid + 1;
    }
    return lo;
}

// Per-query statistics from the counts of items ordered before each positive: positive i (0-based,
// sorted) has rank 1 + i + (diff[0] + ... + diff[i]) when positives were not counted as items
// (`positives_counted` false), and 1 + (diff[0] + ... + diff[i]) when they were.
inline void finish_stats(int64_t R, const int64_t* diff, bool positives_counted, int64_t* first_rank,
                         int64_t* last_rank, double* ap, double* ap_at_r, double* r_precision) {
    if (R == 0) {
        *first_rank = *last_rank = 0;
        *ap = *ap_at_r = *r_precision = 0.0;
        return;
    }
    int64_t above = 0, in_top_r = 0;
    double sum_prec = 0.0, sum_prec_r = 0.0;
    for (int64_t i = 0; i < R; ++i) {
        above += diff[i];
        const int64_t rank = above + 1 + (positives_counted ? 0 : i);
        const double prec = static_cast<double>(i + 1) / static_cast<double>(rank);
        sum_prec += prec;
        if (rank <= R) { sum_prec_r += prec; ++in_top_r; }
        if (i == 0) *first_rank = rank;
        if (i == R - 1) *last_rank = rank;
    }
    *ap = sum_prec / R;
    *ap_at_r = sum_prec_r / R;
    *r_precision = static_cast<double>(in_top_r) / R;
}

// Gallery items grouped by label (CSR): the items with label labels[c] are
// sorted_index[offsets[c]:offsets[c+1]], and `labels` is sorted, so a query finds its positives
// by binary search instead of scanning the whole row.
struct LabelIndex {
    const int64_t* labels;
    const int64_t* offsets;
    const int64_t* sorted_index;
    int64_t n_labels;
};

// One query row. Excluded items (same label and same id as the query) are counted like any item
// in the pass over the row and subtracted afterwards, which keeps the id test out of the hot loop.
// `pos`, `excl`, `ps`, `pi` and `diff` are scratch buffers owned by the calling thread.
inline void rank_row(const float* s, int64_t n_gallery, int64_t q_label, int64_t q_id,
                     const LabelIndex& by_label, const int64_t* g_ids, bool use_ids,
                     std::vector<Pos>& pos, std::vector<Pos>& excl, std::vector<float>& ps,
                     std::vector<int64_t>& pi, std::vector<int64_t>& diff,
                     int64_t* n_pos, int64_t* first_rank, int64_t* last_rank,
                     double* ap, double* ap_at_r, double* r_precision) {
    pos.clear();
    excl.clear();
    const int64_t* found = std::lower_bound(by_label.labels, by_label.labels + by_label.n_labels, q_label);
    const int64_t c = found - by_label.labels;
    if (c < by_label.n_labels && *found == q_label) {
        for (int64_t t = by_label.offsets[c]; t < by_label.offsets[c + 1]; ++t) {
            const int64_t j = by_label.sorted_index[t];
            (use_ids && g_ids[j] == q_id ? excl : pos).push_back({s[j], j});
        }
    }
    const int64_t R = static_cast<int64_t>(pos.size());
    *n_pos = R;
    if (R == 0) {
        finish_stats(0, nullptr, true, first_rank, last_rank, ap, ap_at_r, r_precision);
        return;
    }
    std::sort(pos.begin(), pos.end(), ranks_before);
    ps.resize(R);
    pi.resize(R);
    for (int64_t i = 0; i < R; ++i) { ps[i] = pos[i].score; pi[i] = pos[i].index; }
    // diff[m] counts items ordered before positives m..R-1 but not before 0..m-1.
    diff.assign(R + 1, 0);
    const float lowest = ps[R - 1];
    for (int64_t k0 = 0; k0 < n_gallery; k0 += 64) {
        for (uint64_t bits = at_least_mask(s + k0, nullptr, lowest, std::min<int64_t>(64, n_gallery - k0)); bits;
             bits &= bits - 1) {
            const int64_t k = k0 + lowest_bit(bits);
            ++diff[first_after(s[k], k, ps.data(), pi.data(), R)];
        }
    }
    for (const Pos& e : excl) {
        if (e.score >= lowest) --diff[first_after(e.score, e.index, ps.data(), pi.data(), R)];
    }
    finish_stats(R, diff.data(), true, first_rank, last_rank, ap, ap_at_r, r_precision);
}

// Rows of `scores` are queries, with row stride `ld` (in floats) over n_gallery columns.
inline void rank_stats(const float* scores, int64_t n_rows, int64_t n_gallery, int64_t ld,
                       const int64_t* q_labels, const int64_t* q_ids,
                       LabelIndex by_label, const int64_t* g_ids, bool use_ids,
                       RankStatsOut out) {
    std::vector<Pos> pos, excl;
    std::vector<float> ps;
    std::vector<int64_t> pi, diff;
    for (int64_t i = 0; i < n_rows; ++i) {
        rank_row(scores + i * ld, n_gallery, q_labels[i], use_ids ? q_ids[i] : 0,
                 by_label, g_ids, use_ids, pos, excl, ps, pi, diff,
                 out.n_pos + i, out.first_rank + i, out.last_rank + i,
                 out.ap + i, out.ap_at_r + i, out.r_precision + i);
    }
}

// ---- The symmetric case: query set == gallery set -------------------------------------------
// Items are sorted by label, so each class is a contiguous range [class_start[t], class_end[t]) of
// positions. Positives of query t are its class minus excluded items (same id); their scores come
// from a band of the similarity matrix around the diagonal. Every other pair is counted from tiles
// (I, J >= I) of the matrix, each computed once and read in both directions, which halves the
// matmul. `orig` maps positions to the caller's indices, which break ties.

// Positives (CSR by position): the positives of t are at [offsets[t], offsets[t+1]), sorted.
struct Positives {
    const int64_t* offsets;
    float* score;
    int64_t* index;
};

// Fill the positives of queries row0..row0+nr-1 from their band `band` [nr, nc] (columns col0..).
inline void collect_positives(const float* band, int64_t nr, int64_t nc, int64_t row0, int64_t col0,
                              const int64_t* class_start, const int64_t* class_end, const int64_t* ids,
                              bool use_ids, const int64_t* orig, Positives P) {
    std::vector<Pos> pos;
    for (int64_t i = 0; i < nr; ++i) {
        const int64_t t = row0 + i;
        pos.clear();
        for (int64_t u = class_start[t]; u < class_end[t]; ++u) {
            if (!(use_ids && ids[u] == ids[t])) pos.push_back({band[i * nc + (u - col0)], orig[u]});
        }
        std::sort(pos.begin(), pos.end(), ranks_before);
        for (size_t r = 0; r < pos.size(); ++r) {
            P.score[P.offsets[t] + r] = pos[r].score;
            P.index[P.offsets[t] + r] = pos[r].index;
        }
    }
}

// Item (s, orig index g) of another class, seen by query t: count it before the positives it precedes.
inline void count_item(int64_t t, float s, int64_t g, const float* lowest, const Positives& P, int64_t* diff) {
    if (s < lowest[t]) return;
    const int64_t o = P.offsets[t], R = P.offsets[t + 1] - o;
    const int64_t m = first_after(s, g, P.score + o, P.index + o, R);
    if (m < R) ++diff[o + m];
}

// Count the pairs of tile [nr, nc] with row stride ld (rows row0.., columns col0..) whose items are of
// different classes: rows as queries against the columns, and, unless the tile is on the diagonal, columns
// as queries against the rows, in one pass over the tile. `lowest[t]` is the weakest positive score of t
// (+inf without positives). One thread runs it, on counters `diff` of its own.
inline void count_tile(const float* tile, int64_t nr, int64_t nc, int64_t ld, int64_t row0, int64_t col0, bool diagonal,
                       const int64_t* labels, const int64_t* orig, const float* lowest, Positives P, int64_t* diff) {
    const float* col_lowest = lowest + col0;
    const float never = std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < nr; ++i) {
        const int64_t t = row0 + i;
        const float* row = tile + i * ld;
        for (int64_t j0 = 0; j0 < nc; j0 += 64) {
            const int64_t n = std::min<int64_t>(64, nc - j0);
            uint64_t bits = at_least_mask(row + j0, nullptr, lowest[t], n);
            if (!diagonal) bits |= at_least_mask(row + j0, col_lowest + j0, never, n);
            for (; bits; bits &= bits - 1) {
                const int64_t j = j0 + lowest_bit(bits), u = col0 + j;
                if (labels[u] == labels[t]) continue;
                count_item(t, row[j], orig[u], lowest, P, diff);
                if (!diagonal) count_item(u, row[j], orig[t], lowest, P, diff);
            }
        }
    }
}

// Per-position statistics once every tile has been counted.
inline void finish_symmetric(int64_t n, const Positives& P, const int64_t* diff, RankStatsOut out) {
    for (int64_t t = 0; t < n; ++t) {
        const int64_t o = P.offsets[t], R = P.offsets[t + 1] - o;
        out.n_pos[t] = R;
        finish_stats(R, diff + o, false, out.first_rank + t, out.last_rank + t, out.ap + t, out.ap_at_r + t,
                     out.r_precision + t);
    }
}

// Top-k of each row in (score desc, index asc) order, excluded ids skipped. Rows with fewer
// than k eligible items are padded with index -1 and score -inf (faiss's convention).
inline void topk_rows(const float* scores, int64_t n_rows, int64_t n_gallery, int64_t ld, int64_t k,
                      const int64_t* q_ids, const int64_t* g_ids, bool use_ids,
                      float* out_scores, int64_t* out_index) {
    std::vector<Pos> heap;  // a heap whose front is the worst item kept
    for (int64_t i = 0; i < n_rows; ++i) {
        const float* s = scores + i * ld;
        const int64_t qid = use_ids ? q_ids[i] : 0;
        heap.clear();
        for (int64_t j = 0; j < n_gallery; ++j) {
            if (use_ids && g_ids[j] == qid) continue;
            if (static_cast<int64_t>(heap.size()) < k) {
                heap.push_back({s[j], j});
                std::push_heap(heap.begin(), heap.end(), ranks_before);
            } else if (before(s[j], j, heap.front().score, heap.front().index)) {
                std::pop_heap(heap.begin(), heap.end(), ranks_before);
                heap.back() = {s[j], j};
                std::push_heap(heap.begin(), heap.end(), ranks_before);
            }
        }
        std::sort_heap(heap.begin(), heap.end(), ranks_before);
        const int64_t n = static_cast<int64_t>(heap.size());
        for (int64_t c = 0; c < k; ++c) {
            out_scores[i * k + c] = c < n ? heap[c].score : -std::numeric_limits<float>::infinity();
            out_index[i * k + c] = c < n ? heap[c].index : -1;
        }
    }
}

}  // namespace fe
