"""Building and loading the compiled rasterizers (``csrc/``), shared by the ``cpu``, ``cuda`` and
``cuda_emulated`` backends.

Each extension is built on first use with ``torch.utils.cpp_extension`` (ninja) into its own folder
under ``$PDR_EXTENSIONS_DIR`` or ``~/.cache/pdr/torch_extensions/<torch>_<cuda>/``, or ahead of time
into the package (``pdr._C`` for CUDA, ``pdr._C_cpu`` for the CPU; see ``setup.py``). A build is kept by
the content of its files and its build arguments (``load_library``, ``load_module``): every process,
checkout or installed copy with the same sources loads the one built first, without asking the compiler
or ninja again.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.autograd.function import once_differentiable

MATH_HEADER = "predgsplat_math.h"  # included by every backend
BUILD_RECORD = "build.json"  # beside a module built on first use: what it was built from and for


def source_directory() -> Path:
    """Where the sources are: installed as package data ``pdr/csrc``, or the checkout's ``csrc/``."""
    installed = Path(__file__).resolve().parents[1] / "csrc"
    if (installed / MATH_HEADER).is_file():
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


def staleness(module, files: tuple[str, ...]) -> str | None:
    """Why ``module`` (built ahead of time) was built from other sources than ``files`` in
    ``source_directory()``, or None: by their digest when the module records it (``sources_digest``), else
    when a file is newer than the module."""
    src = source_directory()
    present = [name for name in files if (src / name).is_file()]
    recorded = getattr(module, "sources_digest", None)
    if recorded is not None:
        changed = present if len(present) == len(files) and recorded != sources_digest(files) else []
        problem = f"was built from other sources than {', '.join(changed)} in {src}"
    else:
        built = Path(module.__file__).stat().st_mtime
        changed = [name for name in present if (src / name).stat().st_mtime > built]
        problem = f"is older than {', '.join(changed)} in {src}: it was built from other sources"
    return problem if changed else None


