// predgsplat_kernels.cuh: the CUDA kernels of pdr.render.rasterize_gaussians (docs/renderer.md,
// docs/renderer-cuda.md), their launch plan and the host's launch sequence, free of ATen. nvcc compiles
// them in predgsplat.cu; a host C++ compiler compiles the same source with the CUDA emulator
// (emu/cuda_emu.h) in predgsplat_emulated.cpp, which runs them on the CPU (docs/renderer-emulator.md).
//
// Parallelisation (why: docs/renderer-cuda.md; counted costs: docs/renderer-tuning.md):
//  * preprocess: one thread per frame and Gaussian derives its pixel centre, conic and window once and
//    writes them to a workspace (records), which every block of the two kernels below reads.
//  * both kernels: one thread block per (frame, 16x16 pixel tile, channel chunk). The block walks the
//    frame's records in batches of kBatch: each thread loads one window and appends the Gaussian to a
//    shared list when the window meets the tile (an ordered compaction: ballots and a prefix over warps).
//  * forward: each thread (one pixel) evaluates the listed Gaussians and accumulates its CHUNK channels in
//    registers, then writes them once: every output element is written exactly once, no atomics,
//    deterministic.
//  * backward: each listed Gaussian is taken by one warp, whose lanes walk the pixels where its window meets
//    the tile (grad_out of the tile staged in shared memory) and accumulate its 5 + CHUNK gradient values in
//    registers; one butterfly over the warp sums them all, and as many lanes add the sums to float32 buffers
//    with atomicAdd, one per value (order of additions varies: results vary in the last bits). A second
//    small kernel turns d(px, py, conic) into d(means, scales, rotations).
// The per-Gaussian math (centre, conic, window, value, gradient formulas) is predgsplat_math.h, shared with
// the CPU kernels. Global memory is read through __ldg and written through __stwb (plain loads and stores on
// a GPU), so that the emulator counts the traffic.
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
constexpr int kWarps = kThreads / 32;
constexpr int kBatch = kThreads;          // records loaded per round, one per thread
constexpr int kPerGaussianThreads = 256;  // block size of the kernels with one thread per Gaussian

// What the preprocessing writes per frame and Gaussian (index g = frame * n + i): its window, the pixels it
// reaches ({x0, x1, y0, y1}, inclusive, clipped to the image; x0 > x1 when none), which is also its tile
// range (it meets the tile [tx0, tx0 + 15] x [ty0, ty0 + 15] when x0 <= tx0 + 15, x1 >= tx0, y0 <= ty0 + 15,
// y1 >= ty0), and its centre and conic (px, py, a, b, c). Separate arrays: a block reads every window of its
// frame but the conics of the Gaussians it lists only.
struct Records {
  const int4* windows;  // (F * N)
  const float* conics;  // (F * N, 5)
};

__device__ __forceinline__ int4 window_of(const Geometry& geo) {
  int4 w;
  w.x = geo.x0;
  w.y = geo.x1;
  w.z = geo.y0;
  w.w = geo.y1;
  return w;
}

// One thread per frame and Gaussian: records[g] from means, scales, rotations.
__global__ void __launch_bounds__(kPerGaussianThreads) preprocess_kernel(
    const float* __restrict__ means, const float* __restrict__ scales, const float* __restrict__ rotations,
    int4* __restrict__ windows, float* __restrict__ conics, int64_t total, int height, int width, int radius) {
  const int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (g >= total) return;
  const Geometry geo = predgsplat::make_geometry(__ldg(&means[2 * g]), __ldg(&means[2 * g + 1]), __ldg(&scales[2 * g]),
                                                 __ldg(&scales[2 * g + 1]), __ldg(&rotations[g]), height, width,
                                                 radius);
  __stwb(&windows[g], window_of(geo));
  const float conic[5] = {geo.px, geo.py, geo.a, geo.b, geo.c};
#pragma unroll
  for (int v = 0; v < 5; ++v) __stwb(&conics[5 * g + v], conic[v]);
}

