// Fused geometric warp + normalisation for a batch of images.
//
// Each output pixel (x, y) of image b is sampled once: its source position is M_b . (x, y, 1), where M_b
// is the inverse (output -> source) 2x3 affine map. The source is read with bilinear interpolation,
// pixel centres at integer coordinates (OpenCV's convention). Neighbours outside the image are 0
// (constant border, as cv2.warpAffine with borderValue 0) or the nearest edge pixel (replicate border,
// as cv2.resize). With `round_values` the interpolated value is rounded to the nearest integer first, as
// OpenCV does when it writes a uint8 image. The value v in [0, 255] is normalised as v * a[c] + b[c], with
// a = scale / std and b = -mean / std, and written straight into the CHW float32 batch.
//
// Clip windows give one warp the black fill of the steps it replaces (a Pad, a rotation with black corners):
// window k maps the output pixel into that step's output frame (A, then clamped to [0, aw-1] x [0, ah-1],
// as later resizes replicate that frame's edge) and back into the step's input frame (B, size fw x fh). The
// sample is scaled by the bilinear weight that frame's pixels have there: 1 inside, falling to 0 one pixel
// beyond, black lying outside.
//
// Speed: per output row the kernel solves, in closed form, the run of x where all four neighbours lie inside
// the source and every window weight is exactly 1; that run (most of the image) takes a branch-free path.
// Both paths compute the same expression in the same order, so they give identical values. Images run in
// parallel (OpenMP), without the GIL; the Python side has already checked every shape, dtype and value.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FE_HAVE_AVX2_PATH 1
#include <immintrin.h>
#endif

namespace fe {

struct WarpImage {
    const uint8_t* data;  // H x W x 3, C-contiguous
    int64_t height;
    int64_t width;
};

// One clip window: 16 doubles, as packed by augment.py.
struct ClipWindow {
    double A[6];   // output pixel -> the step's output frame
    double aw, ah; // that frame's size (clamp box)
    double B[6];   // the step's output frame -> its input frame
    double fw, fh; // the input frame's size
};
static_assert(sizeof(ClipWindow) == 16 * sizeof(double), "augment.py packs a window as 16 doubles");

// Narrow [lo, hi] to the x where lo_v <= a * x + b <= hi_v.
inline void restrict_run(double a, double b, double lo_v, double hi_v, double& lo, double& hi) {
    if (a == 0.0) {
        if (b < lo_v || b > hi_v) {  // empty, and stays empty under later restrictions
            lo = std::numeric_limits<double>::infinity();
            hi = -lo;
        }
        return;
    }
    double x0 = (lo_v - b) / a, x1 = (hi_v - b) / a;
    if (x0 > x1) std::swap(x0, x1);
    lo = std::max(lo, x0);
    hi = std::min(hi, x1);
}

inline float edge_weight(double X, double size) {
    double wt = std::min(X + 1.0, size - X);
    return static_cast<float>(wt <= 0.0 ? 0.0 : (wt >= 1.0 ? 1.0 : wt));
}

inline float window_weight(const ClipWindow* win, int64_t count, double x, double y) {
    float weight = 1.f;
    for (int64_t k = 0; k < count; ++k) {
        const ClipWindow& c = win[k];
        double u = c.A[0] * x + c.A[1] * y + c.A[2], v = c.A[3] * x + c.A[4] * y + c.A[5];
        u = u < 0.0 ? 0.0 : (u > c.aw - 1.0 ? c.aw - 1.0 : u);
        v = v < 0.0 ? 0.0 : (v > c.ah - 1.0 ? c.ah - 1.0 : v);
        const double X = c.B[0] * u + c.B[1] * v + c.B[2], Y = c.B[3] * u + c.B[4] * v + c.B[5];
        weight *= edge_weight(X, c.fw) * edge_weight(Y, c.fh);
    }
    return weight;
}

struct Normalizer {
    float a[3], b[3];
    bool round_values;
    inline void write(float v0, float v1, float v2, float weight, float* o, int64_t plane) const {
        float v[3] = {v0 * weight, v1 * weight, v2 * weight};
        for (int c = 0; c < 3; ++c) {
            float t = v[c];
            if (round_values) t = static_cast<float>(static_cast<int32_t>(t + 0.5f));  // t >= 0
            o[c * plane] = t * a[c] + b[c];
        }
    }
};

// The bilinear blend, written once so that every path computes it in the same order (no FMA contraction:
// -std=c++17 turns it off, and the AVX2 path uses separate multiplies and adds).
inline float lerp2(float a, float b, float d, float e, float tx, float ty) {
    const float top = a + tx * (b - a), bottom = d + tx * (e - d);
    return top + ty * (bottom - top);
}

// Fast run, portable: all four neighbours inside the source, weight 1.
inline void fast_run_scalar(const uint8_t* src, int64_t row, double mx, double my, double bx, double by,
                            int64_t x, int64_t end, const Normalizer& norm, float* orow, int64_t plane) {
    for (; x < end; ++x) {
        const double sx = mx * x + bx, sy = my * x + by;
        const int64_t x0 = static_cast<int64_t>(sx), y0 = static_cast<int64_t>(sy);
        const float tx = static_cast<float>(sx - x0), ty = static_cast<float>(sy - y0);
        const uint8_t* p = src + y0 * row + x0 * 3;
        const uint8_t* q = p + row;
        norm.write(lerp2(p[0], p[3], q[0], q[3], tx, ty), lerp2(p[1], p[4], q[1], q[4], tx, ty),
                   lerp2(p[2], p[5], q[2], q[5], tx, ty), 1.f, orow + x, plane);
    }
}

#ifdef FE_HAVE_AVX2_PATH
__attribute__((target("avx2"))) inline __m256i load8(const uint8_t* base, const int32_t* o) {
    int32_t v[8];
    for (int j = 0; j < 8; ++j) std::memcpy(&v[j], base + o[j], 4);
    return _mm256_setr_epi32(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]);
}

