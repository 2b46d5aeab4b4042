"""Differentiable rasterizer of 2D Gaussians (predgsplat).

One function, several backends that compute the same thing:

* ``"torch"``: plain PyTorch, runs anywhere, the reference the others are tested against;
* ``"cpu"``: the compiled C++ kernels in ``csrc/``, for CPU tensors;
* ``"cuda"``: the compiled CUDA kernels in ``csrc/``, for tensors on a CUDA device;
* ``"auto"``: ``"cpu"`` or ``"cuda"`` for tensors on that device when its extension builds,
  otherwise ``"torch"`` (with one warning per device kind that had to fall back).
"""
from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from ._checks import check_gaussians, check_image_size, check_kernel_size
from ._torch import rasterize_torch

BACKENDS = ("auto", "torch", "cpu", "cuda")
_warned_fallback: set[str] = set()


def _compiled_status(name: str) -> tuple[bool, str]:
    from . import _cpu, _cuda

    return (_cpu if name == "cpu" else _cuda).extension_status()


def _resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return "torch"
    wanted = "cuda" if device.type == "cuda" else "cpu" if device.type == "cpu" else None
    if backend != "auto":
        if wanted != backend:
            raise ValueError(f"backend={backend!r} needs tensors on a {backend.upper()} device, got device {device}")
        ok, reason = _compiled_status(backend)
        if not ok:
            raise RuntimeError(f"backend={backend!r} is not available: {reason}")
        return backend
    if wanted is None:
        return "torch"
    ok, reason = _compiled_status(wanted)
    if ok:
        return wanted
    if wanted not in _warned_fallback:
        _warned_fallback.add(wanted)
        warnings.warn(
            f"pdr.render: the {wanted.upper()} rasterizer is not available ({reason}); falling back to the torch "
            "backend, which is much slower. Run `python -m pdr.render.build` to see the build log.",
            RuntimeWarning,
            stacklevel=3,
        )
    return "torch"


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
        backend: "auto", "torch", "cpu" or "cuda".

    A Gaussian whose mean is not finite (NaN or infinite) draws nothing and receives zero gradients.

    Returns:
        (..., C, height, width), in the dtype of ``amplitudes`` (float16/bfloat16 are computed in float32).
    """
    lead = check_gaussians(means, scales, rotations, amplitudes)
    height, width = check_image_size(height, width)
    kernel_size = check_kernel_size(kernel_size, height, width)
    chosen = _resolve_backend(backend, means.device)

    channels = amplitudes.shape[-1]
    out_dtype = amplitudes.dtype
    compute_dtype = torch.float64 if torch.float64 in {means.dtype, scales.dtype, rotations.dtype, out_dtype} else torch.float32
    frames = math.prod(lead)  # not reshape(-1, ...): that is ambiguous when N = 0
    flat = [t.reshape(frames, *t.shape[len(lead):]).to(compute_dtype) for t in (means, scales, rotations, amplitudes)]
    if chosen == "cuda":
        from ._cuda import rasterize_cuda

        image = rasterize_cuda(*flat, height, width, kernel_size)
    elif chosen == "cpu":
        from ._cpu import rasterize_cpu

        image = rasterize_cpu(*flat, height, width, kernel_size)
    else:
        image = rasterize_torch(*flat, height, width, kernel_size)
    return image.to(out_dtype).reshape(*lead, channels, height, width)


__all__ = ["rasterize_gaussians", "rasterize_torch", "BACKENDS"]
