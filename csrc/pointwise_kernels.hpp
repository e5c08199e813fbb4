// Pointwise (1x1, stride 1, groups 1) 2-D convolution, NCHW float32, and its gradients, as matrix products.
//
// Why this exists: on the CPU, Paddle 3.3 runs a 1x1 convolution on the small feature maps of a 32x32 or 64x64
// input (2x2 to 8x8 positions) at about 10 GFLOP/s, while one single-precision GEMM over all N*H*W positions runs
// at 70-170 GFLOP/s in OpenBLAS. Here the batch is cut into groups of whole images of at least `kMinColumns`
// positions; for each group the input is packed channel-major (x' [C_in, positions]), multiplied by the weight
// (y' = W x', one GEMM), and unpacked into NCHW with the bias added. An image of many positions is its own group
// and needs no packing, and a 1x1 map is a plain row-major product y [N, C_out] = x [N, C_in] W^T.
//
// Threads: groups are split over `num_threads` OpenMP threads and each calls a single-threaded sgemm (the BLAS
// passed in is told to use one thread by the Python side), so all of a training step's parallel work runs on one
// thread pool: nested or competing BLAS and OpenMP pools spin against each other on a small machine.
// The weight and bias gradients are summed per thread, then over threads in thread order: the result depends on
// the thread count only through float rounding, never on scheduling.
//
// The Python wrapper has checked shapes, dtypes, contiguity and the 32-bit BLAS dimensions; nothing is checked here.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include <omp.h>

namespace fe {

// Fortran BLAS sgemm (column-major), as scipy.linalg.cython_blas exposes it.
typedef void (*sgemm_t)(char* transa, char* transb, int* m, int* n, int* k, float* alpha, float* a, int* lda,
                        float* b, int* ldb, float* beta, float* c, int* ldc);

struct PointwiseGeometry {
    int64_t n, cin, cout;   // batch, input and output channels
    int64_t p;              // positions per image, H * W
};

constexpr int64_t kMinColumns = 256;  // GEMMs narrower than this waste most of the BLAS kernel's speed

// Row-major C [m, n] = op(A) op(B) + beta C, where op transposes when asked; lda/ldb/ldc are row strides.
// A row-major matrix is its transpose in column-major order, so this is the column-major C^T = op(B)^T op(A)^T.
inline void gemm(sgemm_t sgemm, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
    char ta = trans_a ? 'T' : 'N', tb = trans_b ? 'T' : 'N';
    int mm = static_cast<int>(n), nn = static_cast<int>(m), kk = static_cast<int>(k);
    int la = static_cast<int>(lda), lb = static_cast<int>(ldb), lc = static_cast<int>(ldc);
    float alpha = 1.0f;
    sgemm(&tb, &ta, &mm, &nn, &kk, &alpha, const_cast<float*>(b), &lb, const_cast<float*>(a), &la, &beta, c, &lc);
}

// Images per group: enough for kMinColumns positions.
inline int64_t group_images(const PointwiseGeometry& g) {
    return std::max<int64_t>(1, std::min<int64_t>(g.n, (kMinColumns + g.p - 1) / g.p));
}

// packed [channels, images * p] from images [first, first + images) of x [n, channels, p].
inline void pack(const float* x, int64_t channels, int64_t p, int64_t first, int64_t images, float* packed) {
    const int64_t width = images * p;
    for (int64_t i = 0; i < images; ++i) {
        const float* src = x + (first + i) * channels * p;
        for (int64_t ch = 0; ch < channels; ++ch)
            std::copy(src + ch * p, src + (ch + 1) * p, packed + ch * width + i * p);
    }
}

// The inverse of `pack`, adding bias[ch] (if not null) to every value of channel ch.
inline void unpack(const float* packed, int64_t channels, int64_t p, int64_t first, int64_t images,
                   const float* bias, float* x) {
    const int64_t width = images * p;
    for (int64_t i = 0; i < images; ++i) {
        float* dst = x + (first + i) * channels * p;
        for (int64_t ch = 0; ch < channels; ++ch) {
            const float* src = packed + ch * width + i * p;
            const float b = bias ? bias[ch] : 0.0f;
            for (int64_t q = 0; q < p; ++q) dst[ch * p + q] = src[q] + b;
        }
    }
}

// y [n, cout, p] = weight [cout, cin] applied to x [n, cin, p] at every position, plus bias [cout] (may be null).
inline void pointwise_forward(sgemm_t sgemm, const float* x, const float* weight, const float* bias,
                              PointwiseGeometry g, int num_threads, float* y) {
    const int64_t per_group = g.p == 1 ? kMinColumns : group_images(g);
    const int64_t groups = (g.n + per_group - 1) / per_group;
#pragma omp parallel num_threads(num_threads)
    {
        std::vector<float> xs, ys;
#pragma omp for schedule(static)
        for (int64_t grp = 0; grp < groups; ++grp) {
            const int64_t first = grp * per_group, images = std::min(per_group, g.n - first), width = images * g.p;
            if (g.p == 1) {  // y rows = x rows W^T, the bias written first and added by beta = 1
                float* out = y + first * g.cout;
                for (int64_t i = 0; i < images; ++i)
                    for (int64_t co = 0; co < g.cout; ++co) out[i * g.cout + co] = bias ? bias[co] : 0.0f;
                gemm(sgemm, false, true, images, g.cout, g.cin, x + first * g.cin, g.cin, weight, g.cin, 1.0f, out,
                     g.cout);
            } else if (images == 1) {  // one image is already channel-major: y_i = W x_i
                float* out = y + first * g.cout * g.p;
                gemm(sgemm, false, false, g.cout, g.p, g.cin, weight, g.cin, x + first * g.cin * g.p, g.p, 0.0f, out,
                     g.p);
                if (bias)
                    for (int64_t co = 0; co < g.cout; ++co)
                        for (int64_t q = 0; q < g.p; ++q) out[co * g.p + q] += bias[co];
            } else {
                xs.resize(g.cin * width);
                ys.resize(g.cout * width);
                pack(x, g.cin, g.p, first, images, xs.data());
                gemm(sgemm, false, false, g.cout, width, g.cin, weight, g.cin, xs.data(), width, 0.0f, ys.data(),
                     width);
                unpack(ys.data(), g.cout, g.p, first, images, bias, y);
            }
        }
    }
}

// From the output gradient gy [n, cout, p]: gx [n, cin, p] (if not null), gw [cout, cin] and gb [cout] (if not
// null), for y = W x + b.
inline void pointwise_backward(sgemm_t sgemm, const float* x, const float* weight, const float* gy,
                               PointwiseGeometry g, int num_threads, float* gx, float* gw, float* gb) {
    const int64_t per_group = g.p == 1 ? kMinColumns : group_images(g);
    const int64_t groups = (g.n + per_group - 1) / per_group;
    const int threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads, groups)));
    std::vector<float> gw_parts(threads * g.cout * g.cin, 0.0f), gb_parts(threads * g.cout, 0.0f);
