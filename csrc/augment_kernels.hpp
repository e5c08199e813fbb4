// Fused geometric warp + normalisation for a batch of images.
//
// Each output pixel (x, y) of image b is sampled once: its source position is M_b . (x, y, 1), where M_b
// is the inverse (output -> source) 2x3 affine map. The source is read with bilinear interpolation,
// pixel centres at integer coordinates (OpenCV's convention). Neighbours outside the image are 0
// (constant border, as cv2.warpAffine with borderValue 0) or the nearest edge pixel (replicate border,
// as cv2.resize). With `round_values` the interpolated value is rounded to the nearest integer first, as
// OpenCV does when it writes a uint8 image. The value v in [0, 255] is normalised as v * a[c] + b[c], with a = scale / std and
// b = -mean / std, and written straight into the CHW float32 batch. Images run in parallel (OpenMP),
// without the GIL; the Python side has already checked every shape, dtype and value.
#pragma once

#include <cmath>
#include <cstdint>

namespace fe {

struct WarpImage {
    const uint8_t* data;  // H x W x 3, C-contiguous
    int64_t height;
    int64_t width;
};

template <bool Replicate>
inline void warp_normalize_one(const WarpImage& img, const double* M, int64_t h, int64_t w,
                               const float* a, const float* b, bool round_values, float* out) {
    const int64_t H = img.height, W = img.width, plane = h * w;
    const uint8_t* src = img.data;
    for (int64_t y = 0; y < h; ++y) {
        for (int64_t x = 0; x < w; ++x) {
            double sx = M[0] * x + M[1] * y + M[2];
            double sy = M[3] * x + M[4] * y + M[5];
            // Far outside the image every neighbour is a border value: clamping keeps the floor in range.
            sx = sx < -2.0 ? -2.0 : (sx > W + 1.0 ? W + 1.0 : sx);
            sy = sy < -2.0 ? -2.0 : (sy > H + 1.0 ? H + 1.0 : sy);
            const double fx0 = std::floor(sx), fy0 = std::floor(sy);
            const int64_t x0 = static_cast<int64_t>(fx0), y0 = static_cast<int64_t>(fy0);
            const float tx = static_cast<float>(sx - fx0), ty = static_cast<float>(sy - fy0);
            const float w00 = (1.f - tx) * (1.f - ty), w01 = tx * (1.f - ty);
            const float w10 = (1.f - tx) * ty, w11 = tx * ty;
            const uint8_t* p[4] = {nullptr, nullptr, nullptr, nullptr};
            const int64_t xs[2] = {x0, x0 + 1}, ys[2] = {y0, y0 + 1};
            for (int k = 0; k < 4; ++k) {
                int64_t xi = xs[k & 1], yi = ys[k >> 1];
                if (Replicate) {
                    xi = xi < 0 ? 0 : (xi >= W ? W - 1 : xi);
                    yi = yi < 0 ? 0 : (yi >= H ? H - 1 : yi);
                    p[k] = src + (yi * W + xi) * 3;
                } else if (xi >= 0 && xi < W && yi >= 0 && yi < H) {
                    p[k] = src + (yi * W + xi) * 3;
                }
            }
            float* o = out + y * w + x;
            for (int c = 0; c < 3; ++c) {
                float v = (p[0] ? w00 * p[0][c] : 0.f) + (p[1] ? w01 * p[1][c] : 0.f) +
                                (p[2] ? w10 * p[2][c] : 0.f) + (p[3] ? w11 * p[3][c] : 0.f);
                if (round_values) v = std::floor(v + 0.5f);
                o[c * plane] = v * a[c] + b[c];
            }
        }
    }
}

// out: [n, 3, h, w] float32; matrices: [n, 2, 3] float64.
inline void warp_normalize_batch(const WarpImage* images, int64_t n, const double* matrices, int64_t h, int64_t w,
                                 const float* mean, const float* std_, float scale, bool replicate,
                                 bool round_values, int num_threads, float* out) {
    float a[3], b[3];
    for (int c = 0; c < 3; ++c) {
        a[c] = scale / std_[c];
        b[c] = -mean[c] / std_[c];
    }
    const int64_t stride = 3 * h * w;
#pragma omp parallel for num_threads(num_threads) schedule(dynamic)
    for (int64_t i = 0; i < n; ++i) {
        if (replicate)
            warp_normalize_one<true>(images[i], matrices + 6 * i, h, w, a, b, round_values, out + i * stride);
        else
            warp_normalize_one<false>(images[i], matrices + 6 * i, h, w, a, b, round_values, out + i * stride);
    }
}

}  // namespace fe
