"""How PredGS regresses Gaussians from a source map: the paper's MLP heads on the flattened pooled map
(``head: mlp``), or pixel-aligned convolutional heads, a few Gaussians per cell of the pooled map
(``head: conv``).

Both return the Gaussians' positions, in normalised image coordinates, and the raw (pre-activation) scale,
rotation and amplitude values; ``PredGS`` applies the activations.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

HEADS = ("mlp", "conv")


def base_grid(num: int, height: int, width: int) -> Tensor:
    """``num`` points spread uniformly over the image, in normalized (x, y) coordinates: (num, 2).

    Rows and columns follow the aspect ratio; the last row, if partly filled, is spread evenly.
    """
    cols = max(1, round(math.sqrt(num * width / height)))
    rows = math.ceil(num / cols)
    points = []
    for r in range(rows):
        in_row = min(cols, num - r * cols)
        y = (2 * r + 1) / rows - 1
        points += [((2 * c + 1) / in_row - 1, y) for c in range(in_row)]
    return torch.tensor(points, dtype=torch.float32)


class Head(nn.Module):
    """Linear -> GELU -> Linear, flattened pooled map (B, D) -> (B, N, k).

    ``init_std``: the last layer's weights drawn with this standard deviation and its bias zero, so that the
    head starts near zero output (None: PyTorch's default initialisation).
    """

    def __init__(self, in_dim: int, hidden: int, num: int, k: int, init_std: float | None = None):
        super().__init__()
        self.num, self.k = num, k
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, num * k))
        if init_std is not None:
            nn.init.normal_(self.net[-1].weight, std=init_std)
            nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).view(x.shape[0], self.num, self.k)


def cell_count(height: int, width: int, pool: int) -> int:
    """Cells of the pooled map of a ``height`` x ``width`` frame."""
    return (height // pool) * (width // pool)


class CellHeads(nn.Module):
    """Pixel-aligned heads: ``per_cell`` Gaussians for each cell of the ``pool``-times smaller map, regressed
    from that cell's neighbourhood by a small conv net.

    The frame is rearranged space-to-depth (``pixel_unshuffle``), so no pixel is averaged away before the
    heads; two 3x3 convolutions (``hidden`` channels, GELU) and a 1x1 output convolution give each cell's
    ``per_cell * (5 + C)`` values. A Gaussian's position is its cell's centre plus at most one cell in x and
    y (tanh), so neighbouring cells' Gaussians can meet. The output convolution starts near zero
    (``init_std``): every Gaussian at its cell's centre, mid-range scale, zero raw amplitude.

    forward: (M, C, H, W) -> means (M, N, 2), raw (M, N, 3 + C) with N = per_cell * (H / pool) * (W / pool),
    ordered cell by cell (row-major), the cell's Gaussians together.
    """

    def __init__(self, channels: int, height: int, width: int, pool: int, per_cell: int, hidden: int,
                 init_std: float = 1e-3):
        super().__init__()
        self.pool, self.per_cell, self.values = pool, per_cell, 5 + channels
        self.net = nn.Sequential(
            nn.Conv2d(channels * pool * pool, hidden, 3, padding=1), nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.GELU(),
            nn.Conv2d(hidden, per_cell * self.values, 1),
        )
        nn.init.normal_(self.net[-1].weight, std=init_std)
        nn.init.zeros_(self.net[-1].bias)
        h, w = height // pool, width // pool
        ys, xs = torch.meshgrid((2 * torch.arange(h) + 1) / h - 1, (2 * torch.arange(w) + 1) / w - 1, indexing="ij")
        centres = torch.stack([xs, ys], dim=-1).reshape(h * w, 1, 2).expand(h * w, per_cell, 2).reshape(-1, 2)
        self.register_buffer("centres", centres.contiguous(), persistent=False)
        self.register_buffer("cell", torch.tensor([2.0 / w, 2.0 / h]), persistent=False)

    @torch.no_grad()
    def init_amplitudes(self, std: float) -> None:
        """Draw the output convolution's amplitude weights with standard deviation ``std``."""
        weight = self.net[-1].weight.view(self.per_cell, self.values, -1)
        weight[:, 5:].normal_(0.0, std)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = self.net(F.pixel_unshuffle(x, self.pool) if self.pool > 1 else x)
        y = rearrange(y, "m (g v) h w -> m (h w g) v", g=self.per_cell, v=self.values)
        means = self.centres + torch.tanh(y[..., :2]) * self.cell
        return means, y[..., 2:]
