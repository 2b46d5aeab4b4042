// predgsplat_cpu: CPU kernels of pdr.render.rasterize_gaussians (docs/renderer.md, docs/renderer-cpu.md),
// float32 and float64, any N, C and K (or none), registered as the operators
// torch.ops.pdr_predgsplat_cpu.forward and .backward. The per-Gaussian math is predgsplat_math.h, shared
// with the CUDA kernels.
//
//  * forward: work items are (frame, band of rows). An item walks its frame's Gaussians in order and
//    adds the rows of each window that fall in its band: every output value belongs to one item and
//    is summed in Gaussian order, so the image is the same for any number of threads.
//  * backward: work items are Gaussians. Each one gathers its gradient from the pixels of its window
//    and writes only its own entries: no atomics, no races, the same result for any number of threads.
// Inner loops run along a row of the window (contiguous pixels) and vectorise; on x86-64 Linux the hot
// loops are also compiled for AVX2 and picked at load time (target_clones).
//
// Only torch's stable C++ API is used (torch/csrc/stable, torch >= 2.10): its headers are a small part
// of ATen's and pybind11's, which made up most of the compile time, and the library it gives works
// with later versions of torch too.
#define TORCH_TARGET_VERSION (((0ULL + 2) << 56) | ((0ULL + 10) << 48))
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "predgsplat_math.h"

namespace {

using predgsplat::Geometry;
using predgsplat::GeometryGrad;

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define PREDGSPLAT_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PREDGSPLAT_CLONES
#endif
#define PREDGSPLAT_INLINE inline __attribute__((always_inline))

template <typename T>
struct Problem {
  const T* means;       // (F, N, 2)
  const T* scales;      // (F, N, 2)
  const T* rotations;   // (F, N)
  const T* amplitudes;  // (F, N, C)
  int64_t n;
  int channels, height, width, radius;