// The Gaussians of one batch that meet the block's tile, in shared memory.
template <int CHUNK>
struct SharedBatch {
  Geometry list[kBatch];
  int ids[kBatch];            // index of each listed Gaussian within its frame
  float amps[kBatch * CHUNK]; // its amplitudes for the block's channel chunk
  int warp_counts[kWarps];    // how many of each warp's records were kept
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

// Loads the windows of Gaussians [start, start + kBatch) of the block's frame and lists those that meet the
// tile, with their conics and amplitudes. Returns how many were listed: batch.list[0..count). Two barriers: after
// the warps' counts are written, and after the list is. Every thread reads the counts between the two, and
// the list only after the second: so a thread that comes back for the next batch while others still read this
// one's list writes only its warp's count until all have arrived at the first barrier (no barrier is needed
// between batches).
template <int CHUNK>
__device__ int gather_batch(const Records& records, const float* __restrict__ amplitudes, const BlockPixel& p,
                            int n, int channels, int start, SharedBatch<CHUNK>& batch) {
  const int t = threadIdx.x;
  const int i = start + t;
  const int64_t g = p.frame * n + i;
  int4 win;
  bool keep = false;
  if (i < n) {
    win = __ldg(&records.windows[g]);
    keep = win.x <= p.tx0 + kTile - 1 && win.y >= p.tx0 && win.z <= p.ty0 + kTile - 1 && win.w >= p.ty0;
  }
  // Ordered compaction (ballot + prefix over warps), not an atomic counter: the list, and so the
  // order in which each pixel adds its Gaussians up, is the same in every run.
  const unsigned ballot = __ballot_sync(0xffffffffu, keep);
  const int warp = t >> 5, lane = t & 31;
  if (lane == 0) batch.warp_counts[warp] = __popc(ballot);
  __syncthreads();
  int before = 0, total = 0;  // kept by the warps before this one; by all
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    const int count = batch.warp_counts[w];
    before += w < warp ? count : 0;
    total += count;
  }
  if (keep) {
    const int slot = before + __popc(ballot & ((1u << lane) - 1u));
    const float* conic = records.conics + 5 * g;
    batch.list[slot] = Geometry{__ldg(&conic[0]), __ldg(&conic[1]), __ldg(&conic[2]), __ldg(&conic[3]),
                                __ldg(&conic[4]), win.x, win.y, win.z, win.w};
    batch.ids[slot] = i;
#pragma unroll
    for (int k = 0; k < CHUNK; ++k) {
      const int ch = p.c0 + k;
      batch.amps[slot * CHUNK + k] = ch < channels ? __ldg(&amplitudes[g * channels + ch]) : 0.0f;
    }
  }
  __syncthreads();
  return total;
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
    const int4* __restrict__ windows, const float* __restrict__ conics, const float* __restrict__ amplitudes,
    float* __restrict__ out, int n, int channels, int height, int width, int tiles_x, int tiles_per_frame) {
  __shared__ SharedBatch<CHUNK> batch;
  const BlockPixel p = locate<CHUNK>(tiles_x, tiles_per_frame);
  const Records records{windows, conics};

  float acc[CHUNK];
#pragma unroll
  for (int k = 0; k < CHUNK; ++k) acc[k] = 0.0f;

  for (int start = 0; start < n; start += kBatch) {
    const int kept = gather_batch<CHUNK>(records, amplitudes, p, n, channels, start, batch);
    for (int j = 0; j < kept; ++j) {
      const Geometry& geo = batch.list[j];
      if (!in_window(geo, p.x, p.y)) continue;
      float dx, dy;
      const float w = gaussian_weight(geo, p.fx, p.fy, dx, dy);
#pragma unroll
      for (int k = 0; k < CHUNK; ++k) acc[k] += w * batch.amps[j * CHUNK + k];
    }
    // No barrier here: the next round rewrites the list only after its first barrier, which every thread
    // reaches after it has read this round's list (see gather_batch).
  }
  if (p.x < width && p.y < height) {
#pragma unroll
    for (int k = 0; k < CHUNK; ++k) {
      const int ch = p.c0 + k;
      if (ch < channels) __stwb(&out[((p.frame * channels + ch) * height + p.y) * width + p.x], acc[k]);
    }
  }
}

// The number of values the backward sums per Gaussian: d(px, py, a, b, c) and CHUNK amplitudes, padded to a
// power of two for warp_sum_values.
template <int CHUNK>
constexpr int kPaddedValues = 5 + CHUNK <= 8 ? 8 : 5 + CHUNK <= 16 ? 16 : 32;

