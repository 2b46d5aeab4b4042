"""Building and loading the compiled rasterizers (``csrc/``), shared by the ``cpu`` and ``cuda`` backends.

Each extension is built on first use with ``torch.utils.cpp_extension`` (ninja) into its own folder
under ``$PDR_EXTENSIONS_DIR`` or ``~/.cache/pdr/torch_extensions/<torch>_<cuda>/``, or ahead of time
into the package (``pdr._C`` for CUDA, ``pdr._C_cpu`` for the CPU; see ``setup.py``).
"""
from __future__ import annotations

import importlib
import os
import warnings
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

HEADERS = ("predgsplat_math.h",)


def source_directory() -> Path:
    """Where the sources are: installed as package data ``pdr/csrc``, or the checkout's ``csrc/``."""
    installed = Path(__file__).resolve().parents[1] / "csrc"
    if (installed / HEADERS[0]).is_file():
        return installed
    return Path(__file__).resolve().parents[2] / "csrc"


def build_directory(name: str | None = None) -> Path:
    """The cache folder of all extensions, or of the extension ``name``."""
    if os.environ.get("PDR_EXTENSIONS_DIR"):
        root = Path(os.environ["PDR_EXTENSIONS_DIR"])
    else:
        tag = f"torch{torch.__version__.split('+')[0]}_cu{torch.version.cuda or 'none'}".replace(".", "")
        root = Path.home() / ".cache" / "pdr" / "torch_extensions" / tag
    return root if name is None else root / name


def import_ahead_of_time(module_name: str, sources: tuple[str, ...]):
    """The module built by ``setup.py`` (e.g. ``pdr._C``), or None; warns when a source is newer than it."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    built = Path(module.__file__).stat().st_mtime
    src = source_directory()
    newer = [name for name in (*sources, *HEADERS) if (src / name).is_file() and (src / name).stat().st_mtime > built]
    if newer:
        warnings.warn(
            f"{module_name} ({module.__file__}) is older than {', '.join(newer)} in {src}: it was built from other "
            "sources. Rebuild it (pip install --no-build-isolation .) or delete it to build on first use.",
            RuntimeWarning,
            stacklevel=3,
        )
    return module


def build(name: str, sources: tuple[str, ...], verbose: bool, what: str, **kwargs):
    """``cpp_extension.load`` into ``build_directory(name)``; RuntimeError with the compiler's last lines."""
    from torch.utils import cpp_extension

    folder = build_directory(name)
    folder.mkdir(parents=True, exist_ok=True)
    src = source_directory()
    try:
        return cpp_extension.load(
            name=name,
            sources=[str(src / s) for s in sources],
            build_directory=str(folder),
            verbose=verbose,
            **kwargs,
        )
    except Exception as exc:  # the compiler's output is in the message
        tail = "\n".join(str(exc).strip().splitlines()[-25:])
        raise RuntimeError(f"building the {what} in {folder} failed:\n{tail}") from exc


def cached_status(backend) -> tuple[bool, str]:
    """``(True, "")`` when ``backend.load_extension()`` succeeds, else ``(False, why)``; never raises for a
    failed build. Tried once per process: the answer is kept in ``backend._status``."""
    if backend._status is None:
        try:
            backend.load_extension()
            backend._status = (True, "")
        except RuntimeError as exc:
            backend._status = (False, str(exc))
    return backend._status


class CompiledRasterize(torch.autograd.Function):
    """Autograd of a compiled extension's ``forward``/``backward`` (the ``cpu`` and ``cuda`` backends).

    Inputs are contiguous, of one dtype the extension supports, flattened to frames (F, N, ...).
    The backward is computed by the extension, not by autograd: it cannot be differentiated again.
    """

    @staticmethod
    def forward(ctx, ext, means, scales, rotations, amplitudes, height, width, kernel_size):
        k = 0 if kernel_size is None else kernel_size
        ctx.save_for_backward(means, scales, rotations, amplitudes)
        ctx.ext, ctx.kernel_size = ext, k
        return ext.forward(means, scales, rotations, amplitudes, height, width, k)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        means, scales, rotations, amplitudes = ctx.saved_tensors
        grads = ctx.ext.backward(means, scales, rotations, amplitudes, grad_out.contiguous().to(means.dtype),
                                 ctx.kernel_size, ctx.needs_input_grad[4])
        return (None, *(g if need else None for g, need in zip(grads, ctx.needs_input_grad[1:5])), None, None, None)
