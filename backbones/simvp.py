"""SimVP: a convolutional encoder, a translator over time-stacked latents, a decoder.

Hyperparameter names follow OpenSTL (hid_S, hid_T, N_S, N_T, model_type, mlp_ratio, drop,
drop_path, spatio_kernel_enc, spatio_kernel_dec) so that values from an OpenSTL config carry
over. ``model_type`` picks the translator (see ``translators.py``): ``gsta`` (gated
spatio-temporal attention, OpenSTL's default), ``tau`` (Temporal Attention Unit) or ``incepu``
(SimVP v1's Inception-UNet). ``tau`` is also registered on its own, as OpenSTL does: a preset of
SimVP with TAU's differential divergence regularization (``alpha``) on by default.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import trunc_normal_
from torch import Tensor, nn

from pdr.registry import BACKBONES

from .base import Backbone, BackboneOutput
from .translators import TRANSLATORS, build_translator


def sampling_pattern(num_layers: int, reverse: bool = False) -> list[bool]:
    """Which of ``num_layers`` conv layers change resolution: every second one, by 2."""
    pattern = ([False, True] * (num_layers // 2 + 1))[:num_layers]
    return list(reversed(pattern)) if reverse else pattern


class ConvNormAct(nn.Module):
    """Conv (stride 2 to go down, conv + pixel shuffle to go up), GroupNorm(2), SiLU."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, downsample: bool = False, upsample: bool = False):
        super().__init__()
        stride = 2 if downsample else 1
        padding = (kernel_size - stride + 1) // 2
        if upsample:
            self.conv = nn.Sequential(
                nn.Conv2d(c_in, c_out * 4, kernel_size, 1, padding=kernel_size // 2), nn.PixelShuffle(2)
            )
        else:
            self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride, padding=padding)
        self.norm = nn.GroupNorm(2, c_out)
        self.act = nn.SiLU(inplace=True)
        self.apply(_init_conv)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(x)))


