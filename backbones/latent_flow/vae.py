"""A small 2D convolutional VAE: frames (N, C, H, W) <-> latent maps (N, L, H/2^levels, W/2^levels)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

OUTPUT_ACTIVATIONS = ("sigmoid", "none")


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(8 if ch % 8 == 0 else 1, ch)


class ResBlock(nn.Module):
    """Two 3x3 convs with GroupNorm/SiLU and a skip: (N, ch, h, w) -> (N, ch, h, w)."""

    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, 1, 1),
                                  _norm(ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class LatentVAE(nn.Module):
    """Encoder: ``levels`` stride-2 convs (widths nf, 2nf, ... capped at 4nf) and a res block, then a 1x1 conv
    to the mean and log-variance of a ``latent_channels`` map.  Decoder: the mirror (transposed convs), with a
    3x3 readout; ``output_activation: sigmoid`` for data in [0, 1]."""

    def __init__(self, channels: int, latent_channels: int = 8, nf: int = 32, levels: int = 2,
                 output_activation: str = "sigmoid"):
        super().__init__()
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"output_activation must be one of {list(OUTPUT_ACTIVATIONS)}, got {output_activation!r}")
        widths = [nf * 2 ** min(i, 2) for i in range(levels + 1)]
        enc: list[nn.Module] = [nn.Conv2d(channels, widths[0], 3, 1, 1)]
        for i in range(levels):
            enc += [_norm(widths[i]), nn.SiLU(), nn.Conv2d(widths[i], widths[i + 1], 4, 2, 1)]
        enc += [ResBlock(widths[-1]), _norm(widths[-1]), nn.SiLU(), nn.Conv2d(widths[-1], 2 * latent_channels, 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(latent_channels, widths[-1], 3, 1, 1), ResBlock(widths[-1])]
        for i in reversed(range(levels)):
            dec += [_norm(widths[i + 1]), nn.SiLU(), nn.ConvTranspose2d(widths[i + 1], widths[i], 4, 2, 1)]
        dec += [_norm(widths[0]), nn.SiLU()]
        self.decoder_body = nn.Sequential(*dec)
        self.readout = nn.Conv2d(widths[0], channels, 3, 1, 1)
        self.latent_channels, self.levels, self.feature_channels = latent_channels, levels, widths[0]
        self.output_activation = output_activation

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (N, C, H, W) -> mean, logvar (N, L, H/2^levels, W/2^levels); logvar clamped to [-10, 10]."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-10.0, 10.0)

    @staticmethod
    def sample(mean: Tensor, logvar: Tensor) -> Tensor:
        """Reparameterised draw z = mean + exp(logvar / 2) * eps."""
        return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)

    def decode(self, z: Tensor, return_features: bool = False):
        """z (N, L, h, w) -> frames (N, C, H, W) (and decoder features (N, nf, H, W))."""
        feats = self.decoder_body(z)
        out = self.readout(feats)
        if self.output_activation == "sigmoid":
            out = torch.sigmoid(out)
        return (out, feats) if return_features else out
