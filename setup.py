"""Metadata lives in pyproject.toml. This file only adds the optional ahead-of-time CUDA build:

    PDR_BUILD_CUDA=1 pip install --no-build-isolation .

compiles csrc/ into the module ``pdr._C`` (torch must already be installed). Without the flag
nothing is compiled at install time and the extension is built on first use instead.
"""
import os

from setuptools import setup

ext_modules, cmdclass = [], {}
if os.environ.get("PDR_BUILD_CUDA") == "1":
    from torch.utils.cpp_extension import BuildExtension, CUDAExtension

    ext_modules = [
        CUDAExtension(
            name="pdr._C",
            sources=["csrc/predgsplat.cu", "csrc/bindings.cpp"],
            extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3", "-lineinfo"]},
        )
    ]
    cmdclass = {"build_ext": BuildExtension}

setup(ext_modules=ext_modules, cmdclass=cmdclass)