def _init_conv(m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class Encoder(nn.Module):
    """(B*T, C, H, W) -> latent (B*T, hid, H/2^(N/2), W/2^(N/2)) and the first layer's map for the skip."""

    def __init__(self, c_in: int, hid: int, num_layers: int, kernel_size: int):
        super().__init__()
        pattern = sampling_pattern(num_layers)
        self.layers = nn.ModuleList(
            [ConvNormAct(c_in if i == 0 else hid, hid, kernel_size, downsample=down) for i, down in enumerate(pattern)]
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        skip = self.layers[0](x)
        latent = skip
        for layer in self.layers[1:]:
            latent = layer(latent)
        return latent, skip


class Decoder(nn.Module):
    """Latent and skip -> (B*T, C_out, H, W); also returns the map before the 1x1 readout."""

    def __init__(self, hid: int, c_out: int, num_layers: int, kernel_size: int):
        super().__init__()
        pattern = sampling_pattern(num_layers, reverse=True)
        self.layers = nn.ModuleList([ConvNormAct(hid, hid, kernel_size, upsample=up) for up in pattern])
        self.readout = nn.Conv2d(hid, c_out, 1)

    def forward(self, latent: Tensor, skip: Tensor) -> tuple[Tensor, Tensor]:
        for layer in self.layers[:-1]:
            latent = layer(latent)
        features = self.layers[-1](latent + skip)
        return self.readout(features), features


def differential_divergence(pred: Tensor, target: Tensor, tau: float = 0.1, eps: float = 1e-12) -> Tensor:
    """TAU's differential divergence regularization (a scalar).

    ``pred`` and ``target`` (B, T, C, H, W): the differences between consecutive frames are turned
    into a distribution over the C*H*W positions by a softmax with temperature ``tau``; the result
    is KL(pred || target), averaged over every position, pair of frames and sequence (OpenSTL's
    normalization). Zero for T <= 2, as in OpenSTL.
    """
    b, t = pred.shape[:2]
    if t <= 2:
        return pred.new_zeros(())
    gap_pred = (pred[:, 1:] - pred[:, :-1]).reshape(b, t - 1, -1).float()
    gap_true = (target[:, 1:] - target[:, :-1]).reshape(b, t - 1, -1).float()
    p = F.softmax(gap_pred / tau, dim=-1)
    q = F.softmax(gap_true / tau, dim=-1)
    return (p * torch.log(p / (q + eps) + eps)).mean()


def ddr_loss(frames: Tensor, targets: Tensor, alpha: float) -> dict[str, Tensor]:
    """TAU's regularization as an auxiliary loss: ``{"ddr": alpha * differential_divergence}`` between the
    first T_out frames of a rollout (B, >= T_out, C, H, W) and the targets (B, T_out, C, H, W); {} for alpha 0."""
    if alpha <= 0:
        return {}
    pred = frames[:, : targets.shape[1]]
    return {"ddr": alpha * differential_divergence(pred, targets[:, : pred.shape[1]])}


@BACKBONES.register("simvp")
class SimVP(Backbone):
    """SimVP: encoder, translator (gSTA, TAU or IncepU), decoder.

    Input (B, T_in, C, H, W) -> output (B, T_in, C, H, W): one call predicts as many frames as it
    sees; the model wrapper rolls out or truncates to ``out_frames``. H and W must be divisible
    by 2^(N_S // 2). ``forward(x, return_features=True)`` also returns (as ``features``) the
    decoder's last map before the 1x1 readout, (B, T_in, hid_S, H, W).

    Args:
        hid_S: channels of the spatial encoder/decoder.
        hid_T: channels of the translator.
        N_S: encoder (and decoder) layers; every second one halves (doubles) the resolution.
        N_T: translator blocks (IncepU: blocks of its encoder and of its decoder each).
        model_type: translator, one of ``gsta``, ``tau``, ``incepu`` (case-insensitive, so
            OpenSTL's ``gSTA`` and ``IncepU`` work).
        mlp_ratio, drop, drop_path: MLP width, dropout and stochastic depth of gSTA/TAU blocks.
        spatio_kernel_enc, spatio_kernel_dec: kernel sizes of the encoder and decoder convs.
        incep_ker, groups: kernel sizes and groups of the IncepU branches.
        alpha: weight of TAU's differential divergence regularization between predicted and true
            frame differences over the whole rollout, added as the auxiliary loss ``ddr`` in training
            (0 disables it; it needs the targets, so the backbone then asks for them).
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        out_frames: int,
        hid_S: int = 16,
        hid_T: int = 256,
        N_S: int = 4,
        N_T: int = 4,
        model_type: str = "gsta",
        mlp_ratio: float = 8.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
        spatio_kernel_enc: int = 3,
        spatio_kernel_dec: int = 3,
        incep_ker: Sequence[int] = (3, 5, 7, 11),
        groups: int = 8,
        alpha: float = 0.0,
    ):
        super().__init__(in_shape, out_frames)
        t, c, h, w = self.in_shape
        kind = str(model_type).lower()
        if kind not in TRANSLATORS:
            raise ValueError(f"model_type must be one of {list(TRANSLATORS)} (case-insensitive), got {model_type!r}")
        for name, value in (("hid_S", hid_S), ("hid_T", hid_T), ("N_S", N_S)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if hid_S % 2:
            raise ValueError(f"hid_S must be even (the encoder's GroupNorm has 2 groups), got {hid_S}")
        for name, value in (("spatio_kernel_enc", spatio_kernel_enc), ("spatio_kernel_dec", spatio_kernel_dec)):
            if value < 1 or value % 2 == 0:
                raise ValueError(f"{name} must be odd and positive, got {value}")
        if not 0 <= drop < 1 or not 0 <= drop_path < 1:
            raise ValueError(f"drop and drop_path must be in [0, 1), got drop={drop}, drop_path={drop_path}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        factor = 2 ** (N_S // 2)
        if h % factor or w % factor:
            raise ValueError(f"SimVP with N_S={N_S} needs H and W divisible by {factor}, got {h}x{w}")
        self.model_type = kind
        self.encoder = Encoder(c, hid_S, N_S, spatio_kernel_enc)
        self.translator = build_translator(kind, t * hid_S, hid_T, N_T, mlp_ratio, drop, drop_path, incep_ker, groups)
        self.decoder = Decoder(hid_S, c, N_S, spatio_kernel_dec)
        self.feature_channels = hid_S
        self.alpha = float(alpha)
        self.uses_targets = self.alpha > 0  # the regularization compares with the true frames

    @classmethod
    def size_multiple(cls, in_shape: Sequence[int], N_S: int = 4, **_) -> int:
        """H and W must be multiples of 2^(N_S // 2) (every second encoder layer halves them)."""
        return 2 ** (int(N_S) // 2)

    def forward(self, x: Tensor, return_features: bool = False, targets: Tensor | None = None,
                step: int | None = None) -> BackboneOutput:
        """(B, T_in, C, H, W) -> frames (B, T_in, C, H, W) [and features (B, T_in, hid_S, H, W)].

        ``targets`` and ``step`` are accepted (the model passes them in training when ``alpha`` > 0) and
        unused: the ``alpha`` regularization is a loss over the whole rollout (``rollout_losses``).
        """
        b = x.shape[0]
        latent, skip = self.encoder(rearrange(x, "b t c h w -> (b t) c h w"))
        latent = self.translator(rearrange(latent, "(b t) c h w -> b t c h w", b=b))
        frames, features = self.decoder(rearrange(latent, "b t c h w -> (b t) c h w"), skip)
        frames = rearrange(frames, "(b t) c h w -> b t c h w", b=b)
        if return_features:
            return BackboneOutput(frames, rearrange(features, "(b t) c h w -> b t c h w", b=b))
        return BackboneOutput(frames)

    def rollout_losses(self, frames: Tensor, targets: Tensor) -> dict[str, Tensor]:
        """``ddr`` (``ddr_loss``) of the rollout's frames (B, >= T_out, C, H, W) and the targets (B, T_out, C, H, W)
        in training; {} in eval mode or with ``alpha`` 0."""
        return ddr_loss(frames, targets, self.alpha) if self.training else {}


TAU = BACKBONES.register_preset(
    "tau", SimVP, defaults={"alpha": 0.1}, fixed={"model_type": "tau"}, omit=("incep_ker", "groups"),
    doc="""TAU (Temporal Attention Unit): SimVP with ``model_type: tau`` and, as in OpenSTL's TAU
    method, the differential divergence regularization on by default (``alpha = 0.1``).

    SimVP's arguments but IncepU's ``incep_ker`` and ``groups``; ``model_type`` is accepted
    (OpenSTL's TAU configs set it) but must be ``tau``.
    """,
)
