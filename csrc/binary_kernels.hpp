// Similarity of binary codes: for codes of n bits packed into 64-bit words, the dot product of their +/-1 forms is
// n - 2 * popcount(a XOR b), so ranking by it is ranking by Hamming distance. One row of queries against a block of
// gallery codes at a time; single-threaded, without the GIL (the Python side gives each worker its own blocks).
#pragma once

#include <cstdint>

#if defined(_MSC_VER)
#include <intrin.h>
#endif

namespace fe {

inline int64_t popcount64(uint64_t x) {
#if defined(_MSC_VER)
    return static_cast<int64_t>(__popcnt64(x));
#else
    return static_cast<int64_t>(__builtin_popcountll(x));
#endif
}

// out[r, g] = n_bits - 2 * popcount(query[r] XOR gallery[g]) for query codes [n_rows, words] and gallery codes
// [n_gallery, words] (bits past n_bits are zero in both, so they never differ).
inline void code_similarity_block(const uint64_t* query, int64_t n_rows, const uint64_t* gallery, int64_t n_gallery,
                                  int64_t words, int64_t n_bits, float* out) {
    for (int64_t r = 0; r < n_rows; ++r) {
        const uint64_t* q = query + r * words;
        float* row = out + r * n_gallery;
        for (int64_t g = 0; g < n_gallery; ++g) {
            const uint64_t* c = gallery + g * words;
            int64_t differ = 0;
            for (int64_t w = 0; w < words; ++w) differ += popcount64(q[w] ^ c[w]);
            row[g] = static_cast<float>(n_bits - 2 * differ);
        }
    }
}

}  // namespace fe