// One step of warp_sum_values (below): VALUES values per lane at lane offset OFFSET, then the next step.
template <int VALUES, int OFFSET, int P>
__device__ __forceinline__ void butterfly_step(float (&v)[P], int lane, int& index) {
  if constexpr (OFFSET > 0) {
    if constexpr (VALUES > 1) {
      constexpr int half = VALUES / 2;
      const bool upper = (lane & OFFSET) != 0;
#pragma unroll
      for (int i = 0; i < half; ++i) {
        const float keep = upper ? v[half + i] : v[i];
        const float give = upper ? v[i] : v[half + i];
        v[i] = keep + __shfl_xor_sync(0xffffffffu, give, OFFSET);
      }
      index += upper ? half : 0;
      butterfly_step<half, OFFSET / 2>(v, lane, index);
    } else {
      v[0] += __shfl_xor_sync(0xffffffffu, v[0], OFFSET);
      butterfly_step<1, OFFSET / 2>(v, lane, index);
    }
  }
}

// Sums each of the P values (a power of two, 2..32) over the warp's 32 lanes with (P - 1) + (5 - log2 P)
// shuffles instead of P * 5: a butterfly that halves the values per lane at every step (at offset o, the lanes
// with bit o set keep the upper half of their values and add their partner's, the others the lower half).
// Returns the total of value `index`, which is this lane's (lane bits 4, 3, ... from the top); the lanes whose
// bits below 32 / P are zero hold one value's total each, so P lanes can add the P totals at once.
template <int P>
__device__ __forceinline__ float warp_sum_values(float (&v)[P], int lane, int& index) {
  static_assert(P >= 2 && P <= 32 && (P & (P - 1)) == 0, "a power of two from 2 to 32 values");
  index = 0;
  butterfly_step<P, 16>(v, lane, index);
  return v[0];
}

