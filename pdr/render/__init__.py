"""Differentiable rasterizer of 2D Gaussians (predgsplat).

One function, several backends that compute the same thing:

* ``"torch"``: plain PyTorch, runs anywhere, the reference the others are tested against;
* ``"cpu"``: the compiled C++ kernels in ``csrc/``, for CPU tensors;
* ``"cuda"``: the compiled CUDA kernels in ``csrc/``, for tensors on a CUDA device, once they have passed
  their self-test on that device (``pdr.render.selftest``);
* ``"cuda_emulated"``: the same CUDA kernels run on the CPU by an emulator, for CPU tensors: slow, for tests
  on machines without a GPU (docs/renderer-emulator.md);
* ``"auto"``: ``"cpu"`` or ``"cuda"`` for tensors on that device when its extension builds (and, on a GPU,
  passes its self-test), otherwise ``"torch"`` (with one warning per device kind that had to fall back, and
  a loud one per GPU whose self-test failed).
"""
from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from ._checks import check_gaussians, check_image_size, check_kernel_size
from ._torch import rasterize_torch

BACKENDS = ("auto", "torch", "cpu", "cuda", "cuda_emulated")
_DEVICE_KIND = {"cpu": "cpu", "cuda": "cuda", "cuda_emulated": "cpu"}  # the tensors each compiled backend takes
_warned_fallback: set[str] = set()
_warned_float64: set[str] = set()


def _compiled_status(name: str, device: torch.device) -> tuple[bool, str, bool]:
    """(available, why not, wrong): ``wrong`` when a CUDA module ran on ``device`` but failed its self-test."""
    from . import _cpu, _cuda, _emulated

    if name == "cuda":
        return _cuda.device_status(device)
    ok, reason = (_cpu if name == "cpu" else _emulated).extension_status()
    return ok, reason, False


def _resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return "torch"
    if backend != "auto":
        kind = _DEVICE_KIND[backend]
        if device.type != kind:
            raise ValueError(f"backend={backend!r} needs tensors on a {kind.upper()} device, got device {device}")
        ok, reason, _ = _compiled_status(backend, device)
        if not ok:
            raise RuntimeError(f"backend={backend!r} is not available: {reason}")
        return backend
    wanted = device.type if device.type in ("cpu", "cuda") else None
    if wanted is None:
        return "torch"
    ok, reason, wrong = _compiled_status(wanted, device)
    if ok:
        return wanted
    if wrong:
        if str(device) not in _warned_fallback:
            _warned_fallback.add(str(device))
            warnings.warn(
                f"\n{'!' * 100}\npdr.render: the CUDA rasterizer GIVES WRONG RESULTS OR CANNOT RUN on {device}, so it "
                f"is not used there: {reason}.\nFalling back to the torch backend (correct, much slower). Run "
                f"`pdr-doctor` for the details, and rebuild (`python -m pdr.render.build --only cuda`) or report it."
                f"\n{'!' * 100}",
                RuntimeWarning,
                stacklevel=3,
            )
        return "torch"
    if wanted not in _warned_fallback:
        _warned_fallback.add(wanted)
        warnings.warn(
            f"pdr.render: the {wanted.upper()} rasterizer is not available ({reason}); falling back to the torch "
            "backend, which is much slower. Run `python -m pdr.render.build` to see the build log.",
            RuntimeWarning,
            stacklevel=3,
        )
    return "torch"


def _warn_float64_once(backend: str) -> None:
    if backend not in _warned_float64:
        _warned_float64.add(backend)
        warnings.warn(
            f"pdr.render: the {backend} backend computes in float32: float64 inputs are rendered with float32 "
            "precision (the result is returned in float64). Use backend='torch' for float64 precision.",
            RuntimeWarning,
            stacklevel=3,
        )


def rasterize_gaussians(
    means: Tensor,
    scales: Tensor,
    rotations: Tensor,
    amplitudes: Tensor,
    height: int,
    width: int,
    kernel_size: int | None = None,
    backend: str = "auto",
) -> Tensor:
    """Render 2D Gaussians into a C-channel image by summation.

    ``out[..., c, i, j] = sum_n a[n, c] * exp(-0.5 * d^T Sigma_n^-1 d)`` with
    ``d = (j - px_n, i - py_n)``, ``Sigma_n = R(theta_n) diag(sx_n^2, sy_n^2) R(theta_n)^T`` and the
    normalized-to-pixel mapping ``px = (mx + 1) * width / 2 - 0.5`` (align_corners=False).

    Args:
        means: (..., N, 2) positions (x, y) in normalized image coordinates, -1 and 1 are the outer edges.
        scales: (..., N, 2) standard deviations along the Gaussian's own axes, in pixels, > 0.
        rotations: (..., N) angles in radians.
        amplitudes: (..., N, C) one value per output channel, C >= 1.
        height, width: size of the output image in pixels.
        kernel_size: odd K <= 2 * max(height, width) + 1: each Gaussian touches only the K x K pixels
            around its rounded center; None: every pixel receives every Gaussian.
        backend: "auto", "torch", "cpu", "cuda" or "cuda_emulated".

    A Gaussian whose mean is not finite (NaN or infinite) draws nothing and receives zero gradients.

    Returns:
        (..., C, height, width), in the dtype of ``amplitudes`` (float16/bfloat16 are computed in float32; so is
        float64 by the ``cuda`` and ``cuda_emulated`` backends, with a warning).
    """
    lead = check_gaussians(means, scales, rotations, amplitudes)
    height, width = check_image_size(height, width)
    kernel_size = check_kernel_size(kernel_size, height, width)
    chosen = _resolve_backend(backend, means.device)

    channels = amplitudes.shape[-1]
    out_dtype = amplitudes.dtype
    compute_dtype = torch.float64 if torch.float64 in {means.dtype, scales.dtype, rotations.dtype, out_dtype} else torch.float32
    if chosen in ("cuda", "cuda_emulated"):
        if compute_dtype == torch.float64:
            _warn_float64_once(chosen)
        compute_dtype = torch.float32
    frames = math.prod(lead)  # not reshape(-1, ...): that is ambiguous when N = 0
    flat = [t.reshape(frames, *t.shape[len(lead):]).to(compute_dtype) for t in (means, scales, rotations, amplitudes)]
    if chosen == "cuda":
        from ._cuda import rasterize_cuda

        image = rasterize_cuda(*flat, height, width, kernel_size)
    elif chosen == "cuda_emulated":
        from ._emulated import rasterize_emulated

        image = rasterize_emulated(*flat, height, width, kernel_size)
    elif chosen == "cpu":
        from ._cpu import rasterize_cpu

        image = rasterize_cpu(*flat, height, width, kernel_size)
    else:
        image = rasterize_torch(*flat, height, width, kernel_size)
    return image.to(out_dtype).reshape(*lead, channels, height, width)


__all__ = ["rasterize_gaussians", "rasterize_torch", "BACKENDS"]