#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num();
        float* gw_t = gw_parts.data() + t * g.cout * g.cin;
        float* gb_t = gb_parts.data() + t * g.cout;
        std::vector<float> xs, gys, gxs;
#pragma omp for schedule(static)
        for (int64_t grp = 0; grp < groups; ++grp) {
            const int64_t first = grp * per_group, images = std::min(per_group, g.n - first), width = images * g.p;
            if (g.p == 1) {  // rows: gx = gy W, gw += gy^T x
                const float* gy_rows = gy + first * g.cout;
                const float* x_rows = x + first * g.cin;
                if (gx) gemm(sgemm, false, false, images, g.cin, g.cout, gy_rows, g.cout, weight, g.cin, 0.0f,
                             gx + first * g.cin, g.cin);
                gemm(sgemm, true, false, g.cout, g.cin, images, gy_rows, g.cout, x_rows, g.cin, 1.0f, gw_t, g.cin);
                if (gb)
                    for (int64_t i = 0; i < images; ++i)
                        for (int64_t co = 0; co < g.cout; ++co) gb_t[co] += gy_rows[i * g.cout + co];
                continue;
            }
            const float* gy_cm = gy + first * g.cout * g.p;  // channel-major blocks: the image itself, or packed
            const float* x_cm = x + first * g.cin * g.p;
            if (images > 1) {
                gys.resize(g.cout * width);
                xs.resize(g.cin * width);
                pack(gy, g.cout, g.p, first, images, gys.data());
                pack(x, g.cin, g.p, first, images, xs.data());
                gy_cm = gys.data();
                x_cm = xs.data();
            }
            gemm(sgemm, false, true, g.cout, g.cin, width, gy_cm, width, x_cm, width, 1.0f, gw_t, g.cin);
            if (gb)
                for (int64_t co = 0; co < g.cout; ++co) {
                    float sum = 0.0f;
                    for (int64_t j = 0; j < width; ++j) sum += gy_cm[co * width + j];
                    gb_t[co] += sum;
                }
            if (!gx) continue;
            if (images == 1) {
                gemm(sgemm, true, false, g.cin, width, g.cout, weight, g.cin, gy_cm, width, 0.0f,
                     gx + first * g.cin * g.p, width);
            } else {
                gxs.resize(g.cin * width);
                gemm(sgemm, true, false, g.cin, width, g.cout, weight, g.cin, gy_cm, width, 0.0f, gxs.data(), width);
                unpack(gxs.data(), g.cin, g.p, first, images, nullptr, gx);
            }
        }
    }
    for (int64_t j = 0; j < g.cout * g.cin; ++j) {
        float sum = 0.0f;
        for (int t = 0; t < threads; ++t) sum += gw_parts[t * g.cout * g.cin + j];
        gw[j] = sum;
    }
    if (gb)
        for (int64_t co = 0; co < g.cout; ++co) {
            float sum = 0.0f;
            for (int t = 0; t < threads; ++t) sum += gb_parts[t * g.cout + co];
            gb[co] = sum;
        }
}

}  // namespace fe
