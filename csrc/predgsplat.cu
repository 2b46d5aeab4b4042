// predgsplat: CUDA kernels of pdr.render.rasterize_gaussians (see docs/renderer.md and
// docs/renderer-cuda.md). Forward and backward, any N, any C, any K (or none), any number
// of frames in one launch.
//
// Parallelisation: one thread block per (frame, 16x16 pixel tile, channel chunk), one thread
// per pixel. The block walks the frame's Gaussians in batches of kBatch: each thread loads one
// Gaussian, derives its pixel centre, conic and window, and appends it to a shared list when its
// window overlaps the tile. Every thread then evaluates its pixel against the listed Gaussians.
//  * forward: each pixel accumulates its CHUNK channels in registers and writes them once:
//    every output element is written exactly once, no atomics, deterministic.
//  * backward: each pixel computes its share of the gradient of every listed Gaussian, the
//    block's warps reduce those shares with shuffles, and one lane per warp adds them to a
//    float32 buffer with atomicAdd (order of additions varies: results vary in the last bits).
//    A second small kernel turns d(px, py, conic) into d(means, scales, rotations).
// The per-Gaussian math (centre, conic, window, value, gradient formulas) is predgsplat_math.h,
// shared with the CPU kernels.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <cuda_runtime.h>

#include <algorithm>

#include "predgsplat_math.h"

