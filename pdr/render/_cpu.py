"""The ``cpu`` backend: the C++ kernels of ``csrc/predgsplat_cpu.cpp`` (OpenMP, vectorised rows).

Built on first use with only a C++ compiler and ninja (no CUDA toolkit), into
``build_directory("pdr_predgsplat_cpu")``, or ahead of time as ``pdr._C_cpu`` (``setup.py``).
"""
from __future__ import annotations

import shutil
import sys

import torch
from torch import Tensor

from ._extension import CompiledRasterize, build, cached_status, import_ahead_of_time

EXTENSION_NAME = "pdr_predgsplat_cpu"
SOURCES = ("predgsplat_cpu.cpp",)
_status: tuple[bool, str] | None = None
_module = None


def compile_flags() -> list[str]:
    """-O3; OpenMP where torch parallelises with it (at::parallel_for needs it to run in parallel);
    -fno-trapping-math lets the compiler vectorise loops with comparisons (results are unchanged)."""
    openmp = torch.backends.openmp.is_available() and sys.platform.startswith("linux")
    return ["-O3", "-fno-trapping-math", "-fopenmp" if openmp else "-fopenmp-simd"]


def why_unbuildable() -> str | None:
    """A reason the extension cannot be compiled here, or None."""
    from torch.utils import cpp_extension

    compiler = cpp_extension.get_cxx_compiler() if hasattr(cpp_extension, "get_cxx_compiler") else "c++"
    if shutil.which(compiler) is None:
        return f"no C++ compiler ({compiler}) was found (install g++ or set CXX)"
    if shutil.which("ninja") is None:
        return "ninja was not found (pip install ninja)"
    return None


def load_extension(verbose: bool = False):
    """Build (if needed) and import the extension; RuntimeError with the compiler's message on failure."""
    global _module
    if _module is None:
        _module = import_ahead_of_time("pdr._C_cpu", SOURCES)
    if _module is None:
        reason = why_unbuildable()
        if reason:
            raise RuntimeError(reason)
        flags = compile_flags()
        _module = build(EXTENSION_NAME, SOURCES, verbose, "CPU rasterizer", extra_cflags=flags,
                        extra_ldflags=[f for f in flags if f == "-fopenmp"])
    return _module


def extension_status() -> tuple[bool, str]:
    """(True, "") when the extension is built or builds now; else (False, why). Tried once per process."""
    return cached_status(sys.modules[__name__])


def rasterize_cpu(means: Tensor, scales: Tensor, rotations: Tensor, amplitudes: Tensor, height: int, width: int,
                  kernel_size: int | None) -> Tensor:
    """Flattened, validated CPU inputs (F, N, ...) of one dtype, float32 or float64 -> (F, C, H, W) in it."""
    inputs = [t.contiguous() for t in (means, scales, rotations, amplitudes)]
    return CompiledRasterize.apply(load_extension(), *inputs, height, width, kernel_size)