// Fast run, 8 pixels at a time with AVX2 gathers. Each neighbour pair is read as two 32-bit words: the left
// pixel's word starts at its first byte, the right pixel's word ends at its last byte, so no read leaves the
// image. Byte offsets are int32: the Python side refuses images of 2 GiB or more.
__attribute__((target("avx2"))) inline void fast_run_avx2(const uint8_t* src, int64_t row, double mx, double my,
                                                           double bx, double by, int64_t x, int64_t end,
                                                           const Normalizer& norm, float* orow, int64_t plane) {
    const __m256d vmx = _mm256_set1_pd(mx), vmy = _mm256_set1_pd(my), vbx = _mm256_set1_pd(bx), vby = _mm256_set1_pd(by);
    const __m256i vrow = _mm256_set1_epi32(static_cast<int32_t>(row)), three = _mm256_set1_epi32(3);
    const __m256i mask = _mm256_set1_epi32(255);
    const __m256 half = _mm256_set1_ps(0.5f);
    for (; x + 8 <= end; x += 8) {
        const __m256d xa = _mm256_set_pd(x + 3.0, x + 2.0, x + 1.0, x + 0.0);
        const __m256d xb = _mm256_add_pd(xa, _mm256_set1_pd(4.0));
        const __m256d sxa = _mm256_add_pd(_mm256_mul_pd(vmx, xa), vbx), sxb = _mm256_add_pd(_mm256_mul_pd(vmx, xb), vbx);
        const __m256d sya = _mm256_add_pd(_mm256_mul_pd(vmy, xa), vby), syb = _mm256_add_pd(_mm256_mul_pd(vmy, xb), vby);
        const __m128i x0a = _mm256_cvttpd_epi32(sxa), x0b = _mm256_cvttpd_epi32(sxb);
        const __m128i y0a = _mm256_cvttpd_epi32(sya), y0b = _mm256_cvttpd_epi32(syb);
        const __m256 tx = _mm256_set_m128(_mm256_cvtpd_ps(_mm256_sub_pd(sxb, _mm256_cvtepi32_pd(x0b))),
                                          _mm256_cvtpd_ps(_mm256_sub_pd(sxa, _mm256_cvtepi32_pd(x0a))));
        const __m256 ty = _mm256_set_m128(_mm256_cvtpd_ps(_mm256_sub_pd(syb, _mm256_cvtepi32_pd(y0b))),
                                          _mm256_cvtpd_ps(_mm256_sub_pd(sya, _mm256_cvtepi32_pd(y0a))));
        const __m256i x0 = _mm256_set_m128i(x0b, x0a), y0 = _mm256_set_m128i(y0b, y0a);
        const __m256i off = _mm256_add_epi32(_mm256_mullo_epi32(y0, vrow), _mm256_mullo_epi32(x0, three));
        alignas(32) int32_t o[8];
        _mm256_store_si256(reinterpret_cast<__m256i*>(o), off);
        // Scalar loads: AVX2 gathers are slow on several CPUs (AMD Zen 1-3 among them).
        const __m256i lt = load8(src, o), rt = load8(src + 2, o), lb = load8(src + row, o), rb = load8(src + row + 2, o);
        __m256 v[3];
        for (int c = 0; c < 3; ++c) {
            const __m128i sl = _mm_cvtsi32_si128(8 * c), sr = _mm_cvtsi32_si128(8 * c + 8);
            const __m256 a = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srl_epi32(lt, sl), mask));
            const __m256 b = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srl_epi32(rt, sr), mask));
            const __m256 d = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srl_epi32(lb, sl), mask));
            const __m256 e = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srl_epi32(rb, sr), mask));
            const __m256 top = _mm256_add_ps(a, _mm256_mul_ps(tx, _mm256_sub_ps(b, a)));
            const __m256 bottom = _mm256_add_ps(d, _mm256_mul_ps(tx, _mm256_sub_ps(e, d)));
            v[c] = _mm256_add_ps(top, _mm256_mul_ps(ty, _mm256_sub_ps(bottom, top)));
            if (norm.round_values) v[c] = _mm256_cvtepi32_ps(_mm256_cvttps_epi32(_mm256_add_ps(v[c], half)));
            const __m256 out = _mm256_add_ps(_mm256_mul_ps(v[c], _mm256_set1_ps(norm.a[c])), _mm256_set1_ps(norm.b[c]));
            _mm256_storeu_ps(orow + c * plane + x, out);
        }
    }
    fast_run_scalar(src, row, mx, my, bx, by, x, end, norm, orow, plane);
}

