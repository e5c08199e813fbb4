# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# distutils: language = c++
"""Compiled Hamming similarity behind `feature_extraction.binary` (private: call `binary.code_similarity`, which
checks the codes first)."""
from libc.stdint cimport int64_t, uint64_t

cdef extern from "binary_kernels.hpp" namespace "fe":
    void code_similarity_block(const uint64_t* query, int64_t n_rows, const uint64_t* gallery, int64_t n_gallery,
                               int64_t words, int64_t n_bits, float* out) nogil


def code_similarity(const uint64_t[:, ::1] query, const uint64_t[:, ::1] gallery, int64_t n_bits,
                    float[:, ::1] out):
    """Fill `out` [Q, G] with n_bits - 2 * Hamming distance of each query and gallery code (one thread)."""
    with nogil:
        code_similarity_block(&query[0, 0], query.shape[0], &gallery[0, 0], gallery.shape[0], query.shape[1], n_bits,
                              &out[0, 0])