namespace {

using predgsplat::kNoWindow;
using Geometry = predgsplat::Geometry<float>;

constexpr int kTile = 16;                 // tile side in pixels
constexpr int kThreads = kTile * kTile;   // one thread per pixel of the tile
constexpr int kBatch = kThreads;          // Gaussians loaded per round, one per thread

__device__ __forceinline__ Geometry make_geometry(const float* __restrict__ means, const float* __restrict__ scales,
                                                  const float* __restrict__ rotations, int64_t g, int height, int width,
                                                  int radius) {
  return predgsplat::make_geometry(means[2 * g], means[2 * g + 1], scales[2 * g], scales[2 * g + 1], rotations[g],
                                   height, width, radius);
}

// The Gaussians of one batch that meet the block's tile, in shared memory.
template <int CHUNK>
struct SharedBatch {
  Geometry list[kBatch];
  int ids[kBatch];            // index of each listed Gaussian within its frame
  float amps[kBatch * CHUNK]; // its amplitudes for the block's channel chunk
  int warp_offsets[kThreads / 32 + 1];
};

// Which frame, tile, pixel and channel chunk this thread works on.
struct BlockPixel {
  int64_t frame;
  int tx0, ty0, x, y, c0;
  float fx, fy;
};

template <int CHUNK>
__device__ __forceinline__ BlockPixel locate(int tiles_x, int tiles_per_frame) {
  BlockPixel p;
  p.frame = blockIdx.x / tiles_per_frame;
  const int tile = blockIdx.x % tiles_per_frame;
  p.tx0 = (tile % tiles_x) * kTile;
  p.ty0 = (tile / tiles_x) * kTile;
  p.x = p.tx0 + threadIdx.x % kTile;
  p.y = p.ty0 + threadIdx.x / kTile;
  p.c0 = blockIdx.y * CHUNK;
  p.fx = static_cast<float>(p.x);
  p.fy = static_cast<float>(p.y);
  return p;
}

// Loads Gaussians [start, start + kBatch) of the pixel's frame and keeps those whose window meets
// the tile (clipped to the image). Returns how many were kept: batch.list[0..count).
template <int CHUNK>
__device__ int gather_batch(const float* __restrict__ means, const float* __restrict__ scales,
                            const float* __restrict__ rotations, const float* __restrict__ amplitudes,
                            const BlockPixel& p, int n, int channels, int start, int height, int width, int radius,
                            SharedBatch<CHUNK>& batch) {
  const int t = threadIdx.x;
  const int64_t frame = p.frame;
  const int c0 = p.c0, tx0 = p.tx0, ty0 = p.ty0;
  const int i = start + t;
  Geometry geo;
  bool keep = false;
  if (i < n) {
    geo = make_geometry(means, scales, rotations, frame * n + i, height, width, radius);
    const int lx = max(geo.x0, max(tx0, 0)), hx = min(geo.x1, min(tx0 + kTile - 1, width - 1));
    const int ly = max(geo.y0, max(ty0, 0)), hy = min(geo.y1, min(ty0 + kTile - 1, height - 1));
    keep = lx <= hx && ly <= hy;
  }
  // Ordered compaction (ballot + prefix over warps), not an atomic counter: the list, and so the
  // order in which each pixel adds its Gaussians up, is the same in every run.
  const unsigned ballot = __ballot_sync(0xffffffffu, keep);
  const int warp = t >> 5, lane = t & 31;
  if (lane == 0) batch.warp_offsets[warp + 1] = __popc(ballot);
  __syncthreads();
  if (t == 0) {
    batch.warp_offsets[0] = 0;
    for (int w = 1; w <= kThreads / 32; ++w) batch.warp_offsets[w] += batch.warp_offsets[w - 1];
  }
  __syncthreads();
  if (keep) {
    const int slot = batch.warp_offsets[warp] + __popc(ballot & ((1u << lane) - 1u));
    batch.list[slot] = geo;
    batch.ids[slot] = i;
    const int64_t g = frame * n + i;
#pragma unroll
    for (int k = 0; k < CHUNK; ++k) {
      const int ch = c0 + k;
      batch.amps[slot * CHUNK + k] = ch < channels ? amplitudes[g * channels + ch] : 0.0f;
    }
  }
  __syncthreads();
  return batch.warp_offsets[kThreads / 32];
}

__device__ __forceinline__ bool in_window(const Geometry& geo, int x, int y) {
  return predgsplat::in_window(geo, x, y);
}

// exp(-0.5 d^T Sigma^-1 d) at (fx, fy); also returns the offsets d = (dx, dy).
__device__ __forceinline__ float gaussian_weight(const Geometry& geo, float fx, float fy, float& dx, float& dy) {
  dx = fx - geo.px;
  dy = fy - geo.py;
  return predgsplat::gaussian_value(geo, dx, dy);
}

template <int CHUNK>
__global__ void __launch_bounds__(kThreads) forward_kernel(
    const float* __restrict__ means, const float* __restrict__ scales, const float* __restrict__ rotations,
    const float* __restrict__ amplitudes, float* __restrict__ out, int n, int channels, int height, int width,
    int radius, int tiles_x, int tiles_per_frame) {
  __shared__ SharedBatch<CHUNK> batch;
  const BlockPixel p = locate<CHUNK>(tiles_x, tiles_per_frame);

  float acc[CHUNK];
#pragma unroll
  for (int k = 0; k < CHUNK; ++k) acc[k] = 0.0f;

  for (int start = 0; start < n; start += kBatch) {
    const int kept = gather_batch<CHUNK>(means, scales, rotations, amplitudes, p, n, channels, start, height, width,
                                         radius, batch);
    for (int j = 0; j < kept; ++j) {
      const Geometry& geo = batch.list[j];
      if (!in_window(geo, p.x, p.y)) continue;
      float dx, dy;
      const float w = gaussian_weight(geo, p.fx, p.fy, dx, dy);
#pragma unroll
      for (int k = 0; k < CHUNK; ++k) acc[k] += w * batch.amps[j * CHUNK + k];
    }
    __syncthreads();  // the list is rebuilt by the next round
  }
  if (p.x < width && p.y < height) {
#pragma unroll
    for (int k = 0; k < CHUNK; ++k) {
      const int ch = p.c0 + k;
      if (ch < channels) out[((p.frame * channels + ch) * height + p.y) * width + p.x] = acc[k];
    }
  }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// grad_geometry: (F, N, 5) for d/d(px, py, a, b, c); grad_amplitudes: (F, N, C).
template <int CHUNK>
__global__ void __launch_bounds__(kThreads) backward_kernel(
    const float* __restrict__ means, const float* __restrict__ scales, const float* __restrict__ rotations,
    const float* __restrict__ amplitudes, const float* __restrict__ grad_out, float* __restrict__ grad_geometry,
    float* __restrict__ grad_amplitudes, int n, int channels, int height, int width, int radius, int tiles_x,
    int tiles_per_frame) {
  __shared__ SharedBatch<CHUNK> batch;
  const BlockPixel p = locate<CHUNK>(tiles_x, tiles_per_frame);
  const bool on_image = p.x < width && p.y < height;
  const int lane = threadIdx.x & 31;

  float g[CHUNK];
#pragma unroll
  for (int k = 0; k < CHUNK; ++k) {
    const int ch = p.c0 + k;
    g[k] = (on_image && ch < channels) ? grad_out[((p.frame * channels + ch) * height + p.y) * width + p.x] : 0.0f;
  }

  for (int start = 0; start < n; start += kBatch) {
    const int kept = gather_batch<CHUNK>(means, scales, rotations, amplitudes, p, n, channels, start, height, width,
                                         radius, batch);
    for (int j = 0; j < kept; ++j) {
      const Geometry& geo = batch.list[j];
      const bool inside = on_image && in_window(geo, p.x, p.y);
      if (!__any_sync(0xffffffffu, inside)) continue;  // warp-uniform: the whole warp is outside
      float d_px = 0.f, d_py = 0.f, d_a = 0.f, d_b = 0.f, d_c = 0.f, w = 0.f;
      if (inside) {
        float dx, dy;
        w = gaussian_weight(geo, p.fx, p.fy, dx, dy);
        float d_w = 0.f;
#pragma unroll
        for (int k = 0; k < CHUNK; ++k) d_w += g[k] * batch.amps[j * CHUNK + k];
        const predgsplat::GeometryGrad<float> share = predgsplat::pixel_geometry_grad(geo, dx, dy, w, d_w);
        d_px = share.px;
        d_py = share.py;
        d_a = share.a;
        d_b = share.b;
        d_c = share.c;
      }
      const int64_t gid = p.frame * n + batch.ids[j];
      float partial[5] = {d_px, d_py, d_a, d_b, d_c};
#pragma unroll
      for (int v = 0; v < 5; ++v) {
        const float total = warp_sum(partial[v]);
        if (lane == 0 && total != 0.f) atomicAdd(&grad_geometry[gid * 5 + v], total);
      }
      if (grad_amplitudes != nullptr) {
#pragma unroll
        for (int k = 0; k < CHUNK; ++k) {
          const float total = warp_sum(w * g[k]);
          const int ch = p.c0 + k;
          if (lane == 0 && ch < channels && total != 0.f) atomicAdd(&grad_amplitudes[gid * channels + ch], total);
        }
      }
    }
    __syncthreads();
  }
}

// d(px, py, a, b, c) -> d(means), d(scales), d(rotations), one thread per Gaussian.
__global__ void geometry_chain_kernel(const float* __restrict__ scales, const float* __restrict__ rotations,
                                      const float* __restrict__ grad_geometry, float* __restrict__ grad_means,
                                      float* __restrict__ grad_scales, float* __restrict__ grad_rotations, int64_t total,
                                      int height, int width) {
  const int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (g >= total) return;
  const float* d = grad_geometry + g * 5;
  const predgsplat::GeometryGrad<float> grad{d[0], d[1], d[2], d[3], d[4]};
  predgsplat::geometry_chain(grad, scales[2 * g], scales[2 * g + 1], rotations[g], height, width, grad_means + 2 * g,
                             grad_scales + 2 * g, grad_rotations + g);
}

// For tools/bench_render.py: every thread evaluates `iters` dependent-free exps in registers, the
// same instruction mix as one Gaussian-pixel evaluation (a quadratic form and __expf).
__global__ void exp_throughput_kernel(float* out, int iters) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  float x = 1e-3f * static_cast<float>(threadIdx.x), y = 0.5f, acc = 0.f;
  for (int k = 0; k < iters; ++k) {
    const float q = 0.3f * x * x + 0.2f * x * y + 0.1f * y * y;
    acc += __expf(-0.5f * q);
    x += 1e-4f;
  }
  out[i] = acc;
}

int chunk_for(int channels) {
  if (channels <= 1) return 1;
  if (channels <= 2) return 2;
  if (channels <= 3) return 3;
  if (channels <= 4) return 4;
  if (channels <= 8) return 8;
  return 16;
}

void check_inputs(const at::Tensor& means, const at::Tensor& scales, const at::Tensor& rotations,
                  const at::Tensor& amplitudes) {
  for (const auto* t : {&means, &scales, &rotations, &amplitudes}) {
    TORCH_CHECK(t->is_cuda(), "predgsplat: inputs must be CUDA tensors");
    TORCH_CHECK(t->scalar_type() == at::kFloat, "predgsplat: inputs must be float32 (the wrapper converts)");
    TORCH_CHECK(t->is_contiguous(), "predgsplat: inputs must be contiguous (the wrapper makes them so)");
  }
  TORCH_CHECK(means.dim() == 3 && means.size(2) == 2, "predgsplat: means must be (F, N, 2)");
  TORCH_CHECK(scales.sizes() == means.sizes(), "predgsplat: scales must be (F, N, 2)");
  TORCH_CHECK(rotations.dim() == 2 && rotations.size(0) == means.size(0) && rotations.size(1) == means.size(1),
              "predgsplat: rotations must be (F, N)");
  TORCH_CHECK(amplitudes.dim() == 3 && amplitudes.size(0) == means.size(0) && amplitudes.size(1) == means.size(1),
              "predgsplat: amplitudes must be (F, N, C)");
}

struct Launch {
  int tiles_x, tiles_per_frame, chunk, chunks;
  dim3 grid;
};

Launch plan(int64_t frames, int channels, int height, int width) {
  Launch l;
  l.tiles_x = (width + kTile - 1) / kTile;
  l.tiles_per_frame = l.tiles_x * ((height + kTile - 1) / kTile);
  l.chunk = chunk_for(channels);
  l.chunks = (channels + l.chunk - 1) / l.chunk;
  const int64_t blocks = frames * l.tiles_per_frame;
  TORCH_CHECK(blocks < int64_t{0x7fffffff}, "predgsplat: too many frames x tiles for one launch");
  TORCH_CHECK(l.chunks < 65536, "predgsplat: too many channels");
  l.grid = dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(l.chunks));
  return l;
}

