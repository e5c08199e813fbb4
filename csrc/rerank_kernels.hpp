// k-reciprocal re-ranking (Zhong et al., CVPR 2017) from neighbour lists, without an N x N matrix.
//
// PaddleClas's and fast-reid's implementations sort every row of the dense distance matrix of the query and
// gallery sets together, then walk it. Every step of the algorithm only looks at the first k1 + 1 neighbours of a
// point (k1 / 2 + 1 for the expansion, k2 for the query expansion), so these kernels take those lists, found by the
// metrics engine's exact top-k, and keep the weights as sparse rows: memory O(N * k1). Distances are PaddleClas's:
// squared Euclidean, |a|^2 + |b|^2 - 2 a.b, each point's divided by its largest distance to any point. Everything is
// computed in double precision (PaddleClas rounds its weights to float16).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

namespace fe {

// The k-reciprocal neighbours of point i, in the order of its list: those among its first k + 1 neighbours whose
// own first k + 1 neighbours hold i. `nbr` is [n, width], nearest first, each point first in its own list.
inline void reciprocal_set(const int64_t* nbr, int64_t width, int64_t i, int64_t k, std::vector<int64_t>& out) {
    out.clear();
    const int64_t kk = std::min(k + 1, width);
    const int64_t* row = nbr + i * width;
    for (int64_t a = 0; a < kk; ++a) {
        const int64_t* back = nbr + row[a] * width;
        for (int64_t b = 0; b < kk; ++b) {
            if (back[b] == i) {
                out.push_back(row[a]);
                break;
            }
        }
    }
}

// PaddleClas's distance of two points: |a|^2 + |b|^2 - 2 a.b, accumulated in double.
inline double sq_distance(const float* a, const float* b, int64_t d, double norm_a, double norm_b) {
    double dot = 0.0;
    for (int64_t j = 0; j < d; ++j) dot += static_cast<double>(a[j]) * static_cast<double>(b[j]);
    return norm_a + norm_b - 2.0 * dot;
}

// Each point's first `width` neighbours in the order of the published algorithm, from `extra` >= width candidates
// found in float32: sorted by their float64 distance divided by the point's largest one, ties by position (the
// stable sort of the dense algorithm). float32 similarities cannot order near-duplicates, which the icons have.
inline void refine_neighbours(const int64_t* candidates, int64_t n, int64_t extra, int64_t width, const float* feats,
                              int64_t d, const double* sq_norms, const double* row_max, int num_threads,
                              int64_t* out) {
#pragma omp parallel num_threads(num_threads)
    {
        std::vector<std::pair<double, int64_t>> keyed(extra);
#pragma omp for schedule(dynamic, 256)
        for (int64_t i = 0; i < n; ++i) {
            for (int64_t a = 0; a < extra; ++a) {
                const int64_t j = candidates[i * extra + a];
                keyed[a] = {sq_distance(feats + i * d, feats + j * d, d, sq_norms[i], sq_norms[j]) / row_max[i], j};
            }
            std::sort(keyed.begin(), keyed.end());  // by key, then by position
            for (int64_t a = 0; a < width; ++a) out[i * width + a] = keyed[a].second;
        }
    }
}

// Buffers of one worker thread.
struct ExpansionScratch {
    std::vector<int64_t> own, candidate, sorted_own;
};

// Row i of V: its k1-reciprocal set, expanded by every candidate's k_half-reciprocal set that shares more than
// two thirds of its members with it, sorted; weights exp(-D(i, j) / M_i), normalised to sum 1.
inline void expanded_row(const int64_t* nbr, int64_t width, int64_t i, int64_t k1, int64_t k_half,
                         const float* feats, int64_t d, const double* sq_norms, const double* row_max,
                         ExpansionScratch& s, std::vector<int64_t>& index, std::vector<double>& weight) {
    reciprocal_set(nbr, width, i, k1, s.own);
    index.assign(s.own.begin(), s.own.end());
    s.sorted_own.assign(s.own.begin(), s.own.end());
    std::sort(s.sorted_own.begin(), s.sorted_own.end());
    for (const int64_t c : s.own) {
        reciprocal_set(nbr, width, c, k_half, s.candidate);
        int64_t common = 0;
        for (const int64_t x : s.candidate) common += std::binary_search(s.sorted_own.begin(), s.sorted_own.end(), x);
        if (3 * common > 2 * static_cast<int64_t>(s.candidate.size()))  // more than 2/3 of it, as PaddleClas
            index.insert(index.end(), s.candidate.begin(), s.candidate.end());
    }
    std::sort(index.begin(), index.end());
    index.erase(std::unique(index.begin(), index.end()), index.end());
    weight.resize(index.size());
    double total = 0.0;
    for (size_t a = 0; a < index.size(); ++a) {
        const int64_t j = index[a];
        weight[a] = std::exp(-sq_distance(feats + i * d, feats + j * d, d, sq_norms[i], sq_norms[j]) / row_max[i]);
        total += weight[a];
    }
    for (double& w : weight) w /= total;
}

// Every row of V, on `num_threads` threads.
inline void expanded_rows(const int64_t* nbr, int64_t n, int64_t width, int64_t k1, int64_t k_half,
                          const float* feats, int64_t d, const double* sq_norms, const double* row_max,
                          int num_threads, std::vector<std::vector<int64_t>>& index,
                          std::vector<std::vector<double>>& weight) {
    index.assign(n, {});
    weight.assign(n, {});
#pragma omp parallel num_threads(num_threads)
    {
        ExpansionScratch s;
#pragma omp for schedule(dynamic, 64)
        for (int64_t i = 0; i < n; ++i)
            expanded_row(nbr, width, i, k1, k_half, feats, d, sq_norms, row_max, s, index[i], weight[i]);
    }
}

// out[r, g] = sum over the columns l that query row r and gallery row g share of min(V[r, l], V[g, l]): the
// numerator of the Jaccard similarity of the two rows (the rows of V sum to 1). The queries' rows come as CSR,
// the gallery's as columns (CSC, the gallery row of each entry); `out` is [n_rows, n_gallery], zeroed.
inline void min_overlap_block(const int64_t* q_indptr, const int64_t* q_index, const double* q_value, int64_t n_rows,
                              const int64_t* g_indptr, const int64_t* g_row, const double* g_value,
                              int64_t n_gallery, double* out) {
    for (int64_t r = 0; r < n_rows; ++r) {
        double* row = out + r * n_gallery;
        for (int64_t a = q_indptr[r]; a < q_indptr[r + 1]; ++a) {
            const int64_t l = q_index[a];
            const double v = q_value[a];
            for (int64_t b = g_indptr[l]; b < g_indptr[l + 1]; ++b) row[g_row[b]] += std::min(v, g_value[b]);
        }
    }
}

}  // namespace fe
