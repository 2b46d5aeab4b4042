// Python bindings of the predgsplat kernels (csrc/predgsplat.cu).
#include <torch/extension.h>

#include <vector>

at::Tensor predgsplat_forward(const at::Tensor& means, const at::Tensor& scales, const at::Tensor& rotations,
                              const at::Tensor& amplitudes, int64_t height, int64_t width, int64_t kernel_size);

std::vector<at::Tensor> predgsplat_backward(const at::Tensor& means, const at::Tensor& scales,
                                            const at::Tensor& rotations, const at::Tensor& amplitudes,
                                            const at::Tensor& grad_out, int64_t kernel_size, bool need_amplitudes);

double predgsplat_exp_throughput(int64_t blocks, int64_t iters);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "predgsplat: CUDA rasterizer of 2D Gaussians (pdr.render)";
  m.def("forward", &predgsplat_forward, "render (F, N) Gaussians into (F, C, H, W); kernel_size 0 = every pixel",
        py::arg("means"), py::arg("scales"), py::arg("rotations"), py::arg("amplitudes"), py::arg("height"),
        py::arg("width"), py::arg("kernel_size"));
  m.def("backward", &predgsplat_backward,
        "gradients for means, scales, rotations, amplitudes (the last undefined when need_amplitudes is false)",
        py::arg("means"), py::arg("scales"), py::arg("rotations"), py::arg("amplitudes"), py::arg("grad_out"),
        py::arg("kernel_size"), py::arg("need_amplitudes"));
  // Built ahead of time (setup.py), the module records what it was built from and for; built on first use, a
  // record beside it does (pdr/render/_extension.py).
#ifdef PREDGSPLAT_SOURCES_DIGEST
  m.attr("sources_digest") = PREDGSPLAT_SOURCES_DIGEST;
#endif
#ifdef PREDGSPLAT_CUDA_ARCHS
  m.attr("cuda_archs") = PREDGSPLAT_CUDA_ARCHS;
#endif
  m.def("exp_throughput", &predgsplat_exp_throughput,
        "Gaussian-pixel evaluations per second of a register-only microkernel (for tools/bench_render.py)",
        py::arg("blocks"), py::arg("iters"));
}