inline bool cpu_has_avx2() {
    static const bool has = __builtin_cpu_supports("avx2");
    return has;
}
#endif

// The instruction set the fast run uses on this CPU.
inline const char* fast_run_isa() {
#ifdef FE_HAVE_AVX2_PATH
    if (cpu_has_avx2()) return "avx2";
#endif
    return "scalar";
}

inline void fast_run(const uint8_t* src, int64_t row, double mx, double my, double bx, double by,
                     int64_t x, int64_t end, const Normalizer& norm, float* orow, int64_t plane) {
#ifdef FE_HAVE_AVX2_PATH
    if (cpu_has_avx2()) return fast_run_avx2(src, row, mx, my, bx, by, x, end, norm, orow, plane);
#endif
    fast_run_scalar(src, row, mx, my, bx, by, x, end, norm, orow, plane);
}

// The fast run of an axis-aligned map (no rotation: the source x depends on the output x only, the source y on
// the output y only). Each source row is interpolated horizontally once, at every output column, and kept
// while the output rows need it (an upscale reads each source row for two or more output rows); the vertical
// blend is then a contiguous loop. It computes lerp2's expression in lerp2's order, so the values are identical
// to the general path's.
struct SeparableRows {
    std::vector<int64_t> offset;  // 3 * x0 per output column
    std::vector<float> tx;        // horizontal fraction per output column
    std::vector<float> rows;      // two horizontally interpolated source rows, [2][3][w]
    int64_t first = -2;           // source row held in rows[0] (rows[1] holds first + 1)
    int64_t begin = 0, end = 0;   // output columns where 0 <= sx < W - 1

