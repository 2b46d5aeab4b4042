"""The ``cuda`` backend: a thin autograd wrapper over the kernels in ``csrc/``.

The extension is built on first use with ``torch.utils.cpp_extension`` (ninja) into
``$PDR_EXTENSIONS_DIR`` or ``~/.cache/pdr/torch_extensions/<torch>_<cuda>``, or ahead of time
by ``PDR_BUILD_CUDA=1 pip install --no-build-isolation .`` (module ``pdr._C``).
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import torch
from torch import Tensor

EXTENSION_NAME = "pdr_predgsplat"
SOURCES = ("predgsplat.cu", "bindings.cpp")
DEFAULT_ARCHS = "8.0;8.6;9.0+PTX"  # A100, RTX 30xx/A10/A40, H100/H200 (+PTX for newer GPUs)
_status: tuple[bool, str] | None = None
_module = None


def source_directory() -> Path:
    """Where the .cu/.cpp sources are: installed as package data ``pdr/csrc``, or the checkout's ``csrc/``."""
    installed = Path(__file__).resolve().parents[1] / "csrc"
    if (installed / SOURCES[0]).is_file():
        return installed
    return Path(__file__).resolve().parents[2] / "csrc"


def build_directory() -> Path:
    if os.environ.get("PDR_EXTENSIONS_DIR"):
        return Path(os.environ["PDR_EXTENSIONS_DIR"])
    tag = f"torch{torch.__version__.split('+')[0]}_cu{torch.version.cuda or 'none'}".replace(".", "")
    return Path.home() / ".cache" / "pdr" / "torch_extensions" / tag


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
    if _module is not None:
        return _module
    try:
        from pdr import _C  # built ahead of time by setup.py

        _module = _C
        return _module
    except ImportError:
        pass
    reason = why_unbuildable()
    if reason:
        raise RuntimeError(reason)
    from torch.utils import cpp_extension

    cpp_extension.CUDA_HOME = str(find_cuda_home())  # used by load() for nvcc, includes and -lcudart
    src = source_directory()
    build = build_directory()
    build.mkdir(parents=True, exist_ok=True)
    with _arch_list(archs):
        try:
            _module = cpp_extension.load(
                name=EXTENSION_NAME,
                sources=[str(src / name) for name in SOURCES],
                build_directory=str(build),
                extra_cflags=["-O3"],
                extra_cuda_cflags=["-O3", "-lineinfo"],
                verbose=verbose,
            )
        except Exception as exc:  # the compiler's output is in the message
            message = str(exc)
            tail = "\n".join(message.strip().splitlines()[-25:])
            raise RuntimeError(f"building the CUDA rasterizer in {build} failed:\n{tail}") from exc
    return _module


def extension_status() -> tuple[bool, str]:
    """(True, "") when the extension is built or builds now; else (False, why). Tried once per process."""
    global _status
    if _status is None:
        try:
            load_extension()
            _status = (True, "")
        except RuntimeError as exc:
            _status = (False, str(exc))
    return _status


class _Rasterize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, scales, rotations, amplitudes, height, width, kernel_size):
        ext = load_extension()
        k = 0 if kernel_size is None else kernel_size
        ctx.save_for_backward(means, scales, rotations, amplitudes)
        ctx.kernel_size = k
        return ext.forward(means, scales, rotations, amplitudes, height, width, k)

    @staticmethod
    def backward(ctx, grad_out):
        means, scales, rotations, amplitudes = ctx.saved_tensors
        ext = load_extension()
        grads = ext.backward(means, scales, rotations, amplitudes, grad_out.contiguous().float(), ctx.kernel_size,
                             ctx.needs_input_grad[3])
        d_means, d_scales, d_rotations, d_amplitudes = grads
        return (
            d_means if ctx.needs_input_grad[0] else None,
            d_scales if ctx.needs_input_grad[1] else None,
            d_rotations if ctx.needs_input_grad[2] else None,
            d_amplitudes if ctx.needs_input_grad[3] else None,
            None, None, None,
        )


def rasterize_cuda(means: Tensor, scales: Tensor, rotations: Tensor, amplitudes: Tensor, height: int, width: int,
                   kernel_size: int | None) -> Tensor:
    """Flattened, validated inputs (F, N, ...) on one CUDA device -> (F, C, H, W) in the amplitudes' dtype.

    Computed in float32 whatever the input dtype.
    """
    dtype = amplitudes.dtype
    inputs = [t.float().contiguous() for t in (means, scales, rotations, amplitudes)]
    return _Rasterize.apply(*inputs, height, width, kernel_size).to(dtype)
