// Depthwise 2-D convolution (one k x k filter per channel, NCHW float32) and its two gradients.
//
// Why this exists: on the CPU, Paddle 3.3 runs a depthwise convolution at about 1 GFLOP/s, and
// in PP-LCNetV2 these convolutions take 85 % of a training step although they hold a few percent
// of the multiply-adds. Here each (image, channel) plane is one task: the output rows of a plane
// stay in L1, and for every filter tap the range of output columns whose input column lies inside
// the image is computed in closed form, so the inner loops have no bounds tests and vectorise.
// Zero padding is implicit: taps that fall outside the image are skipped.
//
// Every function runs without the GIL on `num_threads` OpenMP threads. The Python wrapper has
// checked shapes, dtypes and contiguity; nothing is checked here.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace fe {

struct DepthwiseGeometry {
    int64_t n, c, h, w;     // input batch, channels, height, width
    int64_t k;              // square filter size
    int64_t stride, pad;    // same along both axes; padding is zeros
    int64_t oh, ow;         // output height and width
};

// Output positions o in [lo, hi) whose input position o * stride + tap - pad lies in [0, size).
inline void tap_range(int64_t tap, int64_t size, int64_t out_size, int64_t stride, int64_t pad,
                      int64_t& lo, int64_t& hi) {
    const int64_t a = pad - tap;                     // need o * stride >= a
    lo = a <= 0 ? 0 : (a + stride - 1) / stride;
    const int64_t b = size - 1 + a;                  // need o * stride <= b
    hi = b < 0 ? 0 : std::min(out_size, b / stride + 1);
    lo = std::min(lo, hi);
}

// Calls row(tap, in, out, x0, x1) for every filter tap (ky * k + kx) and every output row it reaches: `in` is the
// offset in the input plane of the pixel that output column 0 of that row would read with that tap, `out` the
// offset of the output row, and columns x0 <= ox < x1 read inside the image (input offset in + ox * stride).
template <class Row>
__attribute__((always_inline)) inline void for_each_tap_row(const DepthwiseGeometry& g, Row row) {
    for (int64_t ky = 0; ky < g.k; ++ky) {
        int64_t y0, y1;
        tap_range(ky, g.h, g.oh, g.stride, g.pad, y0, y1);
        for (int64_t kx = 0; kx < g.k; ++kx) {
            int64_t x0, x1;
            tap_range(kx, g.w, g.ow, g.stride, g.pad, x0, x1);
            for (int64_t oy = y0; oy < y1; ++oy)
                row(ky * g.k + kx, (oy * g.stride + ky - g.pad) * g.w + kx - g.pad, oy * g.ow, x0, x1);
        }
    }
}

__attribute__((target_clones("avx2", "default")))
inline void forward_plane(const float* x, const float* filter, const DepthwiseGeometry& g, float* y) {
    std::fill(y, y + g.oh * g.ow, 0.0f);
    const int64_t s = g.stride;
    for_each_tap_row(g, [&](int64_t tap, int64_t in, int64_t out, int64_t x0, int64_t x1) __attribute__((always_inline)) {
        const float wv = filter[tap];
        if (s == 1) for (int64_t ox = x0; ox < x1; ++ox) y[out + ox] += wv * x[in + ox];
        else for (int64_t ox = x0; ox < x1; ++ox) y[out + ox] += wv * x[in + ox * s];
    });
}

__attribute__((target_clones("avx2", "default")))
inline void input_grad_plane(const float* gy, const float* filter, const DepthwiseGeometry& g, float* gx) {
    std::fill(gx, gx + g.h * g.w, 0.0f);
    const int64_t s = g.stride;
    for_each_tap_row(g, [&](int64_t tap, int64_t in, int64_t out, int64_t x0, int64_t x1) __attribute__((always_inline)) {
        const float wv = filter[tap];
        if (s == 1) for (int64_t ox = x0; ox < x1; ++ox) gx[in + ox] += wv * gy[out + ox];
        else for (int64_t ox = x0; ox < x1; ++ox) gx[in + ox * s] += wv * gy[out + ox];
    });
}

// Adds to `acc` (k * k doubles) the filter gradient of one plane. Float sums per output row keep the inner loop
// vectorised; rows are summed in double, so long batches do not lose precision.
__attribute__((target_clones("avx2", "default")))
inline void filter_grad_plane(const float* x, const float* gy, const DepthwiseGeometry& g, double* acc) {
    const int64_t s = g.stride;
    for_each_tap_row(g, [&](int64_t tap, int64_t in, int64_t out, int64_t x0, int64_t x1) __attribute__((always_inline)) {
        float row = 0.0f;
        if (s == 1) {
#pragma omp simd reduction(+ : row)
            for (int64_t ox = x0; ox < x1; ++ox) row += gy[out + ox] * x[in + ox];
        } else {
#pragma omp simd reduction(+ : row)
            for (int64_t ox = x0; ox < x1; ++ox) row += gy[out + ox] * x[in + ox * s];
        }
        acc[tap] += row;
    });
}