    void init(const double* M, int64_t W, int64_t w, double margin) {
        double lo = 0.0, hi = static_cast<double>(w - 1);
        restrict_run(M[0], M[2], margin, W - 1.0 - margin, lo, hi);
        offset.assign(w, 0);
        tx.assign(w, 0.f);
        rows.assign(6 * w, 0.f);
        begin = end = 0;
        if (!(lo <= hi)) return;
        begin = static_cast<int64_t>(std::ceil(lo));
        end = static_cast<int64_t>(std::floor(hi)) + 1;
        for (int64_t x = begin; x < end; ++x) {
            const double sx = M[0] * x + M[2];
            const int64_t x0 = static_cast<int64_t>(sx);
            offset[x] = 3 * x0;
            tx[x] = static_cast<float>(sx - x0);
        }
    }
    void interpolate(const uint8_t* src_row, float* out, int64_t w) const {
        for (int64_t x = begin; x < end; ++x) {
            const uint8_t* p = src_row + offset[x];
            const float t = tx[x];
            out[x] = p[0] + t * (p[3] - p[0]);
            out[w + x] = p[1] + t * (p[4] - p[1]);
            out[2 * w + x] = p[2] + t * (p[5] - p[2]);
        }
    }
    // Output row: columns [b, e) of the blend of source rows y0 and y0 + 1 with fraction ty.
    void run(const uint8_t* src, int64_t row, int64_t y0, float ty, int64_t b, int64_t e, int64_t w,
             const Normalizer& norm, float* orow, int64_t plane) {
        float* r0 = rows.data();
        float* r1 = r0 + 3 * w;
        if (y0 == first + 1) {  // slide down one source row
            std::swap_ranges(r0, r1, r1);
            interpolate(src + (y0 + 1) * row, r1, w);
        } else if (y0 != first) {
            interpolate(src + y0 * row, r0, w);
            interpolate(src + (y0 + 1) * row, r1, w);
        }
        first = y0;
        for (int c = 0; c < 3; ++c) {
            const float* top = r0 + c * w;
            const float* bottom = r1 + c * w;
            float* o = orow + c * plane;
            const float a = norm.a[c], bias = norm.b[c];
            if (norm.round_values) {
                for (int64_t x = b; x < e; ++x) {
                    const float v = top[x] + ty * (bottom[x] - top[x]);
                    o[x] = static_cast<float>(static_cast<int32_t>(v + 0.5f)) * a + bias;
                }
            } else {
                for (int64_t x = b; x < e; ++x) o[x] = (top[x] + ty * (bottom[x] - top[x])) * a + bias;
            }
        }
    }
};

