"""Reference backend of ``rasterize_gaussians`` in plain PyTorch.

Vectorised over frames, Gaussians and pixels; memory is bounded by evaluating a chunk
of frames (and, for very large N, a chunk of Gaussians) at a time, in the forward and in the
backward: the autograd Function keeps only its inputs and recomputes each chunk with autograd
in the backward, so no chunk's (frames, N, K, K, C) tensors outlive it. Every other backend is
tested against this one.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

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


def _render_chunk(means, scales, rotations, amplitudes, height, width, kernel_size) -> Tensor:
    """One chunk (F, n, ...) -> (F, C, H, W). A Gaussian whose pixel centre is not finite draws nothing."""
    px, py = pixel_centers(means, height, width)
    finite = (torch.isfinite(px) & torch.isfinite(py))[..., None]
    means = torch.where(finite, means, torch.zeros((), dtype=means.dtype, device=means.device))
    amplitudes = torch.where(finite, amplitudes, torch.zeros((), dtype=amplitudes.dtype, device=amplitudes.device))
    if kernel_size is None:
        return _render_dense(means, scales, rotations, amplitudes, height, width)
    return _render_windowed(means, scales, rotations, amplitudes, height, width, kernel_size)


def _chunks(frames: int, n: int, channels: int, height: int, width: int, kernel_size: int | None,
            chunk_elements: int | None):
    """(frame slice, Gaussian slice) pairs that each hold at most ``chunk_elements`` evaluations."""
    budget = default_chunk_elements() if chunk_elements is None else chunk_elements
    area = height * width if kernel_size is None else kernel_size * kernel_size
    # Channels only widen the windowed path's scatter; the dense path's product does not store them.
    per_gaussian = area * (channels + 1 if kernel_size is not None else 1)
    gaussians_per_chunk = max(1, min(n, budget // per_gaussian))
    frames_per_chunk = max(1, budget // (per_gaussian * n))
    for f0 in range(0, frames, frames_per_chunk):
        for g0 in range(0, n, gaussians_per_chunk):
            yield slice(f0, min(frames, f0 + frames_per_chunk)), slice(g0, min(n, g0 + gaussians_per_chunk))


class _RasterizeTorch(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, scales, rotations, amplitudes, height, width, kernel_size, chunk_elements):
        frames, n, channels = amplitudes.shape
        out = amplitudes.new_zeros(frames, channels, height, width)
        ctx.save_for_backward(means, scales, rotations, amplitudes)
        ctx.args = (height, width, kernel_size, chunk_elements)
        if n:
            for fs, gs in _chunks(frames, n, channels, height, width, kernel_size, chunk_elements):
                out[fs] += _render_chunk(means[fs, gs], scales[fs, gs], rotations[fs, gs], amplitudes[fs, gs],
                                         height, width, kernel_size)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        inputs = ctx.saved_tensors
        height, width, kernel_size, chunk_elements = ctx.args
        frames, n, channels = inputs[3].shape
        wanted = [i for i in range(4) if ctx.needs_input_grad[i]]
        grads = [torch.zeros_like(t) if i in wanted else None for i, t in enumerate(inputs)]
        if n and wanted:
            for fs, gs in _chunks(frames, n, channels, height, width, kernel_size, chunk_elements):
                with torch.enable_grad():
                    parts = [t[fs, gs].detach().requires_grad_(i in wanted) for i, t in enumerate(inputs)]
                    image = _render_chunk(*parts, height, width, kernel_size)
                    chunk_grads = torch.autograd.grad(image, [parts[i] for i in wanted], grad_out[fs])
                for i, g in zip(wanted, chunk_grads):
                    grads[i][fs, gs] = g
        return (*grads, None, None, None, None)


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
        chunk_elements: cap on Gaussian-pixel-channel values held at once, in the forward and the backward.

    Returns:
        (F, C, height, width) in the dtype of the computation (float32 or float64).
    """
    return _RasterizeTorch.apply(means, scales, rotations, amplitudes, height, width, kernel_size, chunk_elements)
