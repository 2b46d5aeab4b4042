"""Argument checks shared by every renderer backend.

The contract lives in ``docs/method.md`` (section 2); every message names the argument
and what was expected, so callers never see a bare broadcasting error from deep inside.

Shapes, dtypes and devices are checked on the host for free. The values of ``scales`` live on the
tensors' device: on the CPU they are checked with a ``ValueError`` as well; on a GPU the check is
queued with ``torch._assert_async`` (no wait for the GPU, CUDA-graph friendly; a bad value stops
the process at a later synchronisation), unless ``PDR_RENDER_DEBUG=1`` asks for the full,
synchronising check with a ``ValueError``.
"""
from __future__ import annotations

import os

import torch
from torch import Tensor

SCALES_MESSAGE = "scales must be finite and > 0 (standard deviations in pixels)"


def check_kernel_size(kernel_size, height: int, width: int) -> int | None:
    """An odd K no larger than 2 * max(height, width) + 1 (a wider window reaches no more pixels), or None."""
    if kernel_size is None:
        return None
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int):
        raise ValueError(f"kernel_size must be an odd positive int or None, got {kernel_size!r}")
    if kernel_size <= 0 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd positive int or None, got {kernel_size}")
    limit = 2 * max(height, width) + 1
    if kernel_size > limit:
        raise ValueError(
            f"kernel_size must be at most 2 * max(height, width) + 1 = {limit} for a {height}x{width} image, got "
            f"{kernel_size}; use kernel_size=None for a Gaussian that reaches every pixel"
        )
    return kernel_size


def check_image_size(height, width) -> tuple[int, int]:
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    return height, width


def check_gaussians(means: Tensor, scales: Tensor, rotations: Tensor, amplitudes: Tensor) -> tuple[int, ...]:
    """Validate shapes, devices and scales; return the leading dimensions ``...``.

    Expected shapes: means (..., N, 2), scales (..., N, 2), rotations (..., N), amplitudes (..., N, C).
    """
    named = (("means", means), ("scales", scales), ("rotations", rotations), ("amplitudes", amplitudes))
    for name, t in named:
        if not isinstance(t, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if means.dim() < 2 or means.shape[-1] != 2:
        raise ValueError(f"means must have shape (..., N, 2), got {tuple(means.shape)}")
    lead, n = tuple(means.shape[:-2]), means.shape[-2]
    expected = {
        "scales": (*lead, n, 2),
        "rotations": (*lead, n),
    }
    for name, t in (("scales", scales), ("rotations", rotations)):
        if tuple(t.shape) != expected[name]:
            raise ValueError(
                f"{name} must have shape {expected[name]} to match means {tuple(means.shape)}, got {tuple(t.shape)}"
            )
    if amplitudes.dim() != means.dim() or tuple(amplitudes.shape[:-1]) != (*lead, n) or amplitudes.shape[-1] < 1:
        raise ValueError(
            f"amplitudes must have shape (..., N, C) = {(*lead, n, 'C')} with C >= 1 to match means "
            f"{tuple(means.shape)}, got {tuple(amplitudes.shape)}"
        )
    devices = {t.device for _, t in named}
    if len(devices) != 1:
        raise ValueError(f"means, scales, rotations and amplitudes must be on one device, got {sorted(map(str, devices))}")
    if scales.numel():
        with torch.no_grad():
            good = torch.isfinite(scales) & (scales > 0)
            if scales.device.type == "cpu" or debug_checks():
                if not bool(good.all()):
                    bad = scales[~good].flatten()[:3].tolist()
                    raise ValueError(f"{SCALES_MESSAGE}, got values such as {bad}")
            else:
                torch._assert_async(good.all(), f"pdr.render: {SCALES_MESSAGE}")
    return lead


def debug_checks() -> bool:
    """``PDR_RENDER_DEBUG=1``: check values on every device with a clear error, at the cost of a sync."""
    return os.environ.get("PDR_RENDER_DEBUG", "") not in ("", "0")


def pixel_centers(means: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Normalized positions (..., N, 2) -> pixel coordinates px, py, each (..., N)."""
    px = (means[..., 0] + 1.0) * (width / 2.0) - 0.5
    py = (means[..., 1] + 1.0) * (height / 2.0) - 0.5
    return px, py


def default_chunk_elements() -> int:
    """Upper bound on Gaussian-pixel-channel evaluations held in memory at once by the torch backend."""
    return 1 << 24


__all__ = [
    "check_kernel_size",
    "check_image_size",
    "check_gaussians",
    "pixel_centers",
    "default_chunk_elements",
]