#define PREDGSPLAT_DISPATCH_CHUNK(CHUNK_VALUE, ...) \
  switch (CHUNK_VALUE) {                            \
    case 1: { constexpr int CHUNK = 1; __VA_ARGS__; break; }  \
    case 2: { constexpr int CHUNK = 2; __VA_ARGS__; break; }  \
    case 3: { constexpr int CHUNK = 3; __VA_ARGS__; break; }  \
    case 4: { constexpr int CHUNK = 4; __VA_ARGS__; break; }  \
    case 8: { constexpr int CHUNK = 8; __VA_ARGS__; break; }  \
    default: { constexpr int CHUNK = 16; __VA_ARGS__; break; } \
  }

}  // namespace

at::Tensor predgsplat_forward(const at::Tensor& means, const at::Tensor& scales, const at::Tensor& rotations,
                              const at::Tensor& amplitudes, int64_t height, int64_t width, int64_t kernel_size) {
  check_inputs(means, scales, rotations, amplitudes);
  const c10::cuda::CUDAGuard guard(means.device());
  const int64_t frames = means.size(0);
  const int n = static_cast<int>(means.size(1)), channels = static_cast<int>(amplitudes.size(2));
  auto out = at::empty({frames, channels, height, width}, amplitudes.options());
  if (out.numel() == 0) return out;
  if (n == 0) return out.zero_();
  TORCH_CHECK(kernel_size >= 0 && kernel_size <= 2 * std::max<int64_t>(height, width) + 1,
              "predgsplat: kernel_size must be 0 (none) or at most 2 * max(height, width) + 1");
  const int radius = kernel_size == kNoWindow ? -1 : static_cast<int>(kernel_size / 2);
  const Launch l = plan(frames, channels, static_cast<int>(height), static_cast<int>(width));
  auto stream = c10::cuda::getCurrentCUDAStream();
  PREDGSPLAT_DISPATCH_CHUNK(l.chunk, forward_kernel<CHUNK><<<l.grid, kThreads, 0, stream>>>(
      means.data_ptr<float>(), scales.data_ptr<float>(), rotations.data_ptr<float>(), amplitudes.data_ptr<float>(),
      out.data_ptr<float>(), n, channels, static_cast<int>(height), static_cast<int>(width), radius, l.tiles_x,
      l.tiles_per_frame));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::vector<at::Tensor> predgsplat_backward(const at::Tensor& means, const at::Tensor& scales,
                                            const at::Tensor& rotations, const at::Tensor& amplitudes,
                                            const at::Tensor& grad_out, int64_t kernel_size, bool need_amplitudes) {
  check_inputs(means, scales, rotations, amplitudes);
  TORCH_CHECK(grad_out.is_cuda() && grad_out.scalar_type() == at::kFloat && grad_out.is_contiguous() &&
                  grad_out.dim() == 4,
              "predgsplat: grad_out must be a contiguous float32 CUDA tensor (F, C, H, W)");
  const c10::cuda::CUDAGuard guard(means.device());
  const int64_t frames = means.size(0);
  const int n = static_cast<int>(means.size(1)), channels = static_cast<int>(amplitudes.size(2));
  const int height = static_cast<int>(grad_out.size(2)), width = static_cast<int>(grad_out.size(3));
  auto grad_geometry = at::zeros({frames, n, 5}, means.options());
  auto grad_amplitudes = need_amplitudes ? at::zeros_like(amplitudes) : at::Tensor();
  auto grad_means = at::empty_like(means), grad_scales = at::empty_like(scales);
  auto grad_rotations = at::empty_like(rotations);
  const int64_t total = frames * static_cast<int64_t>(n);
  if (total == 0 || grad_out.numel() == 0) {
    return {grad_means.zero_(), grad_scales.zero_(), grad_rotations.zero_(),
            need_amplitudes ? grad_amplitudes : at::Tensor()};
  }
  TORCH_CHECK(kernel_size >= 0 && kernel_size <= 2 * std::max<int64_t>(height, width) + 1,
              "predgsplat: kernel_size must be 0 (none) or at most 2 * max(height, width) + 1");
  const int radius = kernel_size == kNoWindow ? -1 : static_cast<int>(kernel_size / 2);
  const Launch l = plan(frames, channels, height, width);
  auto stream = c10::cuda::getCurrentCUDAStream();
  float* grad_amp_ptr = need_amplitudes ? grad_amplitudes.data_ptr<float>() : nullptr;
  PREDGSPLAT_DISPATCH_CHUNK(l.chunk, backward_kernel<CHUNK><<<l.grid, kThreads, 0, stream>>>(
      means.data_ptr<float>(), scales.data_ptr<float>(), rotations.data_ptr<float>(), amplitudes.data_ptr<float>(),
      grad_out.data_ptr<float>(), grad_geometry.data_ptr<float>(), grad_amp_ptr, n, channels, height, width, radius,
      l.tiles_x, l.tiles_per_frame));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const int threads = 256;
  const unsigned blocks = static_cast<unsigned>((total + threads - 1) / threads);
  geometry_chain_kernel<<<blocks, threads, 0, stream>>>(
      scales.data_ptr<float>(), rotations.data_ptr<float>(), grad_geometry.data_ptr<float>(),
      grad_means.data_ptr<float>(), grad_scales.data_ptr<float>(), grad_rotations.data_ptr<float>(), total, height,
      width);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {grad_means, grad_scales, grad_rotations, grad_amplitudes};
}

// Gaussian-pixel evaluations per second on this GPU (the compute side of the floor in bench_render).
double predgsplat_exp_throughput(int64_t blocks, int64_t iters) {
  auto out = at::empty({blocks * 256}, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA));
  auto stream = c10::cuda::getCurrentCUDAStream();
  cudaEvent_t start, stop;
  C10_CUDA_CHECK(cudaEventCreate(&start));
  C10_CUDA_CHECK(cudaEventCreate(&stop));
  exp_throughput_kernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(out.data_ptr<float>(), 16);  // warm-up
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  C10_CUDA_CHECK(cudaEventRecord(start, stream));
  exp_throughput_kernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(out.data_ptr<float>(),
                                                                          static_cast<int>(iters));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  C10_CUDA_CHECK(cudaEventRecord(stop, stream));
  C10_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0.f;
  C10_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  C10_CUDA_CHECK(cudaEventDestroy(start));
  C10_CUDA_CHECK(cudaEventDestroy(stop));
  return static_cast<double>(blocks) * 256.0 * static_cast<double>(iters) / (ms * 1e-3);
}