// Small maps (output rows of at most kShortRow columns, as in the last stages of a network fed 32x32 or 64x64
// images): rows are too short for the tap-row walk to vectorise, and its per-row bookkeeping costs more than the
// arithmetic. Every plane has the same geometry, so the (output, input, tap) triples that meet inside the image are
// listed once per call and each plane is a straight walk over them.
constexpr int64_t kShortRow = 4;

struct TapPair {
    int32_t out, in, tap;  // offsets in the output plane, the input plane and the filter
};

inline std::vector<TapPair> tap_pairs(const DepthwiseGeometry& g) {
    std::vector<TapPair> pairs;
    for_each_tap_row(g, [&](int64_t tap, int64_t in, int64_t out, int64_t x0, int64_t x1) {
        for (int64_t ox = x0; ox < x1; ++ox)
            pairs.push_back({static_cast<int32_t>(out + ox), static_cast<int32_t>(in + ox * g.stride),
                             static_cast<int32_t>(tap)});
    });
    return pairs;
}

inline bool use_tap_pairs(const DepthwiseGeometry& g) { return g.ow <= kShortRow; }

// The forward and the input gradient are mirror images over the same (image, channel) planes: the forward gathers
// y[out] += filter[tap] * x[in], the input gradient scatters gx[in] += filter[tap] * gy[out]. `kInputGrad` picks
// the direction: `src` is x or gy and `dst` is y or gx. The order of the sums, and so the result, is that of the
// two loops this template replaced.
template <bool kInputGrad>
inline void depthwise_pass(const float* src, const float* filters, const DepthwiseGeometry& g, int num_threads,
                           float* dst) {
    const int64_t planes = g.n * g.c, in_size = g.h * g.w, out_size = g.oh * g.ow, taps = g.k * g.k;
    const int64_t src_size = kInputGrad ? out_size : in_size, dst_size = kInputGrad ? in_size : out_size;
    if (use_tap_pairs(g)) {
        const std::vector<TapPair> pairs = tap_pairs(g);
#pragma omp parallel for schedule(static) num_threads(num_threads)
        for (int64_t p = 0; p < planes; ++p) {
            const float* sp = src + p * src_size;
            const float* filter = filters + (p % g.c) * taps;
            float* dp = dst + p * dst_size;
            std::fill(dp, dp + dst_size, 0.0f);
            for (const TapPair& t : pairs) {
                const int32_t read = kInputGrad ? t.out : t.in, write = kInputGrad ? t.in : t.out;
                dp[write] += filter[t.tap] * sp[read];
            }
        }
        return;
    }
#pragma omp parallel for schedule(static) num_threads(num_threads)
    for (int64_t p = 0; p < planes; ++p) {
        const float* filter = filters + (p % g.c) * taps;
        if constexpr (kInputGrad) input_grad_plane(src + p * src_size, filter, g, dst + p * dst_size);
        else forward_plane(src + p * src_size, filter, g, dst + p * dst_size);
    }
}

// y [n, c, oh, ow] = x [n, c, h, w] convolved with filters [c, k, k].
inline void depthwise_forward(const float* x, const float* filters, DepthwiseGeometry g, int num_threads, float* y) {
    depthwise_pass<false>(x, filters, g, num_threads, y);
}

// gx [n, c, h, w] from the output gradient gy [n, c, oh, ow].
inline void depthwise_input_grad(const float* gy, const float* filters, DepthwiseGeometry g, int num_threads,
                                 float* gx) {
    depthwise_pass<true>(gy, filters, g, num_threads, gx);
}

// gf [c, k, k] from the input x and the output gradient gy. Each thread owns whole channels, so
// there is no reduction across threads and the result does not depend on the thread count.
inline void depthwise_filter_grad(const float* x, const float* gy, DepthwiseGeometry g, int num_threads,
                                  float* gf) {
    const int64_t in_size = g.h * g.w, out_size = g.oh * g.ow, taps = g.k * g.k;
    const bool small = use_tap_pairs(g);
    const std::vector<TapPair> pairs = small ? tap_pairs(g) : std::vector<TapPair>();
#pragma omp parallel for schedule(static) num_threads(num_threads)
    for (int64_t ch = 0; ch < g.c; ++ch) {
        std::vector<double> acc(taps, 0.0);
        std::vector<float> plane_acc(small ? taps : 0);
        for (int64_t i = 0; i < g.n; ++i) {
            const int64_t p = i * g.c + ch;
            if (!small) {
                filter_grad_plane(x + p * in_size, gy + p * out_size, g, acc.data());
                continue;
            }
            const float* xp = x + p * in_size;
            const float* gyp = gy + p * out_size;
            std::fill(plane_acc.begin(), plane_acc.end(), 0.0f);
            for (const TapPair& t : pairs) plane_acc[t.tap] += gyp[t.out] * xp[t.in];
            for (int64_t t = 0; t < taps; ++t) acc[t] += plane_acc[t];
        }
        for (int64_t t = 0; t < taps; ++t) gf[ch * taps + t] = static_cast<float>(acc[t]);
    }
}

}  // namespace fe
