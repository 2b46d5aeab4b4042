"""The ``cuda_emulated`` backend: the CUDA kernels of ``csrc/predgsplat_kernels.cuh`` and their launch
sequence, compiled by the host C++ compiler with the CUDA emulator of ``csrc/emu/cuda_emu.h`` and run on
the CPU, one fiber per GPU thread (docs/renderer-emulator.md).

It is slow (thousands of times slower than the ``cpu`` backend) and exists so that machines without a GPU
execute the GPU's code: the tests compare it with the torch backend. ``schedule()`` picks the order in which
launches run their blocks and threads; ``counters()`` says what the kernels did (shuffles, atomics, exps).
Built on first use like the ``cpu`` backend (a C++ compiler and ninja, no CUDA toolkit) into
``build_directory("pdr_predgsplat_emulated")/<content key>``.
"""
from __future__ import annotations

import contextlib
import platform
import sys
from pathlib import Path

import torch
from torch import Tensor

from . import _cpu
from ._extension import CompiledRasterize, Kernels, cached_status, load_library

EXTENSION_NAME = "pdr_predgsplat_emulated"
SOURCES = ("predgsplat_emulated.cpp",)
FILES = (*SOURCES, "predgsplat_kernels.cuh", "predgsplat_math.h", "emu/cuda_emu.h")
ORDERS = ("forward", "reversed", "shuffled")
WARPS = ("interleaved", "greedy")
COUNTERS = ("launches", "blocks", "threads", "barriers", "warp_shuffles", "warp_votes", "atomics", "expf",
            "global_load_bytes", "global_store_bytes")
_status: tuple[bool, str] | None = None
_module = None
_schedule = ("forward", "forward", 0, "interleaved")


def _has_fma() -> bool:
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.is_file() and " fma " in cpuinfo.read_text().replace("\n", " ")


def compile_flags() -> list[str]:
    """-ffp-contract=fast (with -mfma where an x86-64 processor has it): multiply-adds are fused as nvcc fuses
    them in device code, so that code that must not be fused (``pixel_coordinate``) is shown to be protected;
    -fvisibility=hidden keeps the kernels' statics (their ``__shared__`` variables) private to the library."""
    flags = ["-O2", "-ffp-contract=fast", "-fvisibility=hidden", "-Wno-unknown-pragmas"]
    if platform.machine() in ("x86_64", "AMD64") and _has_fma():
        flags.append("-mfma")
    return flags


def fuses_multiply_add() -> bool:
    """Whether the build contracts ``a * b + c`` into fused multiply-adds, as nvcc does in device code."""
    return "-mfma" in compile_flags() or platform.machine() in ("aarch64", "arm64")


def why_unbuildable() -> str | None:
    """A reason the extension cannot be compiled here, or None."""
    if not sys.platform.startswith("linux"):
        return f"the CUDA emulator runs on Linux only (this is {sys.platform})"
    return _cpu.why_unbuildable()


def load_extension(verbose: bool = False) -> Kernels:
    """Build (if needed) and load the extension: its ``Kernels``. RuntimeError with the compiler's message on
    failure."""
    global _module
    if _module is None:
        path = load_library(EXTENSION_NAME, SOURCES, FILES, verbose, "emulated CUDA rasterizer", why_unbuildable,
                            extra_cflags=compile_flags())
        ops = torch.ops.pdr_predgsplat_emulated
        _module = Kernels(ops.forward, ops.backward, str(path), "emulated CUDA rasterizer",
                          deterministic_backward=False)  # the CUDA backward's atomics, as on a GPU
    return _module


def extension_status() -> tuple[bool, str]:
    """(True, "") when the extension is built or builds now; else (False, why). Tried once per process."""
    return cached_status(sys.modules[__name__])


@contextlib.contextmanager
def schedule(blocks: str = "forward", threads: str = "forward", seed: int = 0, warps: str = "interleaved"):
    """Within the block, launches run their blocks, and each block its threads, in the order given: "forward",
    "reversed" or "shuffled" (threads: shuffled anew at each round; from ``seed``). ``warps``: "interleaved",
    every thread runs to its next barrier or warp collective in each round; "greedy", one warp at a time runs
    as far as it can, in the order of its threads, as when some warps are much faster than others."""
    for name, value, allowed in (("blocks", blocks, ORDERS), ("threads", threads, ORDERS), ("warps", warps, WARPS)):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    load_extension()
    previous = _schedule
    _set_schedule(blocks, threads, seed, warps)
    try:
        yield
    finally:
        _set_schedule(*previous)


def _set_schedule(blocks: str, threads: str, seed: int, warps: str) -> None:
    global _schedule
    torch.ops.pdr_predgsplat_emulated.set_schedule(ORDERS.index(blocks), ORDERS.index(threads), seed,
                                                   warps == "greedy")
    _schedule = (blocks, threads, seed, warps)


def counters() -> dict[str, int]:
    """What the emulated kernels did since ``reset_counters()``: launches, blocks, threads, barriers completed
    (per block), warp shuffles and votes (ballot/any/all; per warp instruction), atomics and ``__expf`` calls
    (per thread), bytes read from and written to global memory (per thread, through ``__ldg`` and ``__stwb``)."""
    load_extension()
    values = torch.ops.pdr_predgsplat_emulated.counters(torch.empty(0)).tolist()
    return dict(zip(COUNTERS, values))


def reset_counters() -> None:
    load_extension()
    torch.ops.pdr_predgsplat_emulated.reset_counters()


def rasterize_emulated(means: Tensor, scales: Tensor, rotations: Tensor, amplitudes: Tensor, height: int, width: int,
                       kernel_size: int | None) -> Tensor:
    """Flattened, validated CPU inputs (F, N, ...) -> (F, C, H, W) in the amplitudes' dtype, computed in float32
    by the CUDA kernels on the emulator."""
    dtype = amplitudes.dtype
    inputs = [t.float().contiguous() for t in (means, scales, rotations, amplitudes)]
    return CompiledRasterize.apply(load_extension(), *inputs, height, width, kernel_size).to(dtype)
