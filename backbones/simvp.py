"""SimVP: a convolutional encoder, a translator over time-stacked latents, a decoder.

Hyperparameter names follow OpenSTL (hid_S, hid_T, N_S, N_T, mlp_ratio, drop, drop_path,
spatio_kernel_enc, spatio_kernel_dec) so that values from an OpenSTL config carry over.
The translator here is gSTA (gated spatio-temporal attention), OpenSTL's default.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from einops import rearrange
from timm.layers import DropPath, trunc_normal_
from torch import Tensor, nn

from pdr.registry import BACKBONES

from .base import Backbone


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


class LargeKernelGate(nn.Module):
    """A large receptive field from a depthwise conv and a dilated depthwise conv, as a sigmoid gate."""

    def __init__(self, dim: int, kernel_size: int = 21, dilation: int = 3):
        super().__init__()
        local = 2 * dilation - 1
        dilated = kernel_size // dilation + ((kernel_size // dilation) % 2 - 1)
        self.local = nn.Conv2d(dim, dim, local, padding=(local - 1) // 2, groups=dim)
        self.dilated = nn.Conv2d(dim, dim, dilated, padding=dilation * (dilated - 1) // 2, groups=dim, dilation=dilation)
        self.mix = nn.Conv2d(dim, 2 * dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        value, gate = self.mix(self.dilated(self.local(x))).chunk(2, dim=1)
        return torch.sigmoid(gate) * value


class GatedAttention(nn.Module):
    def __init__(self, dim: int, kernel_size: int = 21):
        super().__init__()
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.act = nn.GELU()
        self.gate = LargeKernelGate(dim, kernel_size)
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.proj_out(self.gate(self.act(self.proj_in(x))))


class ConvMlp(nn.Module):
    """1x1 conv, depthwise 3x3, GELU, 1x1 conv."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.dw(self.fc1(x))))))


class GSTABlock(nn.Module):
    """gSTA: pre-norm gated attention and conv MLP, each with layer scale and stochastic depth."""

    def __init__(self, dim: int, mlp_ratio: float = 8.0, drop: float = 0.0, drop_path: float = 0.0, kernel_size: int = 21):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = GatedAttention(dim, kernel_size)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), drop)
        self.scale1 = nn.Parameter(1e-2 * torch.ones(dim))
        self.scale2 = nn.Parameter(1e-2 * torch.ones(dim))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.apply(_init_fan_out)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.scale1[:, None, None] * self.attn(self.norm1(x)))
        return x + self.drop_path(self.scale2[:, None, None] * self.mlp(self.norm2(x)))


def _init_fan_out(m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            m.bias.data.zero_()


class TranslatorBlock(nn.Module):
    """A gSTA block on ``c_in`` channels, then a 1x1 conv to ``c_out`` when they differ."""

    def __init__(self, c_in: int, c_out: int, mlp_ratio: float, drop: float, drop_path: float):
        super().__init__()
        self.block = GSTABlock(c_in, mlp_ratio, drop, drop_path)
        self.reduce = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.reduce(self.block(x))


class GSTATranslator(nn.Module):
    """Stacks the T latents on channels, T*hid_S -> hid_T -> ... -> T*hid_S."""

    def __init__(self, c_in: int, c_hid: int, num_blocks: int, mlp_ratio: float, drop: float, drop_path: float):
        super().__init__()
        if num_blocks < 2:
            raise ValueError(f"N_T must be >= 2 (one block in, one out), got {num_blocks}")
        rates = torch.linspace(1e-2, drop_path, num_blocks).tolist()
        widths = [c_in] + [c_hid] * (num_blocks - 1) + [c_in]
        self.blocks = nn.Sequential(
            *[TranslatorBlock(widths[i], widths[i + 1], mlp_ratio, drop, rates[i]) for i in range(num_blocks)]
        )

    def forward(self, z: Tensor) -> Tensor:
        b, t = z.shape[:2]
        out = self.blocks(rearrange(z, "b t c h w -> b (t c) h w"))
        return rearrange(out, "b (t c) h w -> b t c h w", t=t)


@BACKBONES.register("simvp")
class SimVP(Backbone):
    """SimVP with the gSTA translator.

    Input (B, T_in, C, H, W) -> output (B, T_in, C, H, W): one call predicts as many frames as it
    sees; the model wrapper rolls out or truncates to ``out_frames``. H and W must be divisible
    by 2^(N_S // 2).
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
    ):
        super().__init__(in_shape, out_frames)
        t, c, h, w = self.in_shape
        if model_type.lower() != "gsta":
            raise ValueError(f"model_type: only 'gsta' is available in this version, got {model_type!r}")
        factor = 2 ** (N_S // 2)
        if h % factor or w % factor:
            raise ValueError(f"SimVP with N_S={N_S} needs H and W divisible by {factor}, got {h}x{w}")
        self.encoder = Encoder(c, hid_S, N_S, spatio_kernel_enc)
        self.translator = GSTATranslator(t * hid_S, hid_T, N_T, mlp_ratio, drop, drop_path)
        self.decoder = Decoder(hid_S, c, N_S, spatio_kernel_dec)
        self.feature_channels = hid_S

    def forward(self, x: Tensor, return_features: bool = False):
        b, t = x.shape[:2]
        latent, skip = self.encoder(rearrange(x, "b t c h w -> (b t) c h w"))
        latent = self.translator(rearrange(latent, "(b t) c h w -> b t c h w", b=b))
        frames, features = self.decoder(rearrange(latent, "b t c h w -> (b t) c h w"), skip)
        frames = rearrange(frames, "(b t) c h w -> b t c h w", b=b)
        if return_features:
            return frames, rearrange(features, "(b t) c h w -> b t c h w", b=b)
        return frames