// One pixel off the fast run: border handling and window weights.
template <bool Replicate>
inline void slow_pixel(const WarpImage& img, const double* M, const ClipWindow* win, int64_t nwin, int64_t x, int64_t y,
                       double bx, double by, const Normalizer& norm, float* orow, int64_t plane) {
    const int64_t H = img.height, W = img.width, row = W * 3;
    const uint8_t* src = img.data;
    const float weight = nwin ? window_weight(win, nwin, static_cast<double>(x), static_cast<double>(y)) : 1.f;
    if (weight == 0.f) {  // black: no need to sample (a rotation's corners, a pad)
        norm.write(0.f, 0.f, 0.f, 1.f, orow + x, plane);
        return;
    }
    double sx = M[0] * x + bx, sy = M[3] * x + by;
    // Far outside the image every neighbour is a border value: clamping keeps the floor in range.
    sx = sx < -2.0 ? -2.0 : (sx > W + 1.0 ? W + 1.0 : sx);
    sy = sy < -2.0 ? -2.0 : (sy > H + 1.0 ? H + 1.0 : sy);
    const double fx0 = std::floor(sx), fy0 = std::floor(sy);
    const int64_t x0 = static_cast<int64_t>(fx0), y0 = static_cast<int64_t>(fy0);
    const float tx = static_cast<float>(sx - fx0), ty = static_cast<float>(sy - fy0);
    static const uint8_t zero[3] = {0, 0, 0};
    const uint8_t* p[4];
    for (int k = 0; k < 4; ++k) {
        int64_t xi = x0 + (k & 1), yi = y0 + (k >> 1);
        if (Replicate) {
            xi = xi < 0 ? 0 : (xi >= W ? W - 1 : xi);
            yi = yi < 0 ? 0 : (yi >= H ? H - 1 : yi);
            p[k] = src + yi * row + xi * 3;
        } else {
            p[k] = (xi >= 0 && xi < W && yi >= 0 && yi < H) ? src + yi * row + xi * 3 : zero;
        }
    }
    norm.write(lerp2(p[0][0], p[1][0], p[2][0], p[3][0], tx, ty), lerp2(p[0][1], p[1][1], p[2][1], p[3][1], tx, ty),
               lerp2(p[0][2], p[1][2], p[2][2], p[3][2], tx, ty), weight, orow + x, plane);
}

