"""SimVP translators: the middle network that maps the time-stacked latents of the input frames
to those of the predicted frames.

All of them see the T latents of shape (hid_S, h, w) stacked on channels, one map of
``T * hid_S`` channels, and return a map of the same shape:

- ``gsta``: gated spatio-temporal attention blocks (SimVP v2, OpenSTL's default);
- ``tau``: Temporal Attention Unit blocks (TAU): a large-kernel *statistical* attention within the
  frame (depthwise, dilated depthwise and 1x1 convolutions) multiplied by a *dynamical* attention
  across the stacked frames (squeeze-and-excitation over the channels, which are time x hid_S);
- ``incepu``: the Inception-UNet of SimVP v1 (grouped multi-kernel convolutions, U-Net skips).

Hyperparameter names follow OpenSTL (hid_T, N_T, mlp_ratio, drop, drop_path, incep_ker, groups)
and the parameter counts equal OpenSTL's for the same values.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from einops import rearrange
from timm.layers import DropPath
from torch import Tensor, nn

TRANSLATORS = ("gsta", "tau", "incepu")


def _init_fan_out(m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            m.bias.data.zero_()


def _large_kernel_sizes(kernel_size: int, dilation: int) -> tuple[int, int]:
    """A K x K receptive field as a (2d-1) depthwise conv followed by a dilated depthwise conv."""
    local = 2 * dilation - 1
    dilated = kernel_size // dilation + ((kernel_size // dilation) % 2 - 1)
    return local, dilated


# ----------------------------------------------------------------------------- gSTA


class LargeKernelGate(nn.Module):
    """(M, dim, h, w) -> (M, dim, h, w): a large receptive field from a depthwise conv and a dilated
    depthwise conv, split by a 1x1 conv into a value and a sigmoid gate."""

    def __init__(self, dim: int, kernel_size: int = 21, dilation: int = 3):
        super().__init__()
        local, dilated = _large_kernel_sizes(kernel_size, dilation)
        self.local = nn.Conv2d(dim, dim, local, padding=(local - 1) // 2, groups=dim)
        self.dilated = nn.Conv2d(dim, dim, dilated, padding=dilation * (dilated - 1) // 2, groups=dim, dilation=dilation)
        self.mix = nn.Conv2d(dim, 2 * dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        value, gate = self.mix(self.dilated(self.local(x))).chunk(2, dim=1)
        return torch.sigmoid(gate) * value


class GatedAttention(nn.Module):
    """1x1 conv, GELU, gate, 1x1 conv, with a shortcut: (M, dim, h, w) -> (M, dim, h, w)."""

    def __init__(self, dim: int, kernel_size: int = 21):
        super().__init__()
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.act = nn.GELU()
        self.gate = self._make_gate(dim, kernel_size)
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def _make_gate(self, dim: int, kernel_size: int) -> nn.Module:
        return LargeKernelGate(dim, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.proj_out(self.gate(self.act(self.proj_in(x))))


class ConvMlp(nn.Module):
    """1x1 conv, depthwise 3x3, GELU, 1x1 conv: (M, dim, h, w) -> (M, dim, h, w)."""

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

    attention = GatedAttention

    def __init__(self, dim: int, mlp_ratio: float = 8.0, drop: float = 0.0, drop_path: float = 0.0, kernel_size: int = 21):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = self.attention(dim, kernel_size)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), drop)
        self.scale1 = nn.Parameter(1e-2 * torch.ones(dim))
        self.scale2 = nn.Parameter(1e-2 * torch.ones(dim))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.apply(_init_fan_out)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.scale1[:, None, None] * self.attn(self.norm1(x)))
        return x + self.drop_path(self.scale2[:, None, None] * self.mlp(self.norm2(x)))


# ----------------------------------------------------------------------------- TAU


def se_hidden_width(dim: int, reduction: int = 16) -> int:
    """Width of the squeeze-and-excitation bottleneck of TAU's dynamical attention.

    The reduction factor is ``max(dim // reduction, 4)``, so wide translators (dim >= 64) get a
    bottleneck of about ``reduction`` channels: the same sizes as OpenSTL's TAU.
    """
    return max(1, dim // max(dim // reduction, 4))


class TemporalAttentionGate(nn.Module):
    """TAU's attention on (M, dim, h, w), dim = time x channels stacked.

    statistical (intra-frame) attention: depthwise conv -> dilated depthwise conv -> 1x1 conv;
    dynamical (inter-frame) attention: global average pool -> Linear -> ReLU -> Linear -> sigmoid,
    one weight per stacked channel. Output: dynamical x statistical x input, (M, dim, h, w).
    """

    def __init__(self, dim: int, kernel_size: int = 21, dilation: int = 3, reduction: int = 16):
        super().__init__()
        local, dilated = _large_kernel_sizes(kernel_size, dilation)
        self.local = nn.Conv2d(dim, dim, local, padding=(local - 1) // 2, groups=dim)
        self.dilated = nn.Conv2d(dim, dim, dilated, padding=dilation * (dilated - 1) // 2, groups=dim, dilation=dilation)
        self.mix = nn.Conv2d(dim, dim, 1)
        hidden = se_hidden_width(dim, reduction)
        self.squeeze = nn.Linear(dim, hidden, bias=False)
        self.excite = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        statistical = self.mix(self.dilated(self.local(x)))
        pooled = x.mean(dim=(2, 3))
        dynamical = torch.sigmoid(self.excite(torch.relu(self.squeeze(pooled))))[:, :, None, None]
        return dynamical * statistical * x


class TemporalAttention(GatedAttention):
    """1x1 conv, GELU, TAU attention, 1x1 conv, with a shortcut."""

    def _make_gate(self, dim: int, kernel_size: int) -> nn.Module:
        return TemporalAttentionGate(dim, kernel_size)


class TAUBlock(GSTABlock):
    """A TAU block: the gSTA block's layout with temporal (statistical x dynamical) attention."""

    attention = TemporalAttention


# ----------------------------------------------------------------------------- stacks of meta blocks


class TranslatorBlock(nn.Module):
    """A gSTA or TAU block on ``c_in`` channels, then a 1x1 conv to ``c_out`` when they differ."""

    def __init__(self, c_in: int, c_out: int, mlp_ratio: float, drop: float, drop_path: float, kind: str = "gsta"):
        super().__init__()
        block = {"gsta": GSTABlock, "tau": TAUBlock}[kind]
        self.block = block(c_in, mlp_ratio, drop, drop_path)
        self.reduce = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.reduce(self.block(x))


class MetaTranslator(nn.Module):
    """N_T gSTA or TAU blocks on the time-stacked latents: T*hid_S -> hid_T -> ... -> T*hid_S.

    (B, T, hid_S, h, w) -> (B, T, hid_S, h, w). Stochastic depth rises linearly from 0.01 to
    ``drop_path`` over the blocks.
    """

    def __init__(self, c_in: int, c_hid: int, num_blocks: int, mlp_ratio: float, drop: float, drop_path: float,
                 kind: str = "gsta"):
        super().__init__()
        if num_blocks < 2:
            raise ValueError(f"N_T must be >= 2 (one block in, one out), got {num_blocks}")
        if mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, got {mlp_ratio}")
        rates = torch.linspace(1e-2, drop_path, num_blocks, device="cpu").tolist()
        widths = [c_in] + [c_hid] * (num_blocks - 1) + [c_in]
        self.blocks = nn.Sequential(
            *[TranslatorBlock(widths[i], widths[i + 1], mlp_ratio, drop, rates[i], kind) for i in range(num_blocks)]
        )

    def forward(self, z: Tensor) -> Tensor:
        t = z.shape[1]
        out = self.blocks(rearrange(z, "b t c h w -> b (t c) h w"))
        return rearrange(out, "b (t c) h w -> b t c h w", t=t)


class GSTATranslator(MetaTranslator):
    """The gSTA translator (kept under its own name)."""

    def __init__(self, c_in: int, c_hid: int, num_blocks: int, mlp_ratio: float, drop: float, drop_path: float):
        super().__init__(c_in, c_hid, num_blocks, mlp_ratio, drop, drop_path, kind="gsta")


# ----------------------------------------------------------------------------- IncepU (SimVP v1)


class GroupConvNormAct(nn.Module):
    """Grouped K x K conv, GroupNorm, LeakyReLU(0.2): (M, c_in, h, w) -> (M, c_out, h, w).

    Falls back to one group when ``groups`` does not divide c_in (as SimVP v1 does).
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int, groups: int):
        super().__init__()
        if c_in % groups or c_out % groups:
            groups = 1
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, groups=groups)
        self.norm = nn.GroupNorm(groups, c_out)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(x)))


class InceptionBlock(nn.Module):
    """1x1 conv to ``c_hid``, then the sum of one grouped conv branch per kernel size, to ``c_out``."""

    def __init__(self, c_in: int, c_hid: int, c_out: int, kernels: Sequence[int], groups: int):
        super().__init__()
        self.squeeze = nn.Conv2d(c_in, c_hid, 1)
        self.branches = nn.ModuleList([GroupConvNormAct(c_hid, c_out, k, groups) for k in kernels])

    def forward(self, x: Tensor) -> Tensor:
        x = self.squeeze(x)
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


class IncepUTranslator(nn.Module):
    """SimVP v1's Inception-UNet: N_T encoder and N_T decoder Inception blocks with U-Net skips.

    (B, T, hid_S, h, w) -> (B, T, hid_S, h, w). Encoder: T*hid_S -> hid_T -> ... -> hid_T;
    decoder: hid_T -> hid_T, then [hid_T + skip] -> hid_T ... -> T*hid_S. Each block squeezes its
    input to hid_T // 2 channels first.
    """

    def __init__(self, c_in: int, c_hid: int, num_blocks: int, kernels: Sequence[int] = (3, 5, 7, 11), groups: int = 8):
        super().__init__()
        kernels = [int(k) for k in kernels]
        if num_blocks < 2:
            raise ValueError(f"N_T must be >= 2 (the Inception-UNet needs an encoder and a decoder), got {num_blocks}")
        if len(kernels) < 2 or any(k < 1 or k % 2 == 0 for k in kernels):
            raise ValueError(f"incep_ker must list at least two odd kernel sizes, got {kernels}")
        if groups < 1:
            raise ValueError(f"groups must be >= 1, got {groups}")
        if c_hid < 2:
            raise ValueError(f"hid_T must be >= 2 for the Inception-UNet, got {c_hid}")
        squeeze = c_hid // 2
        self.num_blocks = num_blocks
        self.encoder = nn.ModuleList(
            [InceptionBlock(c_in if i == 0 else c_hid, squeeze, c_hid, kernels, groups) for i in range(num_blocks)]
        )
        self.decoder = nn.ModuleList(
            [
                InceptionBlock(c_hid if i == 0 else 2 * c_hid, squeeze, c_in if i == num_blocks - 1 else c_hid,
                               kernels, groups)
                for i in range(num_blocks)
            ]
        )

    def forward(self, z: Tensor) -> Tensor:
        t = z.shape[1]
        x = rearrange(z, "b t c h w -> b (t c) h w")
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x)
            if i < self.num_blocks - 1:
                skips.append(x)
        x = self.decoder[0](x)
        for block in self.decoder[1:]:
            x = block(torch.cat([x, skips.pop()], dim=1))
        return rearrange(x, "b (t c) h w -> b t c h w", t=t)


def build_translator(kind: str, c_in: int, c_hid: int, num_blocks: int, mlp_ratio: float, drop: float,
                     drop_path: float, incep_ker: Sequence[int] = (3, 5, 7, 11), groups: int = 8) -> nn.Module:
    """The translator ``kind`` (one of TRANSLATORS) for ``c_in = T * hid_S`` stacked channels."""
    if kind == "incepu":
        return IncepUTranslator(c_in, c_hid, num_blocks, incep_ker, groups)
    return MetaTranslator(c_in, c_hid, num_blocks, mlp_ratio, drop, drop_path, kind=kind)