  Geometry<T> geometry(int64_t g) const {  // g: index over all frames' Gaussians
    return predgsplat::make_geometry(means[2 * g], means[2 * g + 1], scales[2 * g], scales[2 * g + 1], rotations[g],
                                     height, width, radius);
  }
  int64_t plane() const { return static_cast<int64_t>(height) * width; }
};

// Adds the frame's Gaussians to rows [row0, row1] of its (C, H, W) image. weights: scratch, >= width.
template <typename T>
PREDGSPLAT_INLINE void forward_band(const Problem<T>& p, int64_t frame, int row0, int row1, T* image, T* weights) {
  for (int64_t g = frame * p.n; g < (frame + 1) * p.n; ++g) {
    const Geometry<T> geo = p.geometry(g);
    const int y0 = std::max(geo.y0, row0), y1 = std::min(geo.y1, row1);
    const int x0 = geo.x0, len = geo.x1 - geo.x0 + 1;
    if (y0 > y1 || len <= 0) continue;
    const T* amp = p.amplitudes + g * p.channels;
    for (int y = y0; y <= y1; ++y) {
      const T dy = static_cast<T>(y) - geo.py;
#pragma omp simd
      for (int i = 0; i < len; ++i) weights[i] = predgsplat::gaussian_value(geo, static_cast<T>(x0 + i) - geo.px, dy);
      T* row = image + static_cast<int64_t>(y) * p.width + x0;
      for (int ch = 0; ch < p.channels; ++ch, row += p.plane()) {
        const T a = amp[ch];
#pragma omp simd
        for (int i = 0; i < len; ++i) row[i] += a * weights[i];
      }
    }
  }
}

// Items [begin, end) of frames x bands; out is zero-filled (F, C, H, W).
template <typename T>
PREDGSPLAT_INLINE void forward_items(const Problem<T>& p, int bands, T* out, int64_t begin, int64_t end) {
  std::vector<T> weights(p.width);
  const int rows_per_band = (p.height + bands - 1) / bands;
  for (int64_t item = begin; item < end; ++item) {
    const int64_t frame = item / bands;
    const int row0 = static_cast<int>(item % bands) * rows_per_band;
    const int row1 = std::min(p.height, row0 + rows_per_band) - 1;
    forward_band(p, frame, row0, row1, out + frame * p.channels * p.plane(), weights.data());
  }
}

template <typename T>
struct Grads {
  const T* grad_out;  // (F, C, H, W)
  T* means;           // (F, N, 2)
  T* scales;          // (F, N, 2)
  T* rotations;       // (F, N)
  T* amplitudes;      // (F, N, C) or nullptr
};

// Float sums of one row are added up in double: windows have thousands of pixels.
template <typename T>
PREDGSPLAT_INLINE void backward_gaussian(const Problem<T>& p, const Grads<T>& out, int64_t g, T* dx, T* w, T* d_w,
                                         double* d_amp) {
  const Geometry<T> geo = p.geometry(g);
  const int x0 = geo.x0, len = geo.x1 - geo.x0 + 1;
  const int64_t frame = g / p.n;
  const T* amp = p.amplitudes + g * p.channels;
  const T* grad_frame = out.grad_out + frame * p.channels * p.plane();
  double s_px = 0, s_py = 0, s_a = 0, s_b = 0, s_c = 0;
  std::fill(d_amp, d_amp + p.channels, 0.0);
  for (int y = geo.y0; len > 0 && y <= geo.y1; ++y) {
    const T dy = static_cast<T>(y) - geo.py;
#pragma omp simd
    for (int i = 0; i < len; ++i) {
      dx[i] = static_cast<T>(x0 + i) - geo.px;
      w[i] = predgsplat::gaussian_value(geo, dx[i], dy);
      d_w[i] = T(0);
    }
    const T* grad_row = grad_frame + static_cast<int64_t>(y) * p.width + x0;
    for (int ch = 0; ch < p.channels; ++ch, grad_row += p.plane()) {
      const T a = amp[ch];
      T acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int i = 0; i < len; ++i) {
        d_w[i] += grad_row[i] * a;
        acc += w[i] * grad_row[i];
      }
      d_amp[ch] += acc;
    }
    T r_px = 0, r_py = 0, r_a = 0, r_b = 0, r_c = 0;
#pragma omp simd reduction(+ : r_px, r_py, r_a, r_b, r_c)
    for (int i = 0; i < len; ++i) {
      const GeometryGrad<T> share = predgsplat::pixel_geometry_grad(geo, dx[i], dy, w[i], d_w[i]);
      r_px += share.px;
      r_py += share.py;
      r_a += share.a;
      r_b += share.b;
      r_c += share.c;
    }
    s_px += r_px;
    s_py += r_py;
    s_a += r_a;
    s_b += r_b;
    s_c += r_c;
  }
  const GeometryGrad<T> total{static_cast<T>(s_px), static_cast<T>(s_py), static_cast<T>(s_a), static_cast<T>(s_b),
                              static_cast<T>(s_c)};
  predgsplat::geometry_chain(total, p.scales[2 * g], p.scales[2 * g + 1], p.rotations[g], p.height, p.width,
                             out.means + 2 * g, out.scales + 2 * g, out.rotations + g);
  if (out.amplitudes != nullptr) {
    for (int ch = 0; ch < p.channels; ++ch) out.amplitudes[g * p.channels + ch] = static_cast<T>(d_amp[ch]);
  }
}

template <typename T>
PREDGSPLAT_INLINE void backward_items(const Problem<T>& p, const Grads<T>& out, int64_t begin, int64_t end) {
  std::vector<T> scratch(3 * static_cast<size_t>(p.width));
  std::vector<double> d_amp(p.channels);
  for (int64_t g = begin; g < end; ++g) {
    backward_gaussian(p, out, g, scratch.data(), scratch.data() + p.width, scratch.data() + 2 * p.width,
                      d_amp.data());
  }
}

// The entry points that carry the per-ISA clones; the templates above are inlined into them.
PREDGSPLAT_CLONES void forward_items_f32(const Problem<float>& p, int bands, float* out, int64_t b, int64_t e) {
  forward_items(p, bands, out, b, e);
}
PREDGSPLAT_CLONES void forward_items_f64(const Problem<double>& p, int bands, double* out, int64_t b, int64_t e) {
  forward_items(p, bands, out, b, e);
}
PREDGSPLAT_CLONES void backward_items_f32(const Problem<float>& p, const Grads<float>& out, int64_t b, int64_t e) {
  backward_items(p, out, b, e);
}
PREDGSPLAT_CLONES void backward_items_f64(const Problem<double>& p, const Grads<double>& out, int64_t b, int64_t e) {
  backward_items(p, out, b, e);
}
void run_forward(const Problem<float>& p, int bands, float* out, int64_t b, int64_t e) {
  forward_items_f32(p, bands, out, b, e);
}
void run_forward(const Problem<double>& p, int bands, double* out, int64_t b, int64_t e) {
  forward_items_f64(p, bands, out, b, e);
}
void run_backward(const Problem<float>& p, const Grads<float>& out, int64_t b, int64_t e) {
  backward_items_f32(p, out, b, e);
}
void run_backward(const Problem<double>& p, const Grads<double>& out, int64_t b, int64_t e) {
  backward_items_f64(p, out, b, e);
}

