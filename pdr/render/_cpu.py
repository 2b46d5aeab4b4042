"""The ``cpu`` backend: the C++ kernels of ``csrc/predgsplat_cpu.cpp`` (torch's threads, vectorised rows).

Built on first use with only a C++ compiler and ninja (no CUDA toolkit), into
``build_directory("pdr_predgsplat_cpu")/<content key>`` (``_extension.load_library``), or ahead of time
as ``pdr._C_cpu`` (``setup.py``). Either one registers the operators ``torch.ops.pdr_predgsplat_cpu``.
"""
from __future__ import annotations

import shutil
import sys

import torch
from torch import Tensor

from ._extension import CompiledRasterize, Kernels, cached_status, import_ahead_of_time, load_library

EXTENSION_NAME = "pdr_predgsplat_cpu"
SOURCES = ("predgsplat_cpu.cpp",)
FILES = (*SOURCES, "predgsplat_math.h")  # what the build is made of: sources and headers
MINIMUM_TORCH = (2, 10)  # torch's stable C++ API with parallel_for (csrc/predgsplat_cpu.cpp)
_status: tuple[bool, str] | None = None
_module = None


def compile_flags() -> list[str]:
    """-O3; -fopenmp-simd for the ``omp simd`` loops (the threads are torch's, through its parallel_for, so
    no OpenMP runtime is linked); -fno-trapping-math lets the compiler vectorise loops with comparisons
    (results are unchanged)."""
    return ["-O3", "-fno-trapping-math", "-fopenmp-simd"]


def why_unbuildable() -> str | None:
    """A reason the extension cannot be compiled here, or None."""
    from torch.utils import cpp_extension

    version = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
    if version < MINIMUM_TORCH:
        return f"it needs torch >= {'.'.join(map(str, MINIMUM_TORCH))} (this is {torch.__version__})"

    compiler = cpp_extension.get_cxx_compiler() if hasattr(cpp_extension, "get_cxx_compiler") else "c++"
    if shutil.which(compiler) is None:
        return f"no C++ compiler ({compiler}) was found (install g++ or set CXX)"
    if shutil.which("ninja") is None:
        return "ninja was not found (pip install ninja)"
    return None


def load_extension(verbose: bool = False) -> Kernels:
    """Build (if needed) and load the extension: its ``Kernels``. RuntimeError with the compiler's message on
    failure."""
    global _module
    if _module is None:
        built = import_ahead_of_time("pdr._C_cpu", FILES)  # importing it registers the operators
        if built is not None:
            path = built.__file__
        else:
            path = load_library(EXTENSION_NAME, SOURCES, FILES, verbose, "CPU rasterizer", why_unbuildable,
                                extra_cflags=compile_flags())
        try:
            ops = torch.ops.pdr_predgsplat_cpu
            _module = Kernels(ops.forward, ops.backward, str(path), "CPU rasterizer", deterministic_backward=True)
        except (AttributeError, RuntimeError) as exc:  # e.g. a pdr._C_cpu built from older sources
            raise RuntimeError(f"{path} does not register the operators torch.ops.pdr_predgsplat_cpu: rebuild it "
                               "(pip install --no-build-isolation .) or delete it to build on first use") from exc
    return _module


def extension_status() -> tuple[bool, str]:
    """(True, "") when the extension is built or builds now; else (False, why). Tried once per process."""
    return cached_status(sys.modules[__name__])


def rasterize_cpu(means: Tensor, scales: Tensor, rotations: Tensor, amplitudes: Tensor, height: int, width: int,
                  kernel_size: int | None) -> Tensor:
    """Flattened, validated CPU inputs (F, N, ...) of one dtype, float32 or float64 -> (F, C, H, W) in it."""
    inputs = [t.contiguous() for t in (means, scales, rotations, amplitudes)]
    return CompiledRasterize.apply(load_extension(), *inputs, height, width, kernel_size)
