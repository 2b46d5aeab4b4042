"""Building and loading the compiled rasterizers (``csrc/``), shared by the ``cpu`` and ``cuda`` backends.

Each extension is built on first use with ``torch.utils.cpp_extension`` (ninja) into its own folder
under ``$PDR_EXTENSIONS_DIR`` or ``~/.cache/pdr/torch_extensions/<torch>_<cuda>/``, or ahead of time
into the package (``pdr._C`` for CUDA, ``pdr._C_cpu`` for the CPU; see ``setup.py``). The CPU library
is kept by the content of its sources (``load_library``): every process, checkout or installed copy
with the same sources loads the one built first, without asking the compiler or ninja again.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import warnings
from pathlib import Path
from typing import Callable

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
    """The module built by ``setup.py`` (e.g. ``pdr._C``), or None; warns when it was built from other sources
    than those in ``source_directory()``: by their digest when the module records it (``sources_digest``,
    ``pdr._C_cpu``), else when a source is newer than the module."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    src = source_directory()
    present = [name for name in (*sources, *HEADERS) if (src / name).is_file()]
    recorded = getattr(module, "sources_digest", None)
    if recorded is not None:
        complete = len(present) == len(sources) + len(HEADERS)
        changed = present if complete and recorded != sources_digest(sources) else []
        problem = f"was built from other sources than {', '.join(changed)} in {src}"
    else:
        built = Path(module.__file__).stat().st_mtime
        changed = [name for name in present if (src / name).stat().st_mtime > built]
        problem = f"is older than {', '.join(changed)} in {src}: it was built from other sources"
    if changed:
        warnings.warn(
            f"{module_name} ({module.__file__}) {problem}. Rebuild it (pip install --no-build-isolation .) or "
            "delete it to build on first use.",
            RuntimeWarning,
            stacklevel=3,
        )
    return module


def build(name: str, sources: tuple[str, ...], verbose: bool, what: str, folder: Path | None = None, **kwargs):
    """``cpp_extension.load`` into ``folder`` (default: ``build_directory(name)``); RuntimeError with the
    compiler's last lines."""
    from torch.utils import cpp_extension

    folder = folder or build_directory(name)
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


def sources_digest(sources: tuple[str, ...]) -> str:
    """A digest of the content of ``sources`` and of the shared header, in ``source_directory()``."""
    digest = hashlib.sha256()
    src = source_directory()
    for name in (*sources, *HEADERS):
        digest.update(name.encode() + b"\0" + (src / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def content_key(sources: tuple[str, ...], build_arguments) -> str:
    """The sources' digest, the build arguments and torch's version, in one digest."""
    key = f"{sources_digest(sources)} {torch.__version__} {build_arguments!r}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _completed_build(folder: Path) -> Path | None:
    """The library a finished build left in ``folder`` (its name is in the stamp file), or None."""
    stamp = folder / "complete"
    library = folder / stamp.read_text().strip() if stamp.is_file() else None
    return library if library is not None and library.is_file() else None


def load_library(name: str, sources: tuple[str, ...], verbose: bool, what: str,
                 why_unbuildable: Callable[[], str | None], **kwargs) -> Path:
    """Load the operator library built from ``sources`` (``torch.ops.load_library``), building it first when
    no build of the same content is cached; returns its path. RuntimeError with ``why_unbuildable()`` or the
    compiler's last lines.

    The cache folder is ``build_directory(name) / content_key(...)``: the source folder's path plays no part,
    so that a checkout and an installed copy, or several processes at once, share one build. A stamp file,
    written once the build has finished, marks it as complete; a cached build is loaded without importing
    ``cpp_extension`` or running ninja.
    """
    folder = build_directory(name) / content_key(sources, sorted(kwargs.items()))
    library = _completed_build(folder)
    if library is None:
        reason = why_unbuildable()
        if reason:
            raise RuntimeError(reason)
        from filelock import FileLock  # a dependency of torch

        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(folder / "pdr.lock"):  # cpp_extension holds its own "lock" inside
            library = _completed_build(folder)
            if library is None:
                library = Path(build(name, sources, verbose, what, folder, is_python_module=False, **kwargs))
                (folder / "complete").write_text(f"{library.name}\n")
    try:
        torch.ops.load_library(str(library))
    except OSError as exc:
        raise RuntimeError(f"loading the {what} {library} failed: {exc}. Delete {folder} to build it again.") from exc
    return library


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