template <bool Replicate>
inline void warp_normalize_one(const WarpImage& img, const double* M, const ClipWindow* win, int64_t nwin,
                               int64_t h, int64_t w, const Normalizer& norm, float* out) {
    const int64_t H = img.height, W = img.width, plane = h * w, row = W * 3;
    const uint8_t* src = img.data;
    const double margin = 1e-6;  // keeps the closed-form runs strictly inside, whatever the rounding
    const double inf = std::numeric_limits<double>::infinity();
    const bool separable = M[1] == 0.0 && M[3] == 0.0;
    SeparableRows rows;
    if (separable) rows.init(M, W, w, margin);
    for (int64_t y = 0; y < h; ++y) {
        const double bx = M[1] * y + M[2], by = M[4] * y + M[5];
        // The fast run: 0 <= sx < W - 1, 0 <= sy < H - 1 and every window weight 1.
        double lo = 0.0, hi = static_cast<double>(w - 1);
        restrict_run(M[0], bx, margin, W - 1.0 - margin, lo, hi);
        restrict_run(M[3], by, margin, H - 1.0 - margin, lo, hi);
        // Black runs: where window k's clamp is the identity, its weight is zero outside the run where all its
        // factors are positive; those pixels are black without sampling. At most 2 per window, for 8 windows.
        constexpr int kMaxRuns = 17;
        int64_t run_begin[kMaxRuns], run_end[kMaxRuns];
        bool run_fast[kMaxRuns];
        int nruns = 0;
        auto add_run = [&](double a, double b, bool fast) {  // the pixels of [a, b], if any
            a = std::max(a, 0.0);
            b = std::min(b, static_cast<double>(w - 1));
            if (!(a <= b) || nruns == kMaxRuns) return;
            const int64_t rb = static_cast<int64_t>(std::ceil(a)), re = static_cast<int64_t>(std::floor(b)) + 1;
            if (rb < re) { run_begin[nruns] = rb; run_end[nruns] = re; run_fast[nruns++] = fast; }
        };
        for (int64_t k = 0; k < nwin; ++k) {
            const ClipWindow& c = win[k];
            const double ua = c.A[0], ub = c.A[1] * y + c.A[2], va = c.A[3], vb = c.A[4] * y + c.A[5];
            const double Xa = c.B[0] * ua + c.B[1] * va, Xb = c.B[0] * ub + c.B[1] * vb + c.B[2];
            const double Ya = c.B[3] * ua + c.B[4] * va, Yb = c.B[3] * ub + c.B[4] * vb + c.B[5];
            double in_lo = 0.0, in_hi = static_cast<double>(w - 1);
            double nz_lo = -inf, nz_hi = inf;
            restrict_run(ua, ub, margin, c.aw - 1.0 - margin, in_lo, in_hi);
            restrict_run(va, vb, margin, c.ah - 1.0 - margin, in_lo, in_hi);
            restrict_run(Xa, Xb, -1.0 - margin, c.fw + margin, nz_lo, nz_hi);
            restrict_run(Ya, Yb, -1.0 - margin, c.fh + margin, nz_lo, nz_hi);
            restrict_run(ua, ub, margin, c.aw - 1.0 - margin, lo, hi);  // the fast run: clamp identity, weight 1
            restrict_run(va, vb, margin, c.ah - 1.0 - margin, lo, hi);
            restrict_run(Xa, Xb, margin, c.fw - 1.0 - margin, lo, hi);
            restrict_run(Ya, Yb, margin, c.fh - 1.0 - margin, lo, hi);
            if (k >= (kMaxRuns - 1) / 2 || in_lo > in_hi) continue;
            if (nz_lo > nz_hi) { add_run(in_lo, in_hi, false); continue; }
            add_run(in_lo, std::min(in_hi, std::nextafter(nz_lo, -inf)), false);  // x < nz_lo
            add_run(std::max(in_lo, std::nextafter(nz_hi, inf)), in_hi, false);   // x > nz_hi
        }
        if (lo <= hi) add_run(lo, hi, true);
        // Sort by start, drop what an earlier run covers (black runs may overlap; the fast run overlaps none).
        for (int i = 1; i < nruns; ++i)
            for (int j = i; j > 0 && run_begin[j] < run_begin[j - 1]; --j) {
                std::swap(run_begin[j], run_begin[j - 1]); std::swap(run_end[j], run_end[j - 1]); std::swap(run_fast[j], run_fast[j - 1]);
            }
        float* orow = out + y * w;
        int64_t x = 0;
        for (int r = 0; r <= nruns; ++r) {
            const int64_t gap_end = r < nruns ? run_begin[r] : w;
            for (; x < gap_end; ++x) slow_pixel<Replicate>(img, M, win, nwin, x, y, bx, by, norm, orow, plane);
            if (r == nruns) break;
            const int64_t b = std::max(x, run_begin[r]), e = run_end[r];
            if (b >= e) continue;
            if (run_fast[r] && separable) {
                const int64_t y0 = static_cast<int64_t>(by);
                rows.run(src, row, y0, static_cast<float>(by - y0), b, e, w, norm, orow, plane);
            } else if (run_fast[r]) fast_run(src, row, M[0], M[3], bx, by, b, e, norm, orow, plane);
            else for (int c = 0; c < 3; ++c) std::fill(orow + c * plane + b, orow + c * plane + e, norm.b[c]);
            x = e;
        }
    }
}

// out: [n, 3, h, w] float32; matrices: [n, 2, 3] float64; windows: [n, max_windows] ClipWindow, of which
// the first window_counts[i] apply to image i.
inline void warp_normalize_batch(const WarpImage* images, int64_t n, const double* matrices,
                                 const ClipWindow* windows, const int64_t* window_counts, int64_t max_windows,
                                 int64_t h, int64_t w, const float* mean, const float* std_, float scale,
                                 bool replicate, bool round_values, int num_threads, float* out) {
    Normalizer norm;
    norm.round_values = round_values;
    for (int c = 0; c < 3; ++c) {
        norm.a[c] = scale / std_[c];
        norm.b[c] = -mean[c] / std_[c];
    }
    const int64_t stride = 3 * h * w;
#pragma omp parallel for num_threads(num_threads) schedule(dynamic)
    for (int64_t i = 0; i < n; ++i) {
        const ClipWindow* win = windows + i * max_windows;
        if (replicate)
            warp_normalize_one<true>(images[i], matrices + 6 * i, win, window_counts[i], h, w, norm, out + i * stride);
        else
            warp_normalize_one<false>(images[i], matrices + 6 * i, win, window_counts[i], h, w, norm, out + i * stride);
    }
}

}  // namespace fe
