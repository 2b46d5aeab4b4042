"""The ``cuda`` backend: the kernels of ``csrc/predgsplat.cu`` behind a thin autograd wrapper.

Built on first use with ``torch.utils.cpp_extension`` (ninja, nvcc) into
``build_directory("pdr_predgsplat")``, or ahead of time as ``pdr._C`` (``setup.py``).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

import torch
from torch import Tensor

from ._extension import CompiledRasterize, build, cached_status, import_ahead_of_time

EXTENSION_NAME = "pdr_predgsplat"
SOURCES = ("predgsplat.cu", "bindings.cpp")
DEFAULT_ARCHS = "8.0;8.6;9.0+PTX"  # A100, RTX 30xx/A10/A40, H100/H200 (+PTX for newer GPUs)
_status: tuple[bool, str] | None = None
_module = None


def _is_toolkit(path) -> bool:
    root = Path(path)
    has_runtime = any((root / lib / "libcudart.so").exists() for lib in ("lib64", "lib"))
    return (root / "bin" / "nvcc").is_file() and has_runtime


def find_cuda_home() -> Path | None:
    """The CUDA toolkit to build with: $CUDA_HOME/$CUDA_PATH, /usr/local/cuda, or torch's guess.

    torch guesses from the location of ``nvcc`` on PATH, which is wrong when that is a wrapper
    script (e.g. /usr/local/bin/nvcc -> /usr/local/cuda-X/bin/nvcc): the runtime library is not there.
    """
    from torch.utils import cpp_extension

    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda", cpp_extension.CUDA_HOME]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(nvcc).resolve().parents[1]))
    for candidate in candidates:
        if candidate and _is_toolkit(candidate):
            return Path(candidate)
    return None


def why_unbuildable() -> str | None:
    """A reason the extension cannot be compiled here, or None."""
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build"
    if find_cuda_home() is None:
        return "no CUDA toolkit with nvcc and libcudart was found (install it and set CUDA_HOME)"
    if shutil.which("ninja") is None:
        return "ninja was not found (pip install ninja)"
    return None


@contextlib.contextmanager
def _arch_list(archs: str | None):
    """Without a visible GPU torch cannot guess the architectures: give it a default list."""
    old = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if archs:
        os.environ["TORCH_CUDA_ARCH_LIST"] = archs
    elif old is None and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCHS
    try:
        yield os.environ.get("TORCH_CUDA_ARCH_LIST", "(detected from the GPU)")
    finally:
        if old is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = old


def load_extension(verbose: bool = False, archs: str | None = None):
    """Build (if needed) and import the extension; RuntimeError with the compiler's message on failure."""
    global _module
    if _module is None:
        _module = import_ahead_of_time("pdr._C", SOURCES)
    if _module is None:
        reason = why_unbuildable()
        if reason:
            raise RuntimeError(reason)
        from torch.utils import cpp_extension

        cpp_extension.CUDA_HOME = str(find_cuda_home())  # used by load() for nvcc, includes and -lcudart
        with _arch_list(archs):
            _module = build(EXTENSION_NAME, SOURCES, verbose, "CUDA rasterizer", extra_cflags=["-O3"],
                            extra_cuda_cflags=["-O3", "-lineinfo"])
    return _module


def extension_status() -> tuple[bool, str]:
    """(True, "") when the extension is built or builds now; else (False, why). Tried once per process."""
    return cached_status(sys.modules[__name__])


def rasterize_cuda(means: Tensor, scales: Tensor, rotations: Tensor, amplitudes: Tensor, height: int, width: int,
                   kernel_size: int | None) -> Tensor:
    """Flattened, validated inputs (F, N, ...) on one CUDA device -> (F, C, H, W) in the amplitudes' dtype.

    Computed in float32 whatever the input dtype.
    """
    dtype = amplitudes.dtype
    inputs = [t.float().contiguous() for t in (means, scales, rotations, amplitudes)]
    return CompiledRasterize.apply(load_extension(), *inputs, height, width, kernel_size).to(dtype)
