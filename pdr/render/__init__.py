"""Differentiable rasterizer of 2D Gaussians (predgsplat).

One function, several backends that compute the same thing:

* ``"torch"``: plain PyTorch, runs anywhere, the reference the others are tested against;
* ``"cuda"``: the compiled kernels in ``csrc/``, for tensors on a CUDA device;
* ``"auto"``: ``"cuda"`` when the tensors are on a CUDA device and the extension builds,
  otherwise ``"torch"`` (with one warning when CUDA tensors had to fall back).
"""
from __future__ import annotations

import warnings

import torch
from torch import Tensor

from ._checks import check_gaussians, check_image_size, check_kernel_size
from ._torch import rasterize_torch

BACKENDS = ("auto", "torch", "cuda")
_warned_fallback = False


def _cuda_backend_status() -> tuple[bool, str]:
    try:
        from . import _cuda
    except ImportError as exc:  # the wrapper itself is part of the package; this only guards odd installs
        return False, f"pdr.render._cuda could not be imported: {exc}"
    return _cuda.extension_status()


def _resolve_backend(backend: str, device: torch.device) -> str:
    global _warned_fallback
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return "torch"
    if backend == "cuda":
        if device.type != "cuda":
            raise ValueError(f"backend='cuda' needs tensors on a CUDA device, got device {device}")
        ok, reason = _cuda_backend_status()
        if not ok:
            raise RuntimeError(f"backend='cuda' is not available: {reason}")
        return "cuda"
    if device.type != "cuda":
        return "torch"
    ok, reason = _cuda_backend_status()
    if ok:
        return "cuda"
    if not _warned_fallback:
        _warned_fallback = True
        warnings.warn(
            f"pdr.render: the CUDA rasterizer is not available ({reason}); falling back to the torch backend, "
            "which is much slower. Run `python -m pdr.render.build` to see the build log.",
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
        kernel_size: odd K: each Gaussian touches only the K x K pixels around its rounded center;
            None: every pixel receives every Gaussian.
        backend: "auto", "torch" or "cuda".

    Returns:
        (..., C, height, width), in the dtype of ``amplitudes`` (float16/bfloat16 are computed in float32).
    """
    lead = check_gaussians(means, scales, rotations, amplitudes)
    height, width = check_image_size(height, width)
    kernel_size = check_kernel_size(kernel_size)
    chosen = _resolve_backend(backend, means.device)

    channels = amplitudes.shape[-1]
    out_dtype = amplitudes.dtype
    compute_dtype = torch.float64 if torch.float64 in {means.dtype, scales.dtype, rotations.dtype, out_dtype} else torch.float32
    flat = [
        t.reshape(-1, *t.shape[len(lead):]).to(compute_dtype)
        for t in (means, scales, rotations, amplitudes)
    ]
    if chosen == "cuda":
        from ._cuda import rasterize_cuda

        image = rasterize_cuda(*flat, height, width, kernel_size)
    else:
        image = rasterize_torch(*flat, height, width, kernel_size)
    return image.to(out_dtype).reshape(*lead, channels, height, width)


__all__ = ["rasterize_gaussians", "rasterize_torch", "BACKENDS"]
