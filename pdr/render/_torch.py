"""Reference backend of ``rasterize_gaussians`` in plain PyTorch.

Vectorised over frames, Gaussians and pixels; memory is bounded by evaluating a chunk
of frames (and, for very large N, a chunk of Gaussians) at a time. Gradients come from
autograd. Every other backend is tested against this one.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._checks import default_chunk_elements, pixel_centers


def conic(scales: Tensor, rotations: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Entries (A, B, C) of Sigma^-1 = [[A, B], [B, C]] for Sigma = R(theta) diag(sx^2, sy^2) R(theta)^T.

    scales (F, N, 2), rotations (F, N) -> three (F, N) tensors.
    """
    cos, sin = torch.cos(rotations), torch.sin(rotations)
    ix, iy = scales[..., 0] ** -2, scales[..., 1] ** -2
    return cos * cos * ix + sin * sin * iy, cos * sin * (ix - iy), sin * sin * ix + cos * cos * iy


def _sq_distance(dx: Tensor, dy: Tensor, scales: Tensor, rotations: Tensor) -> Tensor:
    """d^T Sigma^-1 d on a separable grid of offsets: dx (F, N, X), dy (F, N, Y) -> (F, N, Y, X)."""
    a, b, c = conic(scales, rotations)
    row_term = (c[..., None] * dy * dy)[..., :, None]
    col_term = (a[..., None] * dx * dx)[..., None, :]
    cross = (2 * b[..., None] * dy)[..., :, None] * dx[..., None, :]
    return row_term + col_term + cross


def _render_windowed(means, scales, rotations, amplitudes, height, width, kernel_size) -> Tensor:
    frames, n, channels = amplitudes.shape
    radius = kernel_size // 2
    px, py = pixel_centers(means, height, width)
    cx = torch.floor(px.detach() + 0.5)
    cy = torch.floor(py.detach() + 0.5)
    offsets = torch.arange(-radius, radius + 1, device=means.device, dtype=means.dtype)
    cols = cx[..., None] + offsets  # (F, N, K)
    rows = cy[..., None] + offsets  # (F, N, K)
    weight = torch.exp(-0.5 * _sq_distance(cols - px[..., None], rows - py[..., None], scales, rotations))

    cols_i, rows_i = cols.long(), rows.long()
    inside = ((rows_i >= 0) & (rows_i < height))[..., :, None] & ((cols_i >= 0) & (cols_i < width))[..., None, :]
    pixels = height * width
    # Pixels of the window that fall off the image go to one spare slot per frame that is dropped below.
    target = torch.where(inside, rows_i[..., :, None] * width + cols_i[..., None, :], pixels)
    target = target + (torch.arange(frames, device=means.device) * (pixels + 1))[:, None, None, None]
    contrib = weight[..., None] * amplitudes[:, :, None, None, :]  # (F, N, K, K, C)
    out = torch.zeros(frames * (pixels + 1), channels, device=means.device, dtype=weight.dtype)
    out = out.index_add(0, target.reshape(-1), contrib.reshape(-1, channels))
    out = out.view(frames, pixels + 1, channels)[:, :pixels]
    return out.transpose(1, 2).reshape(frames, channels, height, width)


def _render_dense(means, scales, rotations, amplitudes, height, width) -> Tensor:
    frames, n, channels = amplitudes.shape
    px, py = pixel_centers(means, height, width)
    cols = torch.arange(width, device=means.device, dtype=means.dtype)
    rows = torch.arange(height, device=means.device, dtype=means.dtype)
    dist = _sq_distance(cols - px[..., None], rows - py[..., None], scales, rotations)
    weight = torch.exp(-0.5 * dist).reshape(frames, n, height * width)
    out = torch.einsum("fnp,fnc->fcp", weight, amplitudes)
    return out.reshape(frames, channels, height, width)


def rasterize_torch(
    means: Tensor,
    scales: Tensor,
    rotations: Tensor,
    amplitudes: Tensor,
    height: int,
    width: int,
    kernel_size: int | None,
    chunk_elements: int | None = None,
) -> Tensor:
    """Render flattened frames.

    Args:
        means: (F, N, 2) normalized positions.
        scales: (F, N, 2) standard deviations in pixels, > 0.
        rotations: (F, N) angles in radians.
        amplitudes: (F, N, C).
        height, width: output size.
        kernel_size: odd K or None (every pixel).
        chunk_elements: cap on Gaussian-pixel-channel values held at once.

    Returns:
        (F, C, height, width) in the dtype of the computation (float32 or float64).
    """
    frames, n, channels = amplitudes.shape
    budget = default_chunk_elements() if chunk_elements is None else chunk_elements
    area = height * width if kernel_size is None else kernel_size * kernel_size
    # Channels only widen the windowed path's scatter; the dense path's product does not store them.
    per_gaussian = area * (channels + 1 if kernel_size is not None else 1)
    gaussians_per_chunk = max(1, min(n, budget // per_gaussian)) if n else 1
    frames_per_chunk = max(1, budget // (per_gaussian * max(n, 1)))

    outputs = []
    for f0 in range(0, frames, frames_per_chunk):
        f1 = min(frames, f0 + frames_per_chunk)
        out = None
        for g0 in range(0, max(n, 1), gaussians_per_chunk):
            g1 = min(n, g0 + gaussians_per_chunk)
            args = (means[f0:f1, g0:g1], scales[f0:f1, g0:g1], rotations[f0:f1, g0:g1], amplitudes[f0:f1, g0:g1])
            if kernel_size is None:
                part = _render_dense(*args, height, width)
            else:
                part = _render_windowed(*args, height, width, kernel_size)
            out = part if out is None else out + part
        outputs.append(out)
    if not outputs:
        return amplitudes.new_zeros(0, channels, height, width)
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=0)
