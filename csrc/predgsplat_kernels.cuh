// predgsplat_kernels.cuh: the CUDA kernels of pdr.render.rasterize_gaussians (docs/renderer.md,
// docs/renderer-cuda.md), their launch plan and the host's launch sequence, free of ATen. nvcc compiles
// them in predgsplat.cu; a host C++ compiler compiles the same source with the CUDA emulator
// (emu/cuda_emu.h) in predgsplat_emulated.cpp, which runs them on the CPU (docs/renderer-emulator.md).
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
#pragma once

#include <algorithm>
#include <cstdint>

#include "predgsplat_math.h"

// PREDGSPLAT_LAUNCH(kernel, grid, block, stream, args...): kernel<<<grid, block, 0, stream>>>(args...), then
// PREDGSPLAT_CHECK_LAUNCH() (the includer's error check); under the emulator, the same launch run on the CPU.
#if defined(CUDA_EMU)
#define PREDGSPLAT_LAUNCH(kernel, grid, block, stream, ...) \
  ::cuda_emu::launch(#kernel, kernel, grid, block, 0, stream, __VA_ARGS__)
#else
#ifndef PREDGSPLAT_CHECK_LAUNCH
#define PREDGSPLAT_CHECK_LAUNCH()
#endif
#define PREDGSPLAT_LAUNCH(kernel, grid, block, stream, ...) \
  do {                                                      \
    kernel<<<grid, block, 0, stream>>>(__VA_ARGS__);        \
    PREDGSPLAT_CHECK_LAUNCH();                              \
  } while (0)
#endif

namespace predgsplat {
namespace kernels {

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
          const int ch = p.c0 + k;
          if (ch >= channels) break;  // the last chunk's padding; the same for the whole block: no divergence
          const float total = warp_sum(w * g[k]);
          if (lane == 0 && total != 0.f) atomicAdd(&grad_amplitudes[gid * channels + ch], total);
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

// ------------------------------------------------------------------------------------ host side

inline int chunk_for(int channels) {
  if (channels <= 1) return 1;
  if (channels <= 2) return 2;
  if (channels <= 3) return 3;
  if (channels <= 4) return 4;
  if (channels <= 8) return 8;
  return 16;
}

struct Launch {
  int tiles_x, tiles_per_frame, chunk, chunks;
  dim3 grid;
  const char* error;  // nullptr, or why the problem does not fit one launch
};

inline Launch plan(int64_t frames, int channels, int height, int width) {
  Launch l;
  l.tiles_x = (width + kTile - 1) / kTile;
  l.tiles_per_frame = l.tiles_x * ((height + kTile - 1) / kTile);
  l.chunk = chunk_for(channels);
  l.chunks = (channels + l.chunk - 1) / l.chunk;
  l.error = nullptr;
  const int64_t blocks = frames * l.tiles_per_frame;
  if (blocks >= int64_t{0x7fffffff}) l.error = "predgsplat: too many frames x tiles for one launch";
  if (l.chunks >= 65536) l.error = "predgsplat: too many channels";
  l.grid = dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(l.chunks));
  return l;
}

// The image's size and the window: nullptr when fine, else the message.
inline const char* size_error(int64_t height, int64_t width, int64_t kernel_size) {
  if (height < 1 || width < 1 || height >= (int64_t{1} << 30) || width >= (int64_t{1} << 30)) {
    return "predgsplat: height and width must be in [1, 2^30)";
  }
  if (kernel_size < 0 || kernel_size > 2 * std::max(height, width) + 1) {
    return "predgsplat: kernel_size must be 0 (none) or at most 2 * max(height, width) + 1";
  }
  return nullptr;
}

// The inputs' shapes (any tensor type with dim() and size(i)): nullptr when fine, else the message.
template <typename Tensor>
const char* shape_error(const Tensor& means, const Tensor& scales, const Tensor& rotations, const Tensor& amplitudes) {
  if (means.dim() != 3 || means.size(2) != 2) return "predgsplat: means must be (F, N, 2)";
  const int64_t frames = means.size(0), n = means.size(1);
  if (scales.dim() != 3 || scales.size(0) != frames || scales.size(1) != n || scales.size(2) != 2) {
    return "predgsplat: scales must be (F, N, 2)";
  }
  if (rotations.dim() != 2 || rotations.size(0) != frames || rotations.size(1) != n) {
    return "predgsplat: rotations must be (F, N)";
  }
  if (amplitudes.dim() != 3 || amplitudes.size(0) != frames || amplitudes.size(1) != n) {
    return "predgsplat: amplitudes must be (F, N, C)";
  }
  if (n > int64_t{0x7fffffff} || amplitudes.size(2) > int64_t{0x7fffffff}) {
    return "predgsplat: at most 2^31 - 1 Gaussians per frame and channels";
  }
  return nullptr;
}

// grad_out of the backward: (F, C, H, W) for amplitudes (F, N, C).
template <typename Tensor>
const char* grad_out_error(const Tensor& grad_out, const Tensor& amplitudes) {
  if (grad_out.dim() != 4 || grad_out.size(0) != amplitudes.size(0) || grad_out.size(1) != amplitudes.size(2)) {
    return "predgsplat: grad_out must be (F, C, H, W) for amplitudes (F, N, C)";
  }
  return size_error(grad_out.size(2), grad_out.size(3), 0);
}

inline int radius_for(int64_t kernel_size) {
  return kernel_size == kNoWindow ? -1 : static_cast<int>(kernel_size / 2);
}

// Flattened frames, float32, contiguous: means (F, N, 2), scales (F, N, 2), rotations (F, N), amplitudes (F, N, C).
struct Problem {
  const float* means;
  const float* scales;
  const float* rotations;
  const float* amplitudes;
  int64_t frames;
  int n, channels, height, width, radius;
};

#define PREDGSPLAT_DISPATCH_CHUNK(CHUNK_VALUE, ...)                 \
  switch (CHUNK_VALUE) {                                            \
    case 1: { constexpr int CHUNK = 1; __VA_ARGS__; break; }        \
    case 2: { constexpr int CHUNK = 2; __VA_ARGS__; break; }        \
    case 3: { constexpr int CHUNK = 3; __VA_ARGS__; break; }        \
    case 4: { constexpr int CHUNK = 4; __VA_ARGS__; break; }        \
    case 8: { constexpr int CHUNK = 8; __VA_ARGS__; break; }        \
    default: { constexpr int CHUNK = 16; __VA_ARGS__; break; }      \
  }

// Renders a problem with F, N, C >= 1 into out (F, C, H, W), every element of which it writes. Returns
// nullptr, or why it cannot be launched.
inline const char* launch_forward(const Problem& p, float* out, cudaStream_t stream) {
  const Launch l = plan(p.frames, p.channels, p.height, p.width);
  if (l.error != nullptr) return l.error;
  PREDGSPLAT_DISPATCH_CHUNK(l.chunk, PREDGSPLAT_LAUNCH(forward_kernel<CHUNK>, l.grid, kThreads, stream, p.means,
                                                       p.scales, p.rotations, p.amplitudes, out, p.n, p.channels,
                                                       p.height, p.width, p.radius, l.tiles_x, l.tiles_per_frame));
  return nullptr;
}

// Gradients of a problem with F, N, C >= 1 given grad_out (F, C, H, W). grad_geometry (F, N, 5) and
// grad_amplitudes (F, N, C; nullptr: not wanted) must be zero-filled: the kernel adds to them;
// grad_means (F, N, 2), grad_scales (F, N, 2) and grad_rotations (F, N) are written entirely. Returns nullptr,
// or why it cannot be launched.
inline const char* launch_backward(const Problem& p, const float* grad_out, float* grad_geometry,
                                   float* grad_amplitudes, float* grad_means, float* grad_scales,
                                   float* grad_rotations, cudaStream_t stream) {
  const Launch l = plan(p.frames, p.channels, p.height, p.width);
  if (l.error != nullptr) return l.error;
  const int64_t total = p.frames * p.n;
  const int threads = 256;
  const int64_t chain_blocks = (total + threads - 1) / threads;
  if (chain_blocks >= int64_t{0x7fffffff}) return "predgsplat: too many Gaussians for one launch";
  PREDGSPLAT_DISPATCH_CHUNK(l.chunk, PREDGSPLAT_LAUNCH(backward_kernel<CHUNK>, l.grid, kThreads, stream, p.means,
                                                       p.scales, p.rotations, p.amplitudes, grad_out, grad_geometry,
                                                       grad_amplitudes, p.n, p.channels, p.height, p.width, p.radius,
                                                       l.tiles_x, l.tiles_per_frame));
  PREDGSPLAT_LAUNCH(geometry_chain_kernel, dim3(static_cast<unsigned>(chain_blocks)), threads, stream, p.scales,
                    p.rotations, grad_geometry, grad_means, grad_scales, grad_rotations, total, p.height, p.width);
  return nullptr;
}

}  // namespace kernels
}  // namespace predgsplat
