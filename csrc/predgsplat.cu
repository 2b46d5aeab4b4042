// predgsplat: the CUDA backend of pdr.render.rasterize_gaussians (see docs/renderer.md and
// docs/renderer-cuda.md): ATen entry points around the kernels of predgsplat_kernels.cuh, which the
// CPU tests also run through the CUDA emulator (docs/renderer-emulator.md). Forward and backward, any N,
// any C, any K (or none), any number of frames in one launch.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <cuda_runtime.h>

#include <algorithm>

#define PREDGSPLAT_CHECK_LAUNCH() C10_CUDA_KERNEL_LAUNCH_CHECK()
#include "predgsplat_kernels.cuh"

namespace {

using predgsplat::kernels::Problem;

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

void check_inputs(const at::Tensor& means, const at::Tensor& scales, const at::Tensor& rotations,
                  const at::Tensor& amplitudes) {
  for (const auto* t : {&means, &scales, &rotations, &amplitudes}) {
    TORCH_CHECK(t->is_cuda(), "predgsplat: inputs must be CUDA tensors");
    TORCH_CHECK(t->scalar_type() == at::kFloat, "predgsplat: inputs must be float32 (the wrapper converts)");
    TORCH_CHECK(t->is_contiguous(), "predgsplat: inputs must be contiguous (the wrapper makes them so)");
  }
  const char* error = predgsplat::kernels::shape_error(means, scales, rotations, amplitudes);
  TORCH_CHECK(error == nullptr, error);
}

Problem make_problem(const at::Tensor& means, const at::Tensor& scales, const at::Tensor& rotations,
                     const at::Tensor& amplitudes, int64_t height, int64_t width, int64_t kernel_size) {
  return Problem{means.data_ptr<float>(), scales.data_ptr<float>(), rotations.data_ptr<float>(),
                 amplitudes.data_ptr<float>(), means.size(0), static_cast<int>(means.size(1)),
                 static_cast<int>(amplitudes.size(2)), static_cast<int>(height), static_cast<int>(width),
                 predgsplat::kernels::radius_for(kernel_size)};
}

// Scratch memory of the kernels: the per-Gaussian records the preprocessing writes.
at::Tensor workspace_for(const at::Tensor& means) {
  return at::empty({predgsplat::kernels::workspace_floats(means.size(0), means.size(1))}, means.options());
}

}  // namespace

at::Tensor predgsplat_forward(const at::Tensor& means, const at::Tensor& scales, const at::Tensor& rotations,
                              const at::Tensor& amplitudes, int64_t height, int64_t width, int64_t kernel_size) {
  check_inputs(means, scales, rotations, amplitudes);
  const char* error = predgsplat::kernels::size_error(height, width, kernel_size);
  TORCH_CHECK(error == nullptr, error);
  const c10::cuda::CUDAGuard guard(means.device());
  auto out = at::empty({means.size(0), amplitudes.size(2), height, width}, amplitudes.options());
  if (out.numel() == 0) return out;
  if (means.size(1) == 0) return out.zero_();
  const Problem p = make_problem(means, scales, rotations, amplitudes, height, width, kernel_size);
  auto workspace = workspace_for(means);
  error = predgsplat::kernels::launch_forward(p, workspace.data_ptr<float>(), out.data_ptr<float>(),
                                              c10::cuda::getCurrentCUDAStream());
  TORCH_CHECK(error == nullptr, error);
  return out;
}

std::vector<at::Tensor> predgsplat_backward(const at::Tensor& means, const at::Tensor& scales,
                                            const at::Tensor& rotations, const at::Tensor& amplitudes,
                                            const at::Tensor& grad_out, int64_t kernel_size, bool need_amplitudes) {
  check_inputs(means, scales, rotations, amplitudes);
  TORCH_CHECK(grad_out.is_cuda() && grad_out.scalar_type() == at::kFloat && grad_out.is_contiguous(),
              "predgsplat: grad_out must be a contiguous float32 CUDA tensor (F, C, H, W)");
  const char* error = predgsplat::kernels::grad_out_error(grad_out, amplitudes);
  TORCH_CHECK(error == nullptr, error);
  const int64_t height = grad_out.size(2), width = grad_out.size(3);
  error = predgsplat::kernels::size_error(height, width, kernel_size);
  TORCH_CHECK(error == nullptr, error);
  const c10::cuda::CUDAGuard guard(means.device());
  auto grad_geometry = at::zeros({means.size(0), means.size(1), 5}, means.options());
  auto grad_amplitudes = need_amplitudes ? at::zeros_like(amplitudes) : at::Tensor();
  auto grad_means = at::empty_like(means), grad_scales = at::empty_like(scales);
  auto grad_rotations = at::empty_like(rotations);
  if (means.size(0) * means.size(1) == 0 || grad_out.numel() == 0) {
    return {grad_means.zero_(), grad_scales.zero_(), grad_rotations.zero_(),
            need_amplitudes ? grad_amplitudes : at::Tensor()};
  }
  const Problem p = make_problem(means, scales, rotations, amplitudes, height, width, kernel_size);
  auto workspace = workspace_for(means);
  error = predgsplat::kernels::launch_backward(p, workspace.data_ptr<float>(), grad_out.data_ptr<float>(),
                                               grad_geometry.data_ptr<float>(),
                                               need_amplitudes ? grad_amplitudes.data_ptr<float>() : nullptr,
                                               grad_means.data_ptr<float>(), grad_scales.data_ptr<float>(),
                                               grad_rotations.data_ptr<float>(), c10::cuda::getCurrentCUDAStream());
  TORCH_CHECK(error == nullptr, error);
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
