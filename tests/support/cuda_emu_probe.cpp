// Small kernels that test the CUDA emulator itself (tests/test_render_emulator.py): what its warp collectives,
// barriers and atomics return, that it exposes a missing barrier, that it refuses what a GPU would punish, and
// the device branch of predgsplat_math.h's pixel_coordinate. Registered as torch.ops.cuda_emu_probe.*.
#define TORCH_TARGET_VERSION (((0ULL + 2) << 56) | ((0ULL + 10) << 48))
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>

#include "emu/cuda_emu.h"
#include "predgsplat_math.h"

namespace {

using torch::headeronly::ScalarType;
using torch::stable::Tensor;

constexpr int kResults = 16;  // values each thread of collectives_kernel writes

// 64 threads: two warps; out (64, kResults).
__global__ void collectives_kernel(int* out, int* counter) {
  const int t = threadIdx.x, lane = t % 32;
  int* mine = out + t * kResults;
  mine[0] = static_cast<int>(__ballot_sync(0xffffffffu, lane % 3 == 0));
  mine[1] = __any_sync(0xffffffffu, lane == 5);
  mine[2] = __all_sync(0xffffffffu, lane < 31);
  mine[3] = __shfl_sync(0xffffffffu, 100 + t, (lane + 1) % 32);
  mine[4] = __shfl_up_sync(0xffffffffu, 100 + t, 1);
  mine[5] = __shfl_down_sync(0xffffffffu, 100 + t, 3);
  mine[6] = __shfl_xor_sync(0xffffffffu, 100 + t, 5);
  mine[7] = __shfl_down_sync(0xffffffffu, 100 + t, 3, 8);
  mine[8] = __syncthreads_count(t % 4 == 0);
  mine[9] = __syncthreads_and(t < 64);
  mine[10] = __syncthreads_or(t == 63);
  mine[11] = atomicAdd(counter, 1);
  if (lane < 16) {  // half a warp, with a mask of its own
    mine[12] = static_cast<int>(__ballot_sync(0x0000ffffu, lane % 2 == 1));
  } else {
    mine[12] = static_cast<int>(__ballot_sync(0xffff0000u, lane % 2 == 1));
  }
  mine[13] = static_cast<int>(__shfl_down_sync(0xffffffffu, static_cast<float>(t) + 0.5f, 16));
  mine[14] = blockIdx.x + 100 * blockIdx.y;
  mine[15] = static_cast<int>(blockDim.x + 1000 * gridDim.x);
}

// Reverses 256 floats through shared memory; without the barrier a thread reads what no thread has written yet.
template <bool BARRIER>
__global__ void reverse_kernel(const float* in, float* out) {
  __shared__ float staged[256];
  const int t = threadIdx.x;
  staged[t] = in[t];
  if (BARRIER) __syncthreads();
  out[t] = staged[255 - t];
}

// Two warps trade a value through shared memory for two rounds; without the barrier at the end of a round, a warp
// that runs ahead publishes its next value before the other warp has read this one.
template <bool BARRIER>
__global__ void rounds_kernel(int* out) {
  __shared__ int slot[2];
  const int t = threadIdx.x, w = t / 32;
  for (int round = 0; round < 2; ++round) {
    if (t % 32 == 0) slot[w] = 10 * round + w;
    __syncthreads();
    const int other = slot[1 - w];
    __syncwarp();
    out[64 * round + t] = other;
    if (BARRIER) __syncthreads();
  }
}

__global__ void early_exit_kernel() {
  if (threadIdx.x == 7) return;
  __syncthreads();
}

__global__ void divergent_barrier_kernel() {
  if (threadIdx.x < 32) {
    __syncthreads();
  } else {
    __syncthreads();
  }
}

__global__ void missing_lane_kernel(float* out) {
  if (threadIdx.x % 32 == 31) return;
  out[threadIdx.x] = __shfl_down_sync(0xffffffffu, 1.0f, 1);
}

__global__ void lane_outside_mask_kernel(int* out) { out[threadIdx.x] = __ballot_sync(0x7fffffffu, 1); }

__global__ void mask_mismatch_kernel(int* out) {
  const unsigned mask = threadIdx.x % 32 < 16 ? 0x0000ffffu : 0xffffffffu;
  out[threadIdx.x] = __ballot_sync(mask, 1);
}

__global__ void nonexistent_lanes_kernel(int* out) { out[threadIdx.x] = __ballot_sync(0xffffffffu, 1); }

__global__ void bad_width_kernel(int* out) { out[threadIdx.x] = __shfl_down_sync(0xffffffffu, 1, 1, 3); }

__global__ void empty_kernel() {}

__global__ void out_of_bounds_kernel(float* out) { out[threadIdx.x * (int64_t{1} << 40)] = 1.0f; }

__global__ void division_by_zero_kernel(int* out) { out[threadIdx.x] = 7 / out[threadIdx.x + 32]; }

__device__ int deep(int depth, volatile char* sink) {
  volatile char frame[4096];
  frame[0] = static_cast<char>(depth);
  sink[0] = frame[0];
  return depth > 0 ? deep(depth - 1, sink) + frame[0] : 0;
}

__global__ void stack_overflow_kernel(int* out) {
  volatile char sink[1];
  out[threadIdx.x] = deep(1 << 20, sink);
}

__global__ void big_shared_kernel(float* out) {
  __shared__ float big[13 * 1024];  // 52 KiB: more than a block may have statically
  big[threadIdx.x] = 1.0f;
  out[threadIdx.x] = big[threadIdx.x];
}

// (64, kResults) int32 results of collectives_kernel, launched on a (2, 3) grid of 64 threads; the results are
// those of the last block run, with the counter of atomicAdd over all blocks.
Tensor collectives(Tensor like, int64_t threads_order) {
  cuda_emu::Schedule schedule;
  schedule.threads = static_cast<cuda_emu::Order>(threads_order);
  schedule.seed = 3;
  cuda_emu::set_schedule(schedule);
  Tensor out = torch::stable::new_zeros(like, {64 + 1, kResults}, ScalarType::Int);
  int* data = out.mutable_data_ptr<int>();
  try {
    cuda_emu::launch("collectives_kernel", collectives_kernel, dim3(2, 3), dim3(64), 0, nullptr, data,
                     data + 64 * kResults);
  } catch (const cuda_emu::Error& e) {
    cuda_emu::set_schedule(cuda_emu::Schedule{});
    STD_TORCH_CHECK(false, e.what());
  }
  cuda_emu::set_schedule(cuda_emu::Schedule{});
  return out;
}

Tensor reverse(Tensor in, bool barrier, int64_t threads_order) {
  cuda_emu::Schedule schedule;
  schedule.threads = static_cast<cuda_emu::Order>(threads_order);
  cuda_emu::set_schedule(schedule);
  Tensor out = torch::stable::new_zeros(in, {256});
  const float* src = in.const_data_ptr<float>();
  float* dst = out.mutable_data_ptr<float>();
  if (barrier) {
    cuda_emu::launch("reverse_kernel<true>", reverse_kernel<true>, dim3(1), dim3(256), 0, nullptr, src, dst);
  } else {
    cuda_emu::launch("reverse_kernel<false>", reverse_kernel<false>, dim3(1), dim3(256), 0, nullptr, src, dst);
  }
  cuda_emu::set_schedule(cuda_emu::Schedule{});
  return out;
}

// (128,) what each thread of rounds_kernel read in each round.
Tensor rounds(Tensor like, bool barrier, int64_t threads_order, bool greedy_warps) {
  cuda_emu::Schedule schedule;
  schedule.threads = static_cast<cuda_emu::Order>(threads_order);
  schedule.greedy_warps = greedy_warps;
  cuda_emu::set_schedule(schedule);
  Tensor out = torch::stable::new_zeros(like, {128}, ScalarType::Int);
  int* data = out.mutable_data_ptr<int>();
  if (barrier) {
    cuda_emu::launch("rounds_kernel<true>", rounds_kernel<true>, dim3(1), dim3(64), 0, nullptr, data);
  } else {
    cuda_emu::launch("rounds_kernel<false>", rounds_kernel<false>, dim3(1), dim3(64), 0, nullptr, data);
  }
  cuda_emu::set_schedule(cuda_emu::Schedule{});
  return out;
}

// Launches the broken kernel `which` (see BROKEN in the test); raises with the emulator's message.
void broken(int64_t which) {
  static int ints[2048];
  static float floats[2048];
  try {
    switch (which) {
      case 0: cuda_emu::launch("early_exit_kernel", early_exit_kernel, dim3(1), dim3(256), 0, nullptr); break;
      case 1:
        cuda_emu::launch("divergent_barrier_kernel", divergent_barrier_kernel, dim3(1), dim3(64), 0, nullptr);
        break;
      case 2:
        cuda_emu::launch("missing_lane_kernel", missing_lane_kernel, dim3(1), dim3(64), 0, nullptr, floats);
        break;
      case 3:
        cuda_emu::launch("lane_outside_mask_kernel", lane_outside_mask_kernel, dim3(1), dim3(32), 0, nullptr, ints);
        break;
      case 4: cuda_emu::launch("mask_mismatch_kernel", mask_mismatch_kernel, dim3(1), dim3(32), 0, nullptr, ints); break;
      case 5:
        cuda_emu::launch("nonexistent_lanes_kernel", nonexistent_lanes_kernel, dim3(1), dim3(48), 0, nullptr, ints);
        break;
      case 6: cuda_emu::launch("bad_width_kernel", bad_width_kernel, dim3(1), dim3(32), 0, nullptr, ints); break;
      case 7: cuda_emu::launch("empty_kernel", empty_kernel, dim3(1), dim3(2048), 0, nullptr); break;
      case 8: cuda_emu::launch("empty_kernel", empty_kernel, dim3(1, 70000), dim3(32), 0, nullptr); break;
      case 9: cuda_emu::launch("empty_kernel", empty_kernel, dim3(0), dim3(32), 0, nullptr); break;
      case 10: cuda_emu::launch("big_shared_kernel", big_shared_kernel, dim3(1), dim3(32), 0, nullptr, floats); break;
      case 11:
        cuda_emu::launch("out_of_bounds_kernel", out_of_bounds_kernel, dim3(1), dim3(32), 0, nullptr, floats);
        break;
      case 12:
        cuda_emu::launch("stack_overflow_kernel", stack_overflow_kernel, dim3(1), dim3(32), 0, nullptr, ints);
        break;
      case 13:
        std::fill(ints, ints + 64, 0);
        cuda_emu::launch("division_by_zero_kernel", division_by_zero_kernel, dim3(1), dim3(32), 0, nullptr, ints);
        break;
      default: STD_TORCH_CHECK(false, "no such broken kernel");
    }
  } catch (const cuda_emu::Error& e) {
    STD_TORCH_CHECK(false, e.what());
  }
}

// predgsplat::pixel_coordinate as the device computes it, and the same formula written without the
// round-to-nearest operations, both compiled with contraction into fused multiply-adds allowed.
Tensor pixel_coordinates(Tensor m, int64_t size, bool rounded) {
  Tensor out = torch::stable::new_empty(m, {m.numel()});
  const float* in = m.const_data_ptr<float>();
  float* px = out.mutable_data_ptr<float>();
  const float half = static_cast<float>(size) / 2.0f;
  for (int64_t i = 0; i < m.numel(); ++i) {
    px[i] = rounded ? predgsplat::pixel_coordinate(in[i], static_cast<int>(size)) : (in[i] + 1.0f) * half - 0.5f;
  }
  return out;
}

}  // namespace

STABLE_TORCH_LIBRARY(cuda_emu_probe, m) {
  m.def("collectives(Tensor like, int threads_order) -> Tensor");
  m.def("reverse(Tensor values, bool barrier, int threads_order) -> Tensor");
  m.def("rounds(Tensor like, bool barrier, int threads_order, bool greedy_warps) -> Tensor");
  m.def("broken(Tensor like, int which) -> ()");
  m.def("pixel_coordinates(Tensor m, int size, bool rounded) -> Tensor");
}

void broken_op(Tensor, int64_t which) { broken(which); }

STABLE_TORCH_LIBRARY_IMPL(cuda_emu_probe, CPU, m) {
  m.impl("collectives", TORCH_BOX(&collectives));
  m.impl("reverse", TORCH_BOX(&reverse));
  m.impl("rounds", TORCH_BOX(&rounds));
  m.impl("broken", TORCH_BOX(&broken_op));
  m.impl("pixel_coordinates", TORCH_BOX(&pixel_coordinates));
}
