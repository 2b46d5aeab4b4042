"""Perceptual metrics: LPIPS (the ``lpips`` package's AlexNet), sharpness (blur) and contrast per frame, and the
LPIPS helpers the video metrics share."""
from __future__ import annotations

import numpy as np
import torch

from .registry import FrameBatch, register


def as_rgb_tensor(x: np.ndarray, device) -> torch.Tensor:
    """(N, C, H, W) numpy with C in (1, 3) -> float tensor (N, 3, H, W) on ``device``."""
    t = torch.from_numpy(np.ascontiguousarray(x)).float().to(device)
    return t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t


def lpips_pairs(a: np.ndarray, b: np.ndarray, lpips_model, device="cpu", scale: bool = True) -> np.ndarray:
    """LPIPS of matching frames of ``a`` and ``b`` (N, ..., C, H, W), C in (1, 3) -> (N, ...) values.

    ``scale``: frames in [0, 1] are mapped to LPIPS's input range [-1, 1]; without it they are passed as
    they are (values already in [-1, 1]).
    """
    lead = a.shape[:-3]
    a, b = a.reshape(-1, *a.shape[-3:]), b.reshape(-1, *b.shape[-3:])
    if scale:
        a, b = a * 2.0 - 1.0, b * 2.0 - 1.0
    with torch.no_grad():
        value = lpips_model(as_rgb_tensor(a, device), as_rgb_tensor(b, device))
    return value.reshape(lead).cpu().double().numpy()


@register("lpips", "perceptual", higher_is_better=False, network="lpips",
          definition="per frame LPIPS (AlexNet, lpips package) of clip(pred) and true mapped to [-1, 1]")
def lpips(batch: FrameBatch) -> dict | None:
    if not batch.channels_ok("lpips", "LPIPS"):  # the reason that holds whether or not the weights are there
        return None  # n/a, as without the weights
    net = batch.network("lpips")
    if net is None:
        return None
    return {"lpips": lpips_pairs(batch.clipped, batch.true, net, batch.device)}


def gradient_magnitude(frames: np.ndarray) -> np.ndarray:
    """Mean |grad| per (B, T) frame of (B, T, C, H, W), by forward differences."""
    gx = np.abs(np.diff(frames, axis=-1)).mean(axis=(-3, -2, -1))
    gy = np.abs(np.diff(frames, axis=-2)).mean(axis=(-3, -2, -1))
    return 0.5 * (gx + gy)


def _ratio_of_means(numerator: str, denominator: str):
    """``reduce`` of a ratio metric: the per-frame curve and the value, both ratios of means over sequences."""
    def reduce(means: dict) -> tuple[np.ndarray, float]:
        curve = means[numerator] / np.maximum(means[denominator], 1e-12)
        return curve, float(means[numerator].mean() / max(means[denominator].mean(), 1e-12))

    return reduce


@register("contrast", "perceptual", higher_is_better=None, reduce=_ratio_of_means("std_pred", "std_true"),
          definition="mean pixel standard deviation of the prediction's frames over that of the truth's (1: as much "
                     "contrast as the truth; near 0: flat frames, a collapse toward the background)")
def contrast(batch: FrameBatch) -> dict:
    return {"std_pred": batch.pred.std(axis=(-3, -2, -1)), "std_true": batch.true.std(axis=(-3, -2, -1))}


@register("sharpness", "perceptual", higher_is_better=None, reduce=_ratio_of_means("grad_pred", "grad_true"),
          definition="mean gradient magnitude of the prediction over that of the truth (1: as sharp as the truth)")
def sharpness(batch: FrameBatch) -> dict:
    return {"grad_pred": gradient_magnitude(batch.pred), "grad_true": gradient_magnitude(batch.true)}
