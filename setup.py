"""Metadata lives in pyproject.toml. This file only adds the optional ahead-of-time builds of the rasterizer:

    PDR_BUILD_EXTENSIONS=1 pip install --no-build-isolation .   # pdr._C_cpu and, where nvcc is, pdr._C
    PDR_BUILD_CPU=1 ...                                        # pdr._C_cpu only
    PDR_BUILD_CUDA=1 ...                                       # pdr._C (CUDA) only

compiles csrc/ into modules of the package (torch must already be installed). Without a flag nothing
is compiled at install time and each extension is built on first use instead (or now, with
``python -m pdr.render.build``, which builds both). The CUDA module is built for the GPU architectures of
``$TORCH_CUDA_ARCH_LIST``, by default Volta to Hopper with Hopper's PTX (``pdr.render._cuda.arch_list``),
whether or not a GPU is visible, and records them (``pdr._C.cuda_archs``) with the digest of its sources.
"""
import os

from setuptools import setup

ext_modules, cmdclass = [], {}
everything = os.environ.get("PDR_BUILD_EXTENSIONS") == "1"
if everything or os.environ.get("PDR_BUILD_CPU") == "1" or os.environ.get("PDR_BUILD_CUDA") == "1":
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    from pdr.render import _cpu, _cuda, _extension

    if everything or os.environ.get("PDR_BUILD_CPU") == "1":
        ext_modules.append(CppExtension(
            name="pdr._C_cpu",
            sources=[f"csrc/{name}" for name in _cpu.SOURCES],
            # a Python module whose import registers the operators, and which records what it was built from
            define_macros=[("PREDGSPLAT_PYTHON_MODULE", None),
                           ("PREDGSPLAT_SOURCES_DIGEST", f'"{_extension.sources_digest(_cpu.FILES)}"')],
            extra_compile_args=_cpu.compile_flags(),
        ))
    if os.environ.get("PDR_BUILD_CUDA") == "1" or (everything and _cuda.why_unbuildable() is None):
        archs = os.environ["TORCH_CUDA_ARCH_LIST"] = _cuda.arch_list()  # torch's helper reads it
        ext_modules.append(CUDAExtension(
            name="pdr._C",
            sources=[f"csrc/{name}" for name in _cuda.SOURCES],
            define_macros=[("PREDGSPLAT_SOURCES_DIGEST", f'"{_extension.sources_digest(_cuda.FILES)}"'),
                           ("PREDGSPLAT_CUDA_ARCHS", f'"{archs}"')],
            extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3", "-lineinfo"]},
        ))
    cmdclass = {"build_ext": BuildExtension}

setup(ext_modules=ext_modules, cmdclass=cmdclass)
