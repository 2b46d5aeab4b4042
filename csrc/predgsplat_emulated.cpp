// predgsplat_emulated: the CUDA kernels of predgsplat_kernels.cuh and their launch sequence, compiled by the
// host compiler with the CUDA emulator (emu/cuda_emu.h) and run on the CPU: the backend "cuda_emulated" of
// pdr.render.rasterize_gaussians, with which the tests execute the GPU code on machines without a GPU
// (docs/renderer-emulator.md). Registered as torch.ops.pdr_predgsplat_emulated.forward and .backward (the
// signatures of the CUDA module's), plus set_schedule, counters and reset_counters. float32 CPU tensors.
//
// Outputs the kernels must write entirely are filled with NaN before the launch, as memory a GPU allocator
// hands out holds anything: an element a kernel forgets to write stays NaN.
#define TORCH_TARGET_VERSION (((0ULL + 2) << 56) | ((0ULL + 10) << 48))
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>

#include <algorithm>
#include <limits>
#include <tuple>

// After torch's headers: the emulator defines the CUDA keywords as macros.
#include "emu/cuda_emu.h"
#include "predgsplat_kernels.cuh"

namespace {

using predgsplat::kernels::Problem;
using torch::headeronly::ScalarType;
using torch::stable::Tensor;

void check(const char* error) { STD_TORCH_CHECK(error == nullptr, error); }

void check_inputs(const Tensor& means, const Tensor& scales, const Tensor& rotations, const Tensor& amplitudes) {
  for (const Tensor* t : {&means, &scales, &rotations, &amplitudes}) {
    STD_TORCH_CHECK(t->is_cpu(), "predgsplat_emulated: inputs must be CPU tensors");
    STD_TORCH_CHECK(t->scalar_type() == ScalarType::Float,
                    "predgsplat_emulated: inputs must be float32 (the wrapper converts)");
    STD_TORCH_CHECK(t->is_contiguous(), "predgsplat_emulated: inputs must be contiguous (the wrapper makes them so)");
  }
  check(predgsplat::kernels::shape_error(means, scales, rotations, amplitudes));
}

Problem make_problem(const Tensor& means, const Tensor& scales, const Tensor& rotations, const Tensor& amplitudes,
                     int64_t height, int64_t width, int64_t kernel_size) {
  return Problem{means.const_data_ptr<float>(), scales.const_data_ptr<float>(), rotations.const_data_ptr<float>(),
                 amplitudes.const_data_ptr<float>(), means.size(0), static_cast<int>(means.size(1)),
                 static_cast<int>(amplitudes.size(2)), static_cast<int>(height), static_cast<int>(width),
                 predgsplat::kernels::radius_for(kernel_size)};
}

Tensor poisoned(const Tensor& like, torch::headeronly::IntHeaderOnlyArrayRef size) {
  Tensor t = torch::stable::new_empty(like, size);
  torch::stable::fill_(t, std::numeric_limits<double>::quiet_NaN());
  return t;
}

// Scratch memory of the kernels (the per-Gaussian records the preprocessing writes), NaN: a record it does not
// write shows.
Tensor workspace_for(const Tensor& means) {
  return poisoned(means, {predgsplat::kernels::workspace_floats(means.size(0), means.size(1))});
}

// Launch errors of the emulator (a broken rule, a deadlock) become RuntimeErrors with its message.
template <typename F>
void emulated(const F& run) {
  try {
    check(run());
  } catch (const cuda_emu::Error& e) {
    STD_TORCH_CHECK(false, e.what());
  }
}

Tensor forward(Tensor means, Tensor scales, Tensor rotations, Tensor amplitudes, int64_t height, int64_t width,
               int64_t kernel_size) {
  check_inputs(means, scales, rotations, amplitudes);
  check(predgsplat::kernels::size_error(height, width, kernel_size));
  const int64_t frames = means.size(0), n = means.size(1), channels = amplitudes.size(2);
  Tensor out = poisoned(amplitudes, {frames, channels, height, width});
  if (out.numel() == 0) return out;
  if (n == 0) return torch::stable::zero_(out);
  const Problem p = make_problem(means, scales, rotations, amplitudes, height, width, kernel_size);
  Tensor workspace = workspace_for(means);
  emulated([&] {
    return predgsplat::kernels::launch_forward(p, workspace.mutable_data_ptr<float>(), out.mutable_data_ptr<float>(),
                                               nullptr);
  });
  return out;
}

std::tuple<Tensor, Tensor, Tensor, Tensor> backward(Tensor means, Tensor scales, Tensor rotations, Tensor amplitudes,
                                                    Tensor grad_out, int64_t kernel_size, bool need_amplitudes) {
  check_inputs(means, scales, rotations, amplitudes);
  STD_TORCH_CHECK(grad_out.is_cpu() && grad_out.scalar_type() == ScalarType::Float && grad_out.is_contiguous(),
                  "predgsplat_emulated: grad_out must be a contiguous float32 CPU tensor (F, C, H, W)");
  check(predgsplat::kernels::grad_out_error(grad_out, amplitudes));
  const int64_t height = grad_out.size(2), width = grad_out.size(3);
  check(predgsplat::kernels::size_error(height, width, kernel_size));
  const int64_t frames = means.size(0), n = means.size(1);
  Tensor grad_geometry = torch::stable::new_zeros(means, {frames, n, 5});
  Tensor grad_amplitudes = torch::stable::new_zeros(means, {need_amplitudes ? frames : 0, n, amplitudes.size(2)});
  Tensor grad_means = poisoned(means, {frames, n, 2}), grad_scales = poisoned(means, {frames, n, 2});
  Tensor grad_rotations = poisoned(means, {frames, n});
  if (frames * n == 0 || grad_out.numel() == 0) {
    return {torch::stable::zero_(grad_means), torch::stable::zero_(grad_scales), torch::stable::zero_(grad_rotations),
            grad_amplitudes};
  }
  const Problem p = make_problem(means, scales, rotations, amplitudes, height, width, kernel_size);
  Tensor workspace = workspace_for(means);
  emulated([&] {
    return predgsplat::kernels::launch_backward(
        p, workspace.mutable_data_ptr<float>(), grad_out.const_data_ptr<float>(), grad_geometry.mutable_data_ptr<float>(),
        need_amplitudes ? grad_amplitudes.mutable_data_ptr<float>() : nullptr, grad_means.mutable_data_ptr<float>(),
        grad_scales.mutable_data_ptr<float>(), grad_rotations.mutable_data_ptr<float>(), nullptr);
  });
  return {grad_means, grad_scales, grad_rotations, grad_amplitudes};
}

// Orders: 0 forward, 1 reversed, 2 shuffled (anew for every round of a block's threads), from seed; greedy_warps:
// one warp runs as far as it can before the next (else the threads run in rounds).
void set_schedule(int64_t blocks, int64_t threads, int64_t seed, bool greedy_warps) {
  STD_TORCH_CHECK(blocks >= 0 && blocks <= 2 && threads >= 0 && threads <= 2,
                  "predgsplat_emulated: orders are 0 (forward), 1 (reversed) or 2 (shuffled)");
  cuda_emu::set_schedule(cuda_emu::Schedule{static_cast<cuda_emu::Order>(blocks),
                                            static_cast<cuda_emu::Order>(threads), static_cast<uint64_t>(seed),
                                            greedy_warps});
}

// int64 (10,): launches, blocks, threads, barriers, warp_shuffles, warp_votes, atomics, expf, global_load_bytes,
// global_store_bytes (cuda_emu::Counters).
Tensor counters(Tensor like) {
  const cuda_emu::Counters c = cuda_emu::counters();
  const int64_t values[] = {c.launches,   c.blocks,  c.threads, c.barriers,          c.warp_shuffles,
                            c.warp_votes, c.atomics, c.expf,    c.global_load_bytes, c.global_store_bytes};
  constexpr int64_t count = sizeof(values) / sizeof(values[0]);
  Tensor out = torch::stable::new_empty(like, {count}, ScalarType::Long);
  std::copy(values, values + count, out.mutable_data_ptr<int64_t>());
  return out;
}

void reset_counters() { cuda_emu::reset_counters(); }

}  // namespace

STABLE_TORCH_LIBRARY(pdr_predgsplat_emulated, m) {
  m.def("forward(Tensor means, Tensor scales, Tensor rotations, Tensor amplitudes, int height, int width, "
        "int kernel_size) -> Tensor");
  m.def("backward(Tensor means, Tensor scales, Tensor rotations, Tensor amplitudes, Tensor grad_out, "
        "int kernel_size, bool need_amplitudes) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("set_schedule(int blocks, int threads, int seed, bool greedy_warps) -> ()");
  m.def("counters(Tensor like) -> Tensor");
  m.def("reset_counters() -> ()");
}

STABLE_TORCH_LIBRARY_IMPL(pdr_predgsplat_emulated, CPU, m) {
  m.impl("forward", TORCH_BOX(&forward));
  m.impl("backward", TORCH_BOX(&backward));
  m.impl("counters", TORCH_BOX(&counters));
}

STABLE_TORCH_LIBRARY_IMPL(pdr_predgsplat_emulated, CompositeExplicitAutograd, m) {
  m.impl("set_schedule", TORCH_BOX(&set_schedule));
  m.impl("reset_counters", TORCH_BOX(&reset_counters));
}