// grad_geometry: (F, N, 5) for d/d(px, py, a, b, c); grad_amplitudes: (F, N, C).
template <int CHUNK>
__global__ void __launch_bounds__(kThreads) backward_kernel(
    const int4* __restrict__ windows, const float* __restrict__ conics, const float* __restrict__ amplitudes,
    const float* __restrict__ grad_out, float* __restrict__ grad_geometry, float* __restrict__ grad_amplitudes, int n,
    int channels, int height, int width, int tiles_x, int tiles_per_frame) {
  constexpr int P = kPaddedValues<CHUNK>;
  __shared__ SharedBatch<CHUNK> batch;
  __shared__ float tile_grad[CHUNK * kThreads];  // grad_out of the tile: [channel][pixel of the tile]
  const BlockPixel p = locate<CHUNK>(tiles_x, tiles_per_frame);
  const Records records{windows, conics};
  const int t = threadIdx.x, warp = t >> 5, lane = t & 31;

  // Each thread stages its pixel's grad_out (visible to all after the first gather's barrier).
  const bool on_image = p.x < width && p.y < height;
#pragma unroll
  for (int k = 0; k < CHUNK; ++k) {
    const int ch = p.c0 + k;
    tile_grad[k * kThreads + t] =
        (on_image && ch < channels) ? __ldg(&grad_out[((p.frame * channels + ch) * height + p.y) * width + p.x]) : 0.0f;
  }

  int handed = 0;  // listed Gaussians of earlier batches: entry j of a batch goes to warp (handed + j) % kWarps
  for (int start = 0; start < n; start += kBatch) {
    const int kept = gather_batch<CHUNK>(records, amplitudes, p, n, channels, start, batch);
    for (int j = (warp - handed % kWarps + kWarps) % kWarps; j < kept; j += kWarps) {
      const Geometry& geo = batch.list[j];
      // Where the window meets the tile: never empty for a listed Gaussian, and on the image.
      const int x0 = max(geo.x0, p.tx0), x1 = min(geo.x1, p.tx0 + kTile - 1);
      const int y0 = max(geo.y0, p.ty0), y1 = min(geo.y1, p.ty0 + kTile - 1);
      const int w = x1 - x0 + 1, area = w * (y1 - y0 + 1);
      float amp[CHUNK];
#pragma unroll
      for (int k = 0; k < CHUNK; ++k) amp[k] = batch.amps[j * CHUNK + k];
      float v[P];  // d(px, py, a, b, c), d(amplitudes), zero padding
#pragma unroll
      for (int i = 0; i < P; ++i) v[i] = 0.f;
      // The lanes take the pixels of the w-wide rectangle row by row, 32 at a time.
      int col = lane % w, row = lane / w;
      const int col_step = 32 % w, row_step = 32 / w;
      for (int i = lane; i < area; i += 32) {
        const int x = x0 + col, y = y0 + row;
        const int pixel = (y - p.ty0) * kTile + (x - p.tx0);
        float dx, dy;
        const float weight = gaussian_weight(geo, static_cast<float>(x), static_cast<float>(y), dx, dy);
        float g[CHUNK], d_w = 0.f;
#pragma unroll
        for (int k = 0; k < CHUNK; ++k) {
          g[k] = tile_grad[k * kThreads + pixel];
          d_w += g[k] * amp[k];
        }
        const predgsplat::GeometryGrad<float> share = predgsplat::pixel_geometry_grad(geo, dx, dy, weight, d_w);
        v[0] += share.px;
        v[1] += share.py;
        v[2] += share.a;
        v[3] += share.b;
        v[4] += share.c;
#pragma unroll
        for (int k = 0; k < CHUNK; ++k) v[5 + k] += weight * g[k];
        col += col_step;
        row += row_step;
        if (col >= w) {
          col -= w;
          ++row;
        }
      }
      int index;
      const float total = warp_sum_values<P>(v, lane, index);
      if ((lane & (32 / P - 1)) != 0 || total == 0.f) continue;  // one lane per value adds its total
      const int64_t gid = p.frame * n + batch.ids[j];
      if (index < 5) {
        atomicAdd(&grad_geometry[gid * 5 + index], total);
      } else if (grad_amplitudes != nullptr && index < 5 + CHUNK && p.c0 + index - 5 < channels) {
        atomicAdd(&grad_amplitudes[gid * channels + p.c0 + index - 5], total);
      }
    }
    handed += kept;  // no barrier: as in the forward
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
  const predgsplat::GeometryGrad<float> grad{__ldg(&d[0]), __ldg(&d[1]), __ldg(&d[2]), __ldg(&d[3]), __ldg(&d[4])};
  float d_means[2], d_scales[2], d_rotation;
  predgsplat::geometry_chain(grad, __ldg(&scales[2 * g]), __ldg(&scales[2 * g + 1]), __ldg(&rotations[g]), height,
                             width, d_means, d_scales, &d_rotation);
  for (int i = 0; i < 2; ++i) {
    __stwb(&grad_means[2 * g + i], d_means[i]);
    __stwb(&grad_scales[2 * g + i], d_scales[i]);
  }
  __stwb(&grad_rotations[g], d_rotation);
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
  dim3 grid;                   // of the two tile kernels
  int64_t per_gaussian_blocks; // of the kernels with a thread per Gaussian
  const char* error;  // nullptr, or why the problem does not fit one launch
};

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

// Blocks of `threads` for one thread per element (at least 1).
inline int64_t blocks_for(int64_t elements, int threads) { return std::max<int64_t>(1, (elements + threads - 1) / threads); }

inline Launch plan(const Problem& p) {
  Launch l;
  l.tiles_x = (p.width + kTile - 1) / kTile;
  l.tiles_per_frame = l.tiles_x * ((p.height + kTile - 1) / kTile);
  l.chunk = chunk_for(p.channels);
  l.chunks = (p.channels + l.chunk - 1) / l.chunk;
  l.error = nullptr;
  const int64_t blocks = p.frames * l.tiles_per_frame;
  l.per_gaussian_blocks = blocks_for(p.frames * p.n, kPerGaussianThreads);
  if (blocks >= int64_t{0x7fffffff}) l.error = "predgsplat: too many frames x tiles for one launch";
  if (l.per_gaussian_blocks >= int64_t{0x7fffffff}) l.error = "predgsplat: too many Gaussians for one launch";
  if (l.chunks >= 65536) l.error = "predgsplat: too many channels";
  l.grid = dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(l.chunks));
  return l;
}

