"""The next-latent composition: the warped latent where the content was visible, the background elsewhere;
and the residual target, what that composition with the *target* flow and visibility misses.

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


def residual_target(z_t: Tensor, z_next: Tensor, flow: Tensor, visible: Tensor, fill: Tensor) -> Tensor:
    """The part of the next latent that warping does not explain: z_next - (V warp(z_t, F) + (1 - V) fill).

    z_t, z_next (N, L, h, w): the encoded latents of frames t and t+1; flow F (N, 2, h, w) and visibility V
    (N, 1, h, w): the flow *targets* (Farneback or the precomputed cache, at latent resolution), not the
    heads' predictions; fill (N, L, h, w): the background estimate of ``compose_next``. Where V = 1 this is
    exactly z_next - warp(z_t, F); where the target says the content was hidden in t, the composition shows
    the background, and the residual is what the background misses. Built from targets only, it does not
    depend on the model's own flow, occlusion or residual, so its loss is not the latent loss in disguise.
    """
    return z_next - (visible * warp(z_t, flow) + (1.0 - visible) * fill)
