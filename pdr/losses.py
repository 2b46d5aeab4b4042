"""Training losses, registered in ``pdr.registry.LOSSES``.

Every loss maps prediction and target (B, T, C, H, W) to a dict of scalar tensors: ``loss``
(what is optimised) and its named terms (what the log shows, and what a non-finite check
can point at).
"""
from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange
from kornia.metrics import ssim as kornia_ssim
from torch import Tensor, nn

from .registry import LOSSES


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")


class _ElementwiseLoss(nn.Module):
    """Mean of an elementwise error over every element, logged under its own name."""

    name = ""

    @staticmethod
    def error(pred: Tensor, target: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        _check_pair(pred, target)
        value = self.error(pred, target)
        return {"loss": value, self.name: value}


@LOSSES.register("mse")
class MSELoss(_ElementwiseLoss):
    """Mean squared error over every element."""

    name = "mse"
    error = staticmethod(F.mse_loss)


@LOSSES.register("l1")
class L1Loss(_ElementwiseLoss):
    """Mean absolute error over every element."""

    name = "l1"
    error = staticmethod(F.l1_loss)


def ssim_per_frame(pred: Tensor, target: Tensor, window_size: int = 11, data_range: float = 1.0) -> Tensor:
    """Mean SSIM of each frame over its pixels and channels: (B, T, C, H, W) -> (B, T).

    Gaussian window of ``window_size`` (kornia); frames smaller than the window use the largest odd window that fits.
    """
    b, t, c, h, w = pred.shape
    window = min(window_size, h - (h + 1) % 2, w - (w + 1) % 2)
    ssim_map = kornia_ssim(
        rearrange(pred, "b t c h w -> (b t) c h w"),
        rearrange(target, "b t c h w -> (b t) c h w"),
        window_size=window,
        max_val=data_range,
    )
    return ssim_map.mean(dim=(1, 2, 3)).view(b, t)


@LOSSES.register("l1_ssim")
class L1SSIMLoss(nn.Module):
    """``lam * L1 + (1 - lam) * (1 - SSIM) + mse_weight * MSE``, SSIM per frame over all channels (kornia).

    Args:
        lam: weight of the L1 term (the paper uses 0.5).
        window_size: SSIM Gaussian window.
        data_range: value range of the data (1.0 for [0, 1]; 2.0 for [-1, 1]).
        mse_weight: weight of an added MSE term (0, the paper's loss, by default). On sparse frames at small
            budgets L1/SSIM alone settles on the background (docs/ablations.md); an MSE term keeps the objects.
    """

    def __init__(self, lam: float = 0.5, window_size: int = 11, data_range: float = 1.0, mse_weight: float = 0.0):
        super().__init__()
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        if mse_weight < 0:
            raise ValueError(f"mse_weight must be >= 0, got {mse_weight}")
        self.mse_weight = float(mse_weight)
        self.lam, self.window_size, self.data_range = float(lam), int(window_size), float(data_range)

    def forward(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        _check_pair(pred, target)
        l1 = F.l1_loss(pred, target)
        dssim = 1.0 - ssim_per_frame(pred, target, self.window_size, self.data_range).mean()
        loss = self.lam * l1 + (1.0 - self.lam) * dssim
        if not self.mse_weight:
            return {"loss": loss, "l1": l1, "1-ssim": dssim}
        mse = F.mse_loss(pred, target)
        return {"loss": loss + self.mse_weight * mse, "l1": l1, "1-ssim": dssim, "mse": mse}


def build_loss(spec: dict) -> nn.Module:
    return LOSSES.build(spec["name"], **{k: v for k, v in spec.items() if k != "name"})


__all__ = ["MSELoss", "L1Loss", "L1SSIMLoss", "ssim_per_frame", "build_loss"]