def import_ahead_of_time(module_name: str, files: tuple[str, ...]):
    """The module built by ``setup.py`` (e.g. ``pdr._C``) from ``files`` (sources and headers), or None; warns
    when it was built from other sources (``staleness``)."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    problem = staleness(module, files)
    if problem:
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


def sources_digest(files: tuple[str, ...]) -> str:
    """A digest of the content of ``files`` (an extension's sources and headers) in ``source_directory()``."""
    digest = hashlib.sha256()
    src = source_directory()
    for name in files:
        digest.update(name.encode() + b"\0" + (src / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def content_key(files: tuple[str, ...], build_arguments) -> str:
    """The files' digest, the build arguments and torch's version, in one digest."""
    key = f"{sources_digest(files)} {torch.__version__} {build_arguments!r}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _completed_build(folder: Path) -> Path | None:
    """The library a finished build left in ``folder`` (its name is in the stamp file), or None."""
    stamp = folder / "complete"
    library = folder / stamp.read_text().strip() if stamp.is_file() else None
    return library if library is not None and library.is_file() else None


def _keyed_build(folder: Path, why_unbuildable: Callable[[], str | None], build_into: Callable[[], Path]) -> Path:
    """The library of the finished build in ``folder``, or ``build_into()``'s after building it there under a
    lock (concurrent first uses wait for one build). A stamp file, written once the build has finished, marks it
    as complete."""
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
                library = build_into()
                (folder / "complete").write_text(f"{library.name}\n")
    return library


def load_library(name: str, sources: tuple[str, ...], files: tuple[str, ...], verbose: bool, what: str,
                 why_unbuildable: Callable[[], str | None], **kwargs) -> Path:
    """Load the operator library built from ``sources`` (``torch.ops.load_library``), building it first when
    no build of the same content (``files``: sources and headers) is cached; returns its path. RuntimeError
    with ``why_unbuildable()`` or the compiler's last lines.

    The cache folder is ``build_directory(name) / content_key(...)``: the source folder's path plays no part,
    so that a checkout and an installed copy, or several processes at once, share one build. A cached build is
    loaded without importing ``cpp_extension`` or running ninja.
    """
    folder = build_directory(name) / content_key(files, sorted(kwargs.items()))
    library = _keyed_build(folder, why_unbuildable, lambda: Path(
        build(name, sources, verbose, what, folder, is_python_module=False, **kwargs)))
    try:
        torch.ops.load_library(str(library))
    except OSError as exc:
        raise RuntimeError(f"loading the {what} {library} failed: {exc}. Delete {folder} to build it again.") from exc
    return library


def load_module(name: str, sources: tuple[str, ...], files: tuple[str, ...], verbose: bool, what: str,
                why_unbuildable: Callable[[], str | None], record: dict, **kwargs):
    """Import the Python extension module built from ``sources``, building it first, like ``load_library``, in a
    folder kept by the content of ``files``, the build arguments and ``record``. ``record`` (what the build is
    for, e.g. its GPU architectures) is written beside the module as ``BUILD_RECORD``, with the sources'
    digest; ``read_build_record(module)`` reads it back."""
    folder = build_directory(name) / content_key(files, [*sorted(kwargs.items()), *sorted(record.items())])
    built = []

    def build_into() -> Path:
        built.append(build(name, sources, verbose, what, folder, **kwargs))
        (folder / BUILD_RECORD).write_text(json.dumps({"sources_digest": sources_digest(files), **record}, indent=1))
        return Path(built[0].__file__)

    library = _keyed_build(folder, why_unbuildable, build_into)
    if built:
        return built[0]
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(library):
        return sys.modules[name]
    try:
        spec = importlib.util.spec_from_file_location(name, library)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except ImportError as exc:
        raise RuntimeError(f"loading the {what} {library} failed: {exc}. Delete {folder} to build it again.") from exc
    sys.modules[name] = module
    return module


def read_build_record(module) -> dict:
    """What a module was built from and for: the ``BUILD_RECORD`` beside it (built on first use), or the
    attributes ``sources_digest`` and ``cuda_archs`` it records (built ahead of time); {} when neither."""
    record = Path(module.__file__).parent / BUILD_RECORD
    if record.is_file():
        return json.loads(record.read_text())
    return {key: getattr(module, key) for key in ("sources_digest", "cuda_archs") if hasattr(module, key)}


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


@dataclass(frozen=True)
class Kernels:
    """The entry points of a compiled backend, ``forward(means, scales, rotations, amplitudes, height, width,
    kernel_size)`` and ``backward(means, scales, rotations, amplitudes, grad_out, kernel_size, need_amplitudes)``
    (kernel_size 0: every pixel), the file they come from, and whether the backward gives the same bits in every
    run (not when it adds with atomics in a varying order)."""

    forward: Callable
    backward: Callable
    file: str
    name: str
    deterministic_backward: bool


def alert_not_deterministic(what: str) -> None:
    """Under ``torch.use_deterministic_algorithms(True)``, raise RuntimeError (with ``warn_only=True``: warn) as
    torch's own non-deterministic operations do."""
    if not torch.are_deterministic_algorithms_enabled():
        return
    message = (f"{what} does not have a deterministic implementation, but you set "
               "'torch.use_deterministic_algorithms(True)'")
    if torch.is_deterministic_algorithms_warn_only_enabled():
        warnings.warn(f"{message}, warn_only=True.", UserWarning, stacklevel=3)
    else:
        raise RuntimeError(f"{message}. Use rasterize_gaussians(..., backend='torch') (deterministic on every device), "
                           "or 'warn_only=True' if run-to-run differences in the last bits are acceptable.")


class CompiledRasterize(torch.autograd.Function):
    """Autograd of a compiled backend's ``Kernels`` (the ``cpu``, ``cuda`` and ``cuda_emulated`` backends).

    Inputs are contiguous, of one dtype the extension supports, flattened to frames (F, N, ...).
    The backward is computed by the extension, not by autograd: it cannot be differentiated again.
    """

    @staticmethod
    def forward(ctx, kernels: Kernels, means, scales, rotations, amplitudes, height, width, kernel_size):
        k = 0 if kernel_size is None else kernel_size
        ctx.save_for_backward(means, scales, rotations, amplitudes)
        ctx.kernels, ctx.kernel_size = kernels, k
        return kernels.forward(means, scales, rotations, amplitudes, height, width, k)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        if not ctx.kernels.deterministic_backward:
            alert_not_deterministic(f"the backward of the {ctx.kernels.name} (atomicAdd)")
        means, scales, rotations, amplitudes = ctx.saved_tensors
        grads = ctx.kernels.backward(means, scales, rotations, amplitudes, grad_out.contiguous().to(means.dtype),
                                     ctx.kernel_size, ctx.needs_input_grad[4])
        return (None, *(g if need else None for g, need in zip(grads, ctx.needs_input_grad[1:5])), None, None, None)
