"""``conv_refiner``: a residual convolutional refiner, the control adapter without Gaussians.

It sees what PredGS's pixel-aligned heads (``head: conv``) see, through the same network (the frame rearranged
space-to-depth by ``pool``, two 3x3 convolutions of ``hidden`` channels with GELU), but its 1x1 output
convolution predicts pixel corrections directly, ``pool * pool * C`` per cell, which are rearranged back to a
full frame and added to the coarse one. The output layer starts at zero, so the refined frame starts as the
coarse one. Whatever PredGS wins over it at the same parameter count, the same loss, learning rate and steps is
what the rendering of Gaussians adds.
"""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from pdr.registry import ADAPTERS

from .base import Adapter


def refiner_parameters(channels: int, pool: int, hidden: int) -> int:
    """Parameters of a ``ConvRefiner`` for frames of ``channels`` channels (weights and biases of its three
    convolutions), without building it."""
    cells_in = channels * pool * pool
    return (cells_in * 9 * hidden + hidden) + (hidden * 9 * hidden + hidden) + (hidden * cells_in + cells_in)


def matching_hidden(target: int, channels: int, pool: int) -> int:
    """The ``hidden`` width whose refiner's parameter count is closest to ``target``."""
    best, hidden = None, 1
    while True:
        count = refiner_parameters(channels, pool, hidden)
        if best is None or abs(count - target) <= abs(refiner_parameters(channels, pool, best) - target):
            best = hidden
        if count > target:
            return best
        hidden += 1


@ADAPTERS.register("conv_refiner")
class ConvRefiner(Adapter):
    """coarse + conv(coarse): a residual refiner with no Gaussians and no renderer.

    Args:
        frame_shape: (C, H, W) of one frame (set by ``build_model``).
        feature_channels: unused (the refiner reads the coarse frames only); set by ``build_model``.
        pool: space-to-depth factor (it must divide H and W): each cell of the ``pool``-times smaller map is
            corrected from its 3x3-cell neighbourhood, as PredGS's conv heads regress its Gaussians.
        hidden: channels of the two 3x3 convolutions; ``refiner.matching_hidden`` gives the width of the same
            parameter count as another adapter.
        init_std: standard deviation of the output convolution's initial weights (bias zero): 0 starts as the
            identity on the coarse frame.
    """

    def __init__(self, frame_shape: Sequence[int], feature_channels: int | None = None, pool: int = 4,
                 hidden: int = 64, init_std: float = 0.0):
        super().__init__()
        c, h, w = (int(v) for v in frame_shape)
        if pool < 1 or h % pool or w % pool:
            raise ValueError(f"pool must be >= 1 and divide the frame size {h}x{w}, got {pool}")
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        if init_std < 0:
            raise ValueError(f"init_std must be >= 0, got {init_std}")
        self.pool = pool
        cells_in = c * pool * pool
        self.net = nn.Sequential(
            nn.Conv2d(cells_in, hidden, 3, padding=1), nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.GELU(),
            nn.Conv2d(hidden, cells_in, 1),
        )
        nn.init.normal_(self.net[-1].weight, std=init_std)  # std 0: all zeros
        nn.init.zeros_(self.net[-1].bias)

    def correction(self, coarse: Tensor) -> Tensor:
        """What is added to coarse frames (B, T, C, H, W): (B, T, C, H, W)."""
        b = coarse.shape[0]
        x = rearrange(coarse, "b t c h w -> (b t) c h w")
        y = self.net(F.pixel_unshuffle(x, self.pool) if self.pool > 1 else x)
        y = F.pixel_shuffle(y, self.pool) if self.pool > 1 else y
        return rearrange(y, "(b t) c h w -> b t c h w", b=b)

    def forward(self, coarse: Tensor, features: Tensor | None = None) -> Tensor:
        """(B, T, C, H, W) coarse frames -> (B, T, C, H, W) refined frames."""
        return coarse + self.correction(coarse)
