"""The ``cuda`` backend: the kernels of ``csrc/predgsplat.cu`` behind a thin autograd wrapper.

Built on first use with ``torch.utils.cpp_extension`` (ninja, nvcc) into
``build_directory("pdr_predgsplat")/<content key>`` with a record of its sources and architectures, or ahead
of time as ``pdr._C`` (``setup.py``), which records them as attributes. Before a module is used on a GPU it
must pass its self-test there (``device_status``, ``pdr.render.selftest``): available means "its kernels ran
on this GPU and agreed with the torch backend", not merely "it imports".
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from torch import Tensor

from . import selftest
from ._extension import (
    CompiledRasterize,
    Kernels,
    build_directory,
    cached_status,
    import_ahead_of_time,
    read_build_record,
    sources_digest,
)
from ._extension import load_module as build_or_load_module

EXTENSION_NAME = "pdr_predgsplat"
SOURCES = ("predgsplat.cu", "bindings.cpp")
FILES = (*SOURCES, "predgsplat_kernels.cuh", "predgsplat_math.h")  # what the build is made of
# Volta, Turing, Ampere (A100; RTX 30xx, A10, A40), Ada, Hopper, and Hopper's PTX for newer GPUs; those the
# toolkit's nvcc no longer compiles for (CUDA 13 dropped Volta) are left out.
DEFAULT_ARCHS = "7.0;7.5;8.0;8.6;8.9;9.0+PTX"
_status: tuple[bool, str] | None = None
_module: Kernels | None = None
_raw_module = None
_verdicts: dict[int, selftest.SelfTest] = {}


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


@functools.lru_cache(maxsize=None)
def nvcc_version() -> str | None:
    """nvcc's release (e.g. "13.0") in the toolkit ``find_cuda_home()``, or None."""
    home = find_cuda_home()
    if home is None:
        return None
    try:
        out = subprocess.run([str(home / "bin" / "nvcc"), "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"release (\d+\.\d+)", out.stdout)
    return found.group(1) if found else None


@functools.lru_cache(maxsize=None)
def toolkit_archs() -> frozenset[str] | None:
    """The architectures ("7.5", "9.0", ...) the toolkit's nvcc compiles for, or None when it cannot say."""
    home = find_cuda_home()
    if home is None:
        return None
    try:
        out = subprocess.run([str(home / "bin" / "nvcc"), "--list-gpu-arch"], capture_output=True, text=True,
                             timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    found = frozenset(f"{int(num) // 10}.{int(num) % 10}" for num in re.findall(r"compute_(\d+)", out.stdout))
    return found or None


def arch_list(requested: str | None = None, supported: set[str] | None = None) -> str:
    """The GPU architectures to build for (``TORCH_CUDA_ARCH_LIST`` syntax): ``requested`` (``--arch``), else
    ``$TORCH_CUDA_ARCH_LIST``, else ``DEFAULT_ARCHS`` without the architectures ``supported`` (default: the
    toolkit's) lacks. Never the visible GPU's alone: a module built on one machine runs on the others."""
    chosen = requested or os.environ.get("TORCH_CUDA_ARCH_LIST")
    if chosen:
        return chosen
    supported = toolkit_archs() if supported is None else supported
    archs = DEFAULT_ARCHS.split(";")
    if supported:
        kept = [arch for arch in archs if arch.split("+")[0] in supported]
        archs = kept or archs
    return ";".join(archs)


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
def _arch_environment(archs: str):
    """TORCH_CUDA_ARCH_LIST for torch's build helper (which fails without it when no GPU is visible)."""
    old = os.environ.get("TORCH_CUDA_ARCH_LIST")
    os.environ["TORCH_CUDA_ARCH_LIST"] = archs
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = old


def load_module(verbose: bool = False, archs: str | None = None):
    """The compiled module (``forward``, ``backward``, ``exp_throughput``): ``pdr._C`` when installed, else
    built on first use for ``arch_list(archs)``. RuntimeError with the compiler's message on failure."""
    global _raw_module
    if _raw_module is None:
        _raw_module = import_ahead_of_time("pdr._C", FILES)
    if _raw_module is None:
        reason = why_unbuildable()
        if reason:
            raise RuntimeError(reason)
        from torch.utils import cpp_extension

        cpp_extension.CUDA_HOME = str(find_cuda_home())  # used by load() for nvcc, includes and -lcudart
        chosen = arch_list(archs)
        with _arch_environment(chosen):
            _raw_module = build_or_load_module(EXTENSION_NAME, SOURCES, FILES, verbose, "CUDA rasterizer",
                                               why_unbuildable, record={"cuda_archs": chosen, "nvcc": nvcc_version()},
                                               extra_cflags=["-O3"], extra_cuda_cflags=["-O3", "-lineinfo"])
    return _raw_module


def load_extension(verbose: bool = False, archs: str | None = None) -> Kernels:
    """The module's ``Kernels`` (see ``load_module``)."""
    global _module
    if _module is None:
        module = load_module(verbose, archs)
        _module = Kernels(module.forward, module.backward, module.__file__, "CUDA rasterizer",
                          deterministic_backward=False)  # atomics add in a varying order
    return _module


def extension_status() -> tuple[bool, str]:
    """(True, "") when the extension is built or builds now; else (False, why). Tried once per process."""
    return cached_status(sys.modules[__name__])


def module_description() -> dict:
    """What the loaded module is: file, how it was built (ahead of time or on first use), the digest of its
    sources and its architectures as recorded, and whether the sources have changed since."""
    module = load_module()
    record = read_build_record(module)
    ahead = module.__name__ == "pdr._C"
    current = sources_digest(FILES)
    recorded = record.get("sources_digest")
    return {
        "file": module.__file__,
        "built": "ahead of time (pdr._C)" if ahead else "on first use",
        "sources_digest": recorded,
        "cuda_archs": record.get("cuda_archs"),
        "stale": recorded is not None and recorded != current,
    }


def driver_version() -> str | None:
    """The CUDA driver's version (e.g. "12.4"), or None without a driver."""
    with contextlib.suppress(OSError, AttributeError):
        version = ctypes.c_int()
        if ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(version)) == 0:
            return f"{version.value // 1000}.{version.value % 1000 // 10}"
    return None


def self_test_key(device: torch.device) -> dict:
    """What a self-test verdict depends on: the module (its sources and architectures), the device, torch, CUDA
    and the driver."""
    described = module_description()
    identity = described["sources_digest"]
    if identity is None:  # a module that records nothing: its file, size and time
        stat = Path(described["file"]).stat()
        identity = f"{described['file']}:{stat.st_size}:{int(stat.st_mtime)}"
    major, minor = torch.cuda.get_device_capability(device)
    return {
        "module": identity,
        "cuda_archs": described["cuda_archs"],
        "device": torch.cuda.get_device_name(device),
        "capability": f"{major}.{minor}",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "driver": driver_version(),
    }


def self_test_folder() -> Path:
    """Where the verdicts are kept: beside the builds."""
    return build_directory(EXTENSION_NAME) / "self-test"


def device_status(device: torch.device) -> tuple[bool, str, bool]:
    """(available, why not, wrong): the module builds or loads, and its self-test on ``device`` passed (run on
    first use there, or cached for this module, device and versions). ``wrong`` says the module ran but its
    results differ from the torch backend's (or it could not run on this GPU)."""
    ok, reason = extension_status()
    if not ok:
        return False, reason, False
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _verdicts:
        cuda_device = torch.device("cuda", index)
        key = self_test_key(cuda_device)
        if torch.cuda.is_current_stream_capturing():
            raise RuntimeError("pdr.render: the first use of the CUDA rasterizer on a GPU runs its self-test, which "
                               "cannot run while a CUDA graph is being captured: call rasterize_gaussians once on "
                               f"{cuda_device} before capturing")
        _verdicts[index] = selftest.verdict(load_extension(), cuda_device, key, self_test_folder())
    result = _verdicts[index]
    if result.passed:
        return True, "", False
    return False, f"{load_extension().file}: {result.summary()}", True


def rasterize_cuda(means: Tensor, scales: Tensor, rotations: Tensor, amplitudes: Tensor, height: int, width: int,
                   kernel_size: int | None) -> Tensor:
    """Flattened, validated inputs (F, N, ...) on one CUDA device -> (F, C, H, W) in the amplitudes' dtype.

    Computed in float32 whatever the input dtype.
    """
    dtype = amplitudes.dtype
    inputs = [t.float().contiguous() for t in (means, scales, rotations, amplitudes)]
    return CompiledRasterize.apply(load_extension(), *inputs, height, width, kernel_size).to(dtype)