// Floats of scratch memory (the workspace) the launches below need for a problem: the records of its F x N
// Gaussians, windows (4 ints each) then conics (5 floats each).
inline int64_t workspace_floats(int64_t frames, int64_t n) { return frames * n * (4 + 5); }

// Writes the records of every Gaussian of the problem into the workspace; returns them.
inline Records launch_preprocess(const Problem& p, const Launch& l, float* workspace, cudaStream_t stream) {
  const int64_t total = p.frames * p.n;
  int4* windows = reinterpret_cast<int4*>(workspace);
  float* conics = workspace + 4 * total;
  PREDGSPLAT_LAUNCH(preprocess_kernel, dim3(static_cast<unsigned>(l.per_gaussian_blocks)), kPerGaussianThreads,
                    stream, p.means, p.scales, p.rotations, windows, conics, total, p.height, p.width, p.radius);
  return Records{windows, conics};
}

#define PREDGSPLAT_DISPATCH_CHUNK(CHUNK_VALUE, ...)                 \
  switch (CHUNK_VALUE) {                                            \
    case 1: { constexpr int CHUNK = 1; __VA_ARGS__; break; }        \
    case 2: { constexpr int CHUNK = 2; __VA_ARGS__; break; }        \
    case 3: { constexpr int CHUNK = 3; __VA_ARGS__; break; }        \
    case 4: { constexpr int CHUNK = 4; __VA_ARGS__; break; }        \
    case 8: { constexpr int CHUNK = 8; __VA_ARGS__; break; }        \
    default: { constexpr int CHUNK = 16; __VA_ARGS__; break; }      \
  }

// Renders a problem with F, N, C >= 1 into out (F, C, H, W), every element of which it writes, using
// workspace (workspace_floats(F, N) floats). Returns nullptr, or why it cannot be launched.
inline const char* launch_forward(const Problem& p, float* workspace, float* out, cudaStream_t stream) {
  const Launch l = plan(p);
  if (l.error != nullptr) return l.error;
  const Records r = launch_preprocess(p, l, workspace, stream);
  PREDGSPLAT_DISPATCH_CHUNK(l.chunk, PREDGSPLAT_LAUNCH(forward_kernel<CHUNK>, l.grid, kThreads, stream, r.windows,
                                                       r.conics, p.amplitudes, out, p.n, p.channels, p.height,
                                                       p.width, l.tiles_x, l.tiles_per_frame));
  return nullptr;
}

// Gradients of a problem with F, N, C >= 1 given grad_out (F, C, H, W), using workspace (workspace_floats(F, N)
// floats). grad_geometry (F, N, 5) and grad_amplitudes (F, N, C; nullptr: not wanted) must be zero-filled: the
// kernel adds to them; grad_means (F, N, 2), grad_scales (F, N, 2) and grad_rotations (F, N) are written
// entirely. Returns nullptr, or why it cannot be launched.
inline const char* launch_backward(const Problem& p, float* workspace, const float* grad_out, float* grad_geometry,
                                   float* grad_amplitudes, float* grad_means, float* grad_scales,
                                   float* grad_rotations, cudaStream_t stream) {
  const Launch l = plan(p);
  if (l.error != nullptr) return l.error;
  const Records r = launch_preprocess(p, l, workspace, stream);
  PREDGSPLAT_DISPATCH_CHUNK(l.chunk, PREDGSPLAT_LAUNCH(backward_kernel<CHUNK>, l.grid, kThreads, stream, r.windows,
                                                       r.conics, p.amplitudes, grad_out, grad_geometry,
                                                       grad_amplitudes, p.n, p.channels, p.height, p.width,
                                                       l.tiles_x, l.tiles_per_frame));
  PREDGSPLAT_LAUNCH(geometry_chain_kernel, dim3(static_cast<unsigned>(l.per_gaussian_blocks)), kPerGaussianThreads,
                    stream, p.scales, p.rotations, grad_geometry, grad_means, grad_scales, grad_rotations,
                    p.frames * p.n, p.height, p.width);
  return nullptr;
}

}  // namespace kernels
}  // namespace predgsplat
