"""Backward warping with ``grid_sample`` and the next-latent composition.

Convention: a flow ``F`` (B, 2, h, w) attached to frame t+1 holds, for every location p of frame t+1,
the displacement (dx, dy) in pixels of the map being warped to where that content was in frame t
(a *backward* flow, t+1 -> t).  ``warp(src_t, F)(p) = src_t(p + F(p))`` (bilinear, border padding).
A zero flow returns the source unchanged; a constant integer flow is an exact shift.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def base_grid(h: int, w: int, device=None, dtype=None) -> Tensor:
    """Pixel coordinates (1, 2, h, w): channel 0 is x (column), channel 1 is y (row)."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=dtype),
                            torch.arange(w, device=device, dtype=dtype), indexing="ij")
    return torch.stack([xs, ys]).unsqueeze(0)


def warp(src: Tensor, flow: Tensor, padding_mode: str = "border") -> Tensor:
    """Backward warp: src (B, C, h, w), flow (B, 2, h, w) in pixels -> (B, C, h, w)."""
    if src.dim() != 4 or flow.dim() != 4 or flow.shape[1] != 2 or flow.shape[-2:] != src.shape[-2:] \
            or flow.shape[0] != src.shape[0]:
        raise ValueError(f"warp: src (B, C, h, w) and flow (B, 2, h, w) must agree, got {tuple(src.shape)} "
                         f"and {tuple(flow.shape)}")
    h, w = src.shape[-2:]
    coords = base_grid(h, w, src.device, flow.dtype) + flow
    # normalise to [-1, 1] with align_corners=True: pixel 0 -> -1, pixel (n-1) -> 1
    gx = 2.0 * coords[:, 0] / max(w - 1, 1) - 1.0
    gy = 2.0 * coords[:, 1] / max(h - 1, 1) - 1.0
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(src, grid.to(src.dtype), mode="bilinear", padding_mode=padding_mode, align_corners=True)


def resize_flow(flow: Tensor, size: tuple[int, int]) -> Tensor:
    """Resample a flow (B, 2, H, W) in pixels to ``size = (h, w)``, rescaling the vectors to the new grid."""
    h0, w0 = flow.shape[-2:]
    if (h0, w0) == tuple(size):
        return flow
    shrinking = size[0] <= h0 and size[1] <= w0
    out = F.interpolate(flow, size=size, mode="area") if shrinking else \
        F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    scale = torch.tensor([size[1] / w0, size[0] / h0], device=flow.device, dtype=flow.dtype).view(1, 2, 1, 1)
    return out * scale


def compose_next(z_t: Tensor, flow: Tensor, occ: Tensor, fill: Tensor, residual: Tensor) -> tuple[Tensor, Tensor]:
    """Next latent = occ * warp(z_t, flow) + (1 - occ) * fill + residual.

    z_t, fill, residual: (B, L, h, w); flow (B, 2, h, w); occ (B, 1, h, w) in [0, 1] (1: the content was
    visible in frame t, the warp is valid). ``fill`` is the background estimate (the temporal mean of the
    observed latents, see ``LatentFlow``): what a disoccluded location most likely shows.
    Returns (next latent, the warped latent), both (B, L, h, w).
    """
    warped = warp(z_t, flow)
    return occ * warped + (1.0 - occ) * fill + residual, warped
