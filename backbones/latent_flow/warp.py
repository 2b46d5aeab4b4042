"""The next-latent composition: the warped latent where the content was visible, the background elsewhere.

Flows follow the conventions of ``pdr.data.optical_flow`` (backward flows t+1 -> t, pixel units).
"""
from __future__ import annotations

from torch import Tensor

from pdr.data.optical_flow import warp


def compose_next(z_t: Tensor, flow: Tensor, occ: Tensor, fill: Tensor, residual: Tensor) -> tuple[Tensor, Tensor]:
    """Next latent = occ * warp(z_t, flow) + (1 - occ) * fill + residual.

    z_t, fill, residual: (B, L, h, w); flow (B, 2, h, w); occ (B, 1, h, w) in [0, 1] (1: the content was
    visible in frame t, the warp is valid). ``fill`` is the background estimate (the temporal mean of the
    observed latents, see ``LatentFlow``): what a disoccluded location most likely shows.
    Returns (next latent, the warped latent), both (B, L, h, w).
    """
    warped = warp(z_t, flow)
    return occ * warped + (1.0 - occ) * fill + residual, warped
