// Ranking statistics for retrieval evaluation, computed from a block of similarity rows.
//
// The similarity matrix itself is produced by BLAS (a compiled loop is 15-30x slower than
// sgemm); what BLAS cannot do is rank. We never sort a gallery row: the rank of a positive
// is one plus the number of gallery items ordered before it, where "before" means a higher
// score, or an equal score and a smaller gallery index (a stable, documented tie-break).
// Items whose id equals the query's id are excluded from the ranking altogether.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
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

// Gallery items grouped by label (CSR): the items with label labels[c] are
// sorted_index[offsets[c]:offsets[c+1]], and `labels` is sorted, so a query finds its positives
// by binary search instead of scanning the whole row.
struct LabelIndex {
    const int64_t* labels;
    const int64_t* offsets;
    const int64_t* sorted_index;
    int64_t n_labels;
};

// One query row. `pos` and `diff` are scratch buffers owned by the calling thread.
inline void rank_row(const float* s, int64_t n_gallery, int64_t q_label, int64_t q_id,
                     const LabelIndex& by_label, const int64_t* g_ids, bool use_ids,
                     std::vector<Pos>& pos, std::vector<int64_t>& diff,
                     int64_t* n_pos, int64_t* first_rank, int64_t* last_rank,
                     double* ap, double* ap_at_r, double* r_precision) {
    pos.clear();
    const int64_t* found = std::lower_bound(by_label.labels, by_label.labels + by_label.n_labels, q_label);
    const int64_t c = found - by_label.labels;
    if (c < by_label.n_labels && *found == q_label) {
        for (int64_t t = by_label.offsets[c]; t < by_label.offsets[c + 1]; ++t) {
            const int64_t j = by_label.sorted_index[t];
            if (!(use_ids && g_ids[j] == q_id)) pos.push_back({s[j], j});
        }
    }
    const int64_t R = static_cast<int64_t>(pos.size());
    *n_pos = R;
    if (R == 0) {
        *first_rank = *last_rank = 0;
        *ap = *ap_at_r = *r_precision = 0.0;
        return;
    }
    std::sort(pos.begin(), pos.end(),
              [](const Pos& a, const Pos& b) { return before(a.score, a.index, b.score, b.index); });
    // diff[m] counts items ordered before positives m..R-1 but not before 0..m-1.
    diff.assign(R + 1, 0);
    const float lowest = pos[R - 1].score;
    for (int64_t k = 0; k < n_gallery; ++k) {
        const float sk = s[k];
        if (sk < lowest) continue;  // ordered after every positive: the common case
        if (use_ids && g_ids[k] == q_id) continue;
        // m = number of positives not ordered after item k (positives are sorted)
        int64_t lo = 0, hi = R;
        while (lo < hi) {
            const int64_t mid = (lo + hi) >> 1;
            if (before(sk, k, pos[mid].score, pos[mid].index)) hi = mid; else lo = mid + 1;
        }
        ++diff[lo];
    }
    int64_t above = 0, in_top_r = 0;
    double sum_prec = 0.0, sum_prec_r = 0.0;
    for (int64_t i = 0; i < R; ++i) {
        above += diff[i];
        const int64_t rank = above + 1;
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

// Rows of `scores` are queries, with row stride `ld` (in floats) over n_gallery columns.
inline void rank_stats(const float* scores, int64_t n_rows, int64_t n_gallery, int64_t ld,
                       const int64_t* q_labels, const int64_t* q_ids,
                       LabelIndex by_label, const int64_t* g_ids, bool use_ids,
                       RankStatsOut out, int num_threads) {
#pragma omp parallel num_threads(num_threads)
    {
        std::vector<Pos> pos;
        std::vector<int64_t> diff;
#pragma omp for schedule(dynamic, 8)
        for (int64_t i = 0; i < n_rows; ++i) {
            rank_row(scores + i * ld, n_gallery, q_labels[i], use_ids ? q_ids[i] : 0,
                     by_label, g_ids, use_ids, pos, diff,
                     out.n_pos + i, out.first_rank + i, out.last_rank + i,
                     out.ap + i, out.ap_at_r + i, out.r_precision + i);
        }
    }
}

// Top-k of each row in (score desc, index asc) order, excluded ids skipped. Rows with fewer
// than k eligible items are padded with index -1 and score -inf (faiss's convention).
inline void topk_rows(const float* scores, int64_t n_rows, int64_t n_gallery, int64_t ld, int64_t k,
                      const int64_t* q_ids, const int64_t* g_ids, bool use_ids,
                      float* out_scores, int64_t* out_index, int num_threads) {
#pragma omp parallel num_threads(num_threads)
    {
        std::vector<Pos> heap;  // max-heap by "ordered later", so heap.front() is the worst kept
        auto later = [](const Pos& a, const Pos& b) { return before(a.score, a.index, b.score, b.index); };
#pragma omp for schedule(dynamic, 8)
        for (int64_t i = 0; i < n_rows; ++i) {
            const float* s = scores + i * ld;
            const int64_t qid = use_ids ? q_ids[i] : 0;
            heap.clear();
            for (int64_t j = 0; j < n_gallery; ++j) {
                if (use_ids && g_ids[j] == qid) continue;
                if (static_cast<int64_t>(heap.size()) < k) {
                    heap.push_back({s[j], j});
                    std::push_heap(heap.begin(), heap.end(), later);
                } else if (before(s[j], j, heap.front().score, heap.front().index)) {
                    std::pop_heap(heap.begin(), heap.end(), later);
                    heap.back() = {s[j], j};
                    std::push_heap(heap.begin(), heap.end(), later);
                }
            }
            std::sort_heap(heap.begin(), heap.end(), later);
            const int64_t n = static_cast<int64_t>(heap.size());
            for (int64_t c = 0; c < k; ++c) {
                out_scores[i * k + c] = c < n ? heap[c].score : -std::numeric_limits<float>::infinity();
                out_index[i * k + c] = c < n ? heap[c].index : -1;
            }
        }
    }
}

}  // namespace fe