using torch::headeronly::ScalarType;
using torch::stable::Tensor;

void check_inputs(const Tensor& means, const Tensor& scales, const Tensor& rotations, const Tensor& amplitudes) {
  for (const Tensor* t : {&means, &scales, &rotations, &amplitudes}) {
    STD_TORCH_CHECK(t->is_cpu(), "predgsplat_cpu: inputs must be CPU tensors");
    STD_TORCH_CHECK(t->scalar_type() == means.scalar_type(), "predgsplat_cpu: inputs must share one dtype");
    STD_TORCH_CHECK(t->is_contiguous(), "predgsplat_cpu: inputs must be contiguous (the wrapper makes them so)");
  }
  STD_TORCH_CHECK(means.scalar_type() == ScalarType::Float || means.scalar_type() == ScalarType::Double,
                  "predgsplat_cpu: inputs must be float32 or float64 (the wrapper converts)");
  const int64_t frames = means.size(0), n = means.dim() == 3 ? means.size(1) : -1;
  STD_TORCH_CHECK(means.dim() == 3 && means.size(2) == 2, "predgsplat_cpu: means must be (F, N, 2)");
  STD_TORCH_CHECK(scales.dim() == 3 && scales.size(0) == frames && scales.size(1) == n && scales.size(2) == 2,
                  "predgsplat_cpu: scales must be (F, N, 2)");
  STD_TORCH_CHECK(rotations.dim() == 2 && rotations.size(0) == frames && rotations.size(1) == n,
                  "predgsplat_cpu: rotations must be (F, N)");
  STD_TORCH_CHECK(amplitudes.dim() == 3 && amplitudes.size(0) == frames && amplitudes.size(1) == n,
                  "predgsplat_cpu: amplitudes must be (F, N, C)");
}

template <typename T>
Problem<T> make_problem(const Tensor& means, const Tensor& scales, const Tensor& rotations, const Tensor& amplitudes,
                        int64_t height, int64_t width, int64_t kernel_size) {
  STD_TORCH_CHECK(height > 0 && width > 0 && height < (1 << 30) && width < (1 << 30),
                  "predgsplat_cpu: height and width must be in [1, 2^30)");
  STD_TORCH_CHECK(kernel_size >= 0 && kernel_size <= 2 * std::max(height, width) + 1,
                  "predgsplat_cpu: kernel_size must be 0 (none) or at most 2 * max(height, width) + 1");
  return Problem<T>{means.const_data_ptr<T>(), scales.const_data_ptr<T>(), rotations.const_data_ptr<T>(),
                    amplitudes.const_data_ptr<T>(), means.size(1), static_cast<int>(amplitudes.size(2)),
                    static_cast<int>(height), static_cast<int>(width),
                    kernel_size == predgsplat::kNoWindow ? -1 : static_cast<int>(kernel_size / 2)};
}

// Calls f(T{}) with T the inputs' floating type (check_inputs allows float and double only).
template <typename F>
void dispatch_floating(ScalarType type, const F& f) {
  if (type == ScalarType::Float) {
    f(float{});
  } else {
    f(double{});
  }
}

