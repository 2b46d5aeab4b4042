"""PredGS: coarse frames -> 2D Gaussians -> rendered frames, fused with the coarse frames.

Per predicted frame (paper, section 1 of docs/method.md):

1. average-pool the coarse frame (or a backbone feature map) by ``pool``;
2. four independent MLP heads on the flattened pooled map regress, for N Gaussians,
   position (tanh, as an offset from a fixed base grid), scale (sigmoid, in pixels),
   rotation (tanh * pi/2) and amplitude (one per channel);
3. the rasterizer renders them with a K x K window;
4. fusion: concat(coarse, rendered) -> 1x1 conv (or plain addition).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from pdr.registry import ADAPTERS
from pdr.render import rasterize_gaussians

from .base import Adapter
from .predgs_heads import HEADS, CellHeads, Head, base_grid, cell_count

POSITION_INITS = ("grid", "random", "center")
AMPLITUDE_ACTIVATIONS = ("sigmoid", "tanh", "softplus", "identity")
FUSIONS = ("conv", "add")
SOURCES = ("output", "features")


@ADAPTERS.register("predgs")
class PredGS(Adapter):
    """Refine coarse predictions with rendered 2D Gaussians.

    Args:
        frame_shape: (C, H, W) of one frame (set by ``build_model``).
        feature_channels: channels of the backbone's feature map (set by ``build_model``; used
            with ``source: features``).
        num_gaussians: N per frame; None: one per cell of the pooled map, (H / pool) * (W / pool).
        kernel_size: odd window K of each Gaussian, or None for the whole frame.
        pool: average-pooling factor before the heads (2 for 32x32, 8 for 128x128, 16 for 256x256).
        hidden: width of the MLP heads.
        position_init: "grid" (the paper's), "random" (fixed random base points) or "center".
        scale_range: [min, max] standard deviation in pixels; max None means K / 6 (whole frame: H / 6).
        amplitude_activation: "sigmoid" (non-negative, the paper's), "tanh", "softplus" or "identity".
        amplitude_range: [low, high] for sigmoid (low + (high - low) * sigmoid) and tanh (high * tanh).
            Use a negative low for data normalised to negative values.
        fusion: "conv" (concat + 1x1 conv, the paper's) or "add".
        source: "output" (Gaussians from the coarse frames) or "features" (from backbone features).
        head: "mlp" (the paper's: four MLP heads on the flattened pooled map, positions as offsets from the
            base points of ``position_init``) or "conv" (pixel-aligned: ``num_gaussians / cells`` Gaussians per
            cell of the pooled map, from a small conv net over the cell's neighbourhood; see ``CellHeads``).
            ``num_gaussians`` must then be a multiple of the (H / pool) * (W / pool) cells; ``hidden`` is the
            conv net's width; ``position_init`` and ``seed`` do not apply. Gaussians of border cells may sit up
            to half a cell outside the frame.
        amplitude_init_std: start the amplitude head's last layer with weights of this standard deviation and
            zero bias, so that every Gaussian starts with the amplitude of a zero raw value (0 for tanh and
            identity); None: PyTorch's default initialisation for ``head: mlp``, 1e-3 for ``head: conv``.
        render_init: the conv fusion's initial weight on the rendered frame (0, the paper's: the rendering gets
            no gradient until the fusion weight moves); not used with ``fusion: add``.
        coarse_loss_weight: w > 0 adds w * MSE(coarse, target) to the training loss, so that the backbone keeps
            its usual objective while the configured loss acts on the refined frames.
        detach_coarse: the adapter's output does not back-propagate into the backbone: the backbone learns only
            from ``coarse_loss_weight`` (and its own auxiliary losses), the adapter refines what it predicts. In a
            rollout the refined frames are fed back with the backbone's gradient (value refined, gradient coarse).
        enabled_at_inference: False returns the coarse frames unchanged in eval mode.
        backend: renderer backend ("auto", "torch", "cuda").
        seed: seed of the random base points for position_init "random".
    """

    @property
    def needs_features(self) -> bool:
        """``source: features``: the Gaussians are regressed from the backbone's feature maps."""
        return self.source == "features"

    @classmethod
    def size_multiple(cls, frame_shape: Sequence[int], pool: int = 2, **_) -> int:
        """H and W must be multiples of ``pool`` (the average pooling before the heads)."""
        return int(pool)

    def __init__(
        self,
        frame_shape: Sequence[int],
        feature_channels: int | None = None,
        num_gaussians: int | None = 300,
        kernel_size: int | None = 15,
        pool: int = 2,
        hidden: int = 128,
        position_init: str = "grid",
        scale_range: Sequence[float | None] = (0.5, None),
        amplitude_activation: str = "sigmoid",
        amplitude_range: Sequence[float] = (0.0, 1.0),
        fusion: str = "conv",
        source: str = "output",
        head: str = "mlp",
        amplitude_init_std: float | None = None,
        render_init: float = 0.0,
        coarse_loss_weight: float = 0.0,
        detach_coarse: bool = False,
        enabled_at_inference: bool = True,
        backend: str = "auto",
        seed: int = 0,
    ):
        super().__init__()
        c, h, w = (int(v) for v in frame_shape)
        _check_choice("position_init", position_init, POSITION_INITS)
        _check_choice("amplitude_activation", amplitude_activation, AMPLITUDE_ACTIVATIONS)
        _check_choice("fusion", fusion, FUSIONS)
        _check_choice("source", source, SOURCES)
        _check_choice("head", head, HEADS)
        if pool < 1 or h % pool or w % pool:
            raise ValueError(f"pool must be >= 1 and divide the frame size {h}x{w}, got {pool}")
        cells = cell_count(h, w, pool)
        num_gaussians = cells if num_gaussians is None else num_gaussians
        if num_gaussians < 1:
            raise ValueError(f"num_gaussians must be >= 1, got {num_gaussians}")
        if kernel_size is not None and (kernel_size < 1 or kernel_size % 2 == 0):
            raise ValueError(f"kernel_size must be odd and positive or null, got {kernel_size}")
        if source == "features" and not feature_channels:
            raise ValueError("source: features needs a backbone that exposes features (feature_channels is unset)")
        if len(scale_range) != 2 or len(amplitude_range) != 2:
            raise ValueError("scale_range and amplitude_range must be [low, high]")
        if head == "conv" and num_gaussians % cells:
            raise ValueError(f"head: conv places num_gaussians / cells Gaussians in each of the {cells} cells of the "
                             f"{h // pool}x{w // pool} pooled map; num_gaussians must be a multiple of {cells}, "
                             f"got {num_gaussians}")
        if amplitude_init_std is not None and amplitude_init_std < 0:
            raise ValueError(f"amplitude_init_std must be >= 0 or null, got {amplitude_init_std}")
        if coarse_loss_weight < 0:
            raise ValueError(f"coarse_loss_weight must be >= 0, got {coarse_loss_weight}")
        if detach_coarse and not coarse_loss_weight:
            raise ValueError("detach_coarse: true needs coarse_loss_weight > 0, else the backbone would not learn")

        self.frame_shape = (c, h, w)
        self.num_gaussians = num_gaussians
        self.kernel_size = kernel_size
        self.pool = pool
        self.source = source
        self.fusion_mode = fusion
        self.amplitude_activation = amplitude_activation
        self.enabled_at_inference = enabled_at_inference
        self.backend = backend
        self.head = head
        self.coarse_loss_weight = float(coarse_loss_weight)
        self.detach_coarse = bool(detach_coarse)

        s_min = float(scale_range[0])
        s_max = scale_range[1]
        if s_max is None:
            s_max = (kernel_size if kernel_size is not None else max(h, w)) / 6.0
        if not 0 < s_min < float(s_max):
            raise ValueError(f"scale_range must satisfy 0 < min < max, got [{s_min}, {s_max}]")
        self.scale_min, self.scale_max = s_min, float(s_max)
        self.amp_low, self.amp_high = (float(v) for v in amplitude_range)

        if source == "features":
            self.reduce = nn.Conv2d(int(feature_channels), c, 1)
        if head == "conv":
            self.cells = CellHeads(c, h, w, pool, num_gaussians // cells, hidden)
            if amplitude_init_std is not None:
                self.cells.init_amplitudes(amplitude_init_std)
        else:
            in_dim = c * cells
            self.position_head = Head(in_dim, hidden, num_gaussians, 2, init_std=1e-3)
            self.scale_head = Head(in_dim, hidden, num_gaussians, 2)
            self.rotation_head = Head(in_dim, hidden, num_gaussians, 1)
            self.amplitude_head = Head(in_dim, hidden, num_gaussians, c, init_std=amplitude_init_std)
            self._register_base_points(position_init, num_gaussians, h, w, seed)

        if fusion == "conv":
            self.fuse = nn.Conv2d(2 * c, c, 1)
            with torch.no_grad():  # identity on the coarse frame, render_init (0: the backbone alone) on the render
                self.fuse.weight.zero_()
                self.fuse.weight[:, :c, 0, 0] = torch.eye(c)
                self.fuse.weight[:, c:, 0, 0] = render_init * torch.eye(c)
                self.fuse.bias.zero_()

    def _register_base_points(self, position_init: str, num_gaussians: int, h: int, w: int, seed: int) -> None:
        if position_init == "grid":
            base = base_grid(num_gaussians, h, w)
        elif position_init == "random":
            gen = torch.Generator().manual_seed(seed)
            base = torch.rand(num_gaussians, 2, generator=gen) * 1.8 - 0.9
        else:
            base = torch.zeros(num_gaussians, 2)
        # Positions are tanh(raw + atanh(base)): inside [-1, 1] and exactly the base points when raw = 0.
        self.register_buffer("base_logits", torch.atanh(base.clamp(-0.999, 0.999)), persistent=True)

    def gaussians(self, source: Tensor) -> dict[str, Tensor]:
        """Regress Gaussians from frames or features (M, C', H, W) -> dict of (M, N, ...) tensors."""
        if self.source == "features":
            source = self.reduce(source)
            if source.shape[-2:] != self.frame_shape[1:]:
                source = F.adaptive_avg_pool2d(source, self.frame_shape[1:])
        if self.head == "conv":
            means, raw = self.cells(source)
            raw_scale, raw_rotation, raw_amplitude = raw[..., :2], raw[..., 2], raw[..., 3:]
        else:
            flat = (F.avg_pool2d(source, self.pool) if self.pool > 1 else source).flatten(1)
            means = torch.tanh(self.position_head(flat) + self.base_logits)
            raw_scale, raw_rotation = self.scale_head(flat), self.rotation_head(flat)[..., 0]
            raw_amplitude = self.amplitude_head(flat)
        scales = self.scale_min + (self.scale_max - self.scale_min) * torch.sigmoid(raw_scale)
        rotations = torch.tanh(raw_rotation) * (math.pi / 2)
        amplitudes = self._amplitude(raw_amplitude)
        return {"means": means, "scales": scales, "rotations": rotations, "amplitudes": amplitudes}

    def _amplitude(self, raw: Tensor) -> Tensor:
        if self.amplitude_activation == "sigmoid":
            return self.amp_low + (self.amp_high - self.amp_low) * torch.sigmoid(raw)
        if self.amplitude_activation == "tanh":
            return self.amp_high * torch.tanh(raw)
        if self.amplitude_activation == "softplus":
            return F.softplus(raw)
        return raw

    def render(self, coarse: Tensor, features: Tensor | None = None) -> Tensor:
        """Rendered frames (B, T, C, H, W) for coarse frames (B, T, C, H, W)."""
        b, t = coarse.shape[:2]
        source = coarse if self.source == "output" else features
        if source is None:
            raise ValueError("PredGS with source: features was called without backbone features")
        g = self.gaussians(rearrange(source, "b t c h w -> (b t) c h w"))
        c, h, w = self.frame_shape
        image = rasterize_gaussians(
            g["means"], g["scales"], g["rotations"], g["amplitudes"], h, w, self.kernel_size, backend=self.backend
        )
        return rearrange(image, "(b t) c h w -> b t c h w", b=b, t=t)

    def forward(self, coarse: Tensor, features: Tensor | None = None) -> Tensor:
        """(B, T, C, H, W) coarse frames (and optional features (B, T, F, h, w)) -> (B, T, C, H, W)."""
        if not self.training and not self.enabled_at_inference:
            return coarse
        rendered = self.render(coarse, features)
        if self.fusion_mode == "add":
            return coarse + rendered
        b = coarse.shape[0]
        fused = self.fuse(rearrange(torch.cat([coarse, rendered], dim=2), "b t c h w -> (b t) c h w"))
        return rearrange(fused, "(b t) c h w -> b t c h w", b=b)


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
