// predgsplat_math.h: the per-Gaussian math of pdr.render.rasterize_gaussians (docs/renderer.md),
// shared by the CPU kernels (predgsplat_cpu.cpp) and the CUDA kernels (predgsplat_kernels.cuh), so that a
// CPU-only build compiles and tests the same formulas the GPU runs. The device branches
// (PREDGSPLAT_DEVICE_CODE) are compiled by nvcc for the GPU, and by the host compiler under the CUDA
// emulator (emu/cuda_emu.h), which provides the same intrinsics.
//
// Per Gaussian: pixel centre, conic (Sigma^-1), window; per pixel: the value exp(-0.5 d^T Sigma^-1 d)
// and its share of the gradient of (px, py, a, b, c); per Gaussian again: the chain rule from
// (px, py, a, b, c) to (means, scales, rotations).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define PREDGSPLAT_HD __host__ __device__ __forceinline__
#else
#define PREDGSPLAT_HD inline
#endif

#if defined(__CUDA_ARCH__) || defined(CUDA_EMU)
#define PREDGSPLAT_DEVICE_CODE 1
#endif

namespace predgsplat {

constexpr int kNoWindow = 0;  // kernel_size 0 means every pixel

template <typename T>
struct Geometry {
  T px, py;            // centre in pixel coordinates
  T a, b, c;           // conic: d^T Sigma^-1 d = a dx^2 + 2 b dx dy + c dy^2
  int x0, x1, y0, y1;  // pixels reached, inclusive, clipped to the image; x0 > x1 when none
};

// d(loss)/d(px, py, a, b, c) of one Gaussian, or one pixel's share of it.
template <typename T>
struct GeometryGrad {
  T px, py, a, b, c;
};

template <typename T>
PREDGSPLAT_HD bool is_finite(T v) {
#if defined(PREDGSPLAT_DEVICE_CODE)
  return isfinite(v);
#else
  return std::isfinite(v);
#endif
}

PREDGSPLAT_HD void sin_cos(float t, float* s, float* c) {
#if defined(PREDGSPLAT_DEVICE_CODE)
  sincosf(t, s, c);
#else
  *s = std::sin(t);
  *c = std::cos(t);
#endif
}

PREDGSPLAT_HD void sin_cos(double t, double* s, double* c) {
#if defined(PREDGSPLAT_DEVICE_CODE)
  sincos(t, s, c);
#else
  *s = std::sin(t);
  *c = std::cos(t);
#endif
}

// exp(x) for x <= 0 in float32 on the CPU: a loop of these vectorises (std::exp does not without
// -ffast-math). 2^k * p(r) with r = x - k ln2 in [-ln2/2, ln2/2], p the degree-7 Taylor polynomial:
// relative error below 2e-7. NaN stays NaN; below -87.3 the result is 0 (float32 underflows there).
inline float cpu_exp(float x) {
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  float xc = x < -88.0f ? -88.0f : x;
  xc = xc > 88.0f ? 88.0f : xc;
  const float kf = (xc * 1.44269504088896341f + shifter) - shifter;
  const float r = (xc - kf * 0.693359375f) + kf * 2.12194440e-4f;  // ln2 = 0.693359375 - 2.12194440e-4
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(kf) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  const float y = p * scale;
  return x < -87.3f ? 0.0f : y;
}

inline double cpu_exp(double x) { return std::exp(x); }

template <typename T>
PREDGSPLAT_HD T gaussian_exp(T x) {
#if defined(PREDGSPLAT_DEVICE_CODE)
  if constexpr (sizeof(T) == sizeof(float)) {
    return __expf(x);
  } else {
    return exp(x);
  }
#else
  return cpu_exp(x);
#endif
}

// Normalized coordinate -> pixel coordinate (align_corners=False), in the torch backend's order of
// operations and roundings so that the window (a floor of it) agrees. On the device nvcc would contract the
// multiply and the subtraction into one fused multiply-add, rounded once: at an exact window boundary that
// can move the window by a pixel, so the device branch rounds each operation (the _rn intrinsics are never
// contracted).
PREDGSPLAT_HD float pixel_coordinate(float m, int size) {
#if defined(PREDGSPLAT_DEVICE_CODE)
  return __fsub_rn(__fmul_rn(__fadd_rn(m, 1.0f), static_cast<float>(size) / 2.0f), 0.5f);
#else
  return (m + 1.0f) * (static_cast<float>(size) / 2.0f) - 0.5f;
#endif
}

PREDGSPLAT_HD double pixel_coordinate(double m, int size) {
#if defined(PREDGSPLAT_DEVICE_CODE)
  return __dsub_rn(__dmul_rn(__dadd_rn(m, 1.0), static_cast<double>(size) / 2.0), 0.5);
#else
  return (m + 1.0) * (static_cast<double>(size) / 2.0) - 0.5;
#endif
}

// Centre, conic and window of one Gaussian. radius < 0: no window (every pixel). A Gaussian whose
// centre is not finite (NaN or infinite mean) reaches no pixel: it draws nothing and gets no gradient.
template <typename T>
PREDGSPLAT_HD Geometry<T> make_geometry(T mx, T my, T sx, T sy, T theta, int height, int width, int radius) {
  Geometry<T> out;
  out.px = pixel_coordinate(mx, width);
  out.py = pixel_coordinate(my, height);
  T s, co;
  sin_cos(theta, &s, &co);
  const T ix = T(1) / (sx * sx);
  const T iy = T(1) / (sy * sy);
  out.a = co * co * ix + s * s * iy;
  out.b = co * s * (ix - iy);
  out.c = s * s * ix + co * co * iy;
  out.x0 = out.y0 = 0;
  out.x1 = out.y1 = -1;
  if (!is_finite(out.px) || !is_finite(out.py)) return out;
  if (radius < 0) {
    out.x1 = width - 1;
    out.y1 = height - 1;
    return out;
  }
  // The window's centre stays a float until it is known to be near the image, so that a far-away
  // centre never overflows an int.
  const T cx = floor(out.px + T(0.5)), cy = floor(out.py + T(0.5)), r = static_cast<T>(radius);
  if (cx + r < T(0) || cx - r > static_cast<T>(width - 1) || cy + r < T(0) || cy - r > static_cast<T>(height - 1)) {
    return out;
  }
  const int icx = static_cast<int>(cx), icy = static_cast<int>(cy);
  out.x0 = icx - radius < 0 ? 0 : icx - radius;
  out.x1 = icx + radius > width - 1 ? width - 1 : icx + radius;
  out.y0 = icy - radius < 0 ? 0 : icy - radius;
  out.y1 = icy + radius > height - 1 ? height - 1 : icy + radius;
  return out;
}

template <typename T>
PREDGSPLAT_HD bool in_window(const Geometry<T>& geo, int x, int y) {
  return x >= geo.x0 && x <= geo.x1 && y >= geo.y0 && y <= geo.y1;
}

// exp(-0.5 d^T Sigma^-1 d) at offsets d = (dx, dy) = (x - px, y - py).
template <typename T>
PREDGSPLAT_HD T gaussian_value(const Geometry<T>& geo, T dx, T dy) {
  const T q = geo.a * dx * dx + T(2) * geo.b * dx * dy + geo.c * dy * dy;
  return gaussian_exp(T(-0.5) * q);
}

// One pixel's share of d(loss)/d(px, py, a, b, c), given its value w and d(loss)/dw.
template <typename T>
PREDGSPLAT_HD GeometryGrad<T> pixel_geometry_grad(const Geometry<T>& geo, T dx, T dy, T w, T d_w) {
  const T d_q = T(-0.5) * w * d_w;
  GeometryGrad<T> g;
  g.a = d_q * dx * dx;
  g.b = d_q * T(2) * dx * dy;
  g.c = d_q * dy * dy;
  g.px = -d_q * T(2) * (geo.a * dx + geo.b * dy);
  g.py = -d_q * T(2) * (geo.b * dx + geo.c * dy);
  return g;
}

// d(px, py, a, b, c) -> d(means) (2), d(scales) (2), d(rotation) of one Gaussian.
template <typename T>
PREDGSPLAT_HD void geometry_chain(const GeometryGrad<T>& d, T sx, T sy, T theta, int height, int width,
                                  T* d_means, T* d_scales, T* d_rotation) {
  d_means[0] = d.px * (static_cast<T>(width) / T(2));
  d_means[1] = d.py * (static_cast<T>(height) / T(2));
  T s, co;
  sin_cos(theta, &s, &co);
  const T ix = T(1) / (sx * sx), iy = T(1) / (sy * sy);
  // a = co^2 ix + s^2 iy, b = co s (ix - iy), c = s^2 ix + co^2 iy
  const T d_ix = d.a * co * co + d.b * co * s + d.c * s * s;
  const T d_iy = d.a * s * s - d.b * co * s + d.c * co * co;
  d_scales[0] = d_ix * (T(-2) * ix / sx);
  d_scales[1] = d_iy * (T(-2) * iy / sy);
  *d_rotation = d.a * T(2) * co * s * (iy - ix) + d.b * (co * co - s * s) * (ix - iy) + d.c * T(2) * co * s * (ix - iy);
}

}  // namespace predgsplat