// (F, N, ...) Gaussians -> (F, C, height, width) image; kernel_size 0 = every pixel.
Tensor forward(Tensor means, Tensor scales, Tensor rotations, Tensor amplitudes, int64_t height, int64_t width,
               int64_t kernel_size) {
  check_inputs(means, scales, rotations, amplitudes);
  const int64_t frames = means.size(0);
  Tensor out = torch::stable::new_zeros(amplitudes, {frames, amplitudes.size(2), height, width});
  if (out.numel() == 0 || means.size(1) == 0) return out;
  // Bands of rows split a frame when there are fewer frames than threads (2 items per thread).
  const int64_t wanted = (2 * static_cast<int64_t>(torch::stable::get_num_threads()) + frames - 1) / frames;
  const int bands = static_cast<int>(std::clamp<int64_t>(wanted, 1, height));
  dispatch_floating(means.scalar_type(), [&](auto zero) {
    using T = decltype(zero);
    const auto p = make_problem<T>(means, scales, rotations, amplitudes, height, width, kernel_size);
    T* data = out.mutable_data_ptr<T>();
    torch::stable::parallel_for(0, frames * bands, 1, [&](int64_t b, int64_t e) { run_forward(p, bands, data, b, e); });
  });
  return out;
}

// Gradients for means, scales, rotations and amplitudes (the last one empty when need_amplitudes is false).
std::tuple<Tensor, Tensor, Tensor, Tensor> backward(Tensor means, Tensor scales, Tensor rotations, Tensor amplitudes,
                                                    Tensor grad_out, int64_t kernel_size, bool need_amplitudes) {
  check_inputs(means, scales, rotations, amplitudes);
  STD_TORCH_CHECK(grad_out.is_cpu() && grad_out.scalar_type() == means.scalar_type() && grad_out.is_contiguous() &&
                      grad_out.dim() == 4 && grad_out.size(0) == means.size(0) &&
                      grad_out.size(1) == amplitudes.size(2),
                  "predgsplat_cpu: grad_out must be a contiguous (F, C, H, W) CPU tensor of the inputs' dtype");
  const int64_t frames = means.size(0), n = means.size(1);
  Tensor d_means = torch::stable::new_zeros(means, {frames, n, 2});
  Tensor d_scales = torch::stable::new_zeros(means, {frames, n, 2});
  Tensor d_rotations = torch::stable::new_zeros(means, {frames, n});
  Tensor d_amplitudes = torch::stable::new_zeros(means, {need_amplitudes ? frames : 0, n, amplitudes.size(2)});
  if (frames * n == 0 || grad_out.numel() == 0) return {d_means, d_scales, d_rotations, d_amplitudes};
  dispatch_floating(means.scalar_type(), [&](auto zero) {
    using T = decltype(zero);
    const auto p = make_problem<T>(means, scales, rotations, amplitudes, grad_out.size(2), grad_out.size(3),
                                   kernel_size);
    const Grads<T> out{grad_out.const_data_ptr<T>(), d_means.mutable_data_ptr<T>(), d_scales.mutable_data_ptr<T>(),
                       d_rotations.mutable_data_ptr<T>(),
                       need_amplitudes ? d_amplitudes.mutable_data_ptr<T>() : nullptr};
    torch::stable::parallel_for(0, frames * n, 1, [&](int64_t b, int64_t e) { run_backward(p, out, b, e); });
  });
  return {d_means, d_scales, d_rotations, d_amplitudes};
}

}  // namespace

STABLE_TORCH_LIBRARY(pdr_predgsplat_cpu, m) {
  m.def("forward(Tensor means, Tensor scales, Tensor rotations, Tensor amplitudes, int height, int width, "
        "int kernel_size) -> Tensor");
  m.def("backward(Tensor means, Tensor scales, Tensor rotations, Tensor amplitudes, Tensor grad_out, "
        "int kernel_size, bool need_amplitudes) -> (Tensor, Tensor, Tensor, Tensor)");
}

STABLE_TORCH_LIBRARY_IMPL(pdr_predgsplat_cpu, CPU, m) {
  m.impl("forward", TORCH_BOX(&forward));
  m.impl("backward", TORCH_BOX(&backward));
}

// Built ahead of time (setup.py), the library is the Python module pdr._C_cpu: importing it registers the
// operators, and its sources_digest says which sources it was built from. Built on first use, it is loaded
// with torch.ops.load_library and needs no Python.
#ifdef PREDGSPLAT_PYTHON_MODULE
#include <Python.h>

extern "C" PyObject* PyInit__C_cpu() {
  static PyModuleDef definition = {PyModuleDef_HEAD_INIT, "_C_cpu", "predgsplat CPU rasterizer operators", -1,
                                   nullptr};
  PyObject* module = PyModule_Create(&definition);
  if (module != nullptr && PyModule_AddStringConstant(module, "sources_digest", PREDGSPLAT_SOURCES_DIGEST) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
#endif
