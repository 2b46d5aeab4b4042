"""Pixel metrics with OpenSTL's conventions: MSE, MAE, RMSE, PSNR, SNR and SSIM.

Every function takes a ``FrameBatch`` and returns ``{key: (B, T) array}`` of per-frame values.
"""
from __future__ import annotations

import math

import numpy as np

from .registry import FrameBatch, register


def _error_sum(batch: FrameBatch, power: int) -> np.ndarray:
    """Per frame: the sum over C, H, W of |pred - true|^power, divided by C*H*W with spatial_norm."""
    err = np.abs(batch.pred - batch.true) ** power
    total = err.sum(axis=(2, 3, 4))
    return total / math.prod(batch.pred.shape[2:]) if batch.spatial_norm else total


def _squared_errors(batch: FrameBatch) -> np.ndarray:
    if "mse" not in batch.cache:
        batch.cache["mse"] = _error_sum(batch, 2)
    return batch.cache["mse"]


@register("mse", "pixel", higher_is_better=False, per_variable=True,
          definition="mean over sequences and frames of the sum over C, H, W of (pred - true)^2 (divided by C*H*W "
                     "with spatial_norm)")
def mse(batch: FrameBatch) -> dict:
    return {"mse": _squared_errors(batch)}


@register("mae", "pixel", higher_is_better=False, per_variable=True,
          definition="as MSE with |pred - true|")
def mae(batch: FrameBatch) -> dict:
    return {"mae": _error_sum(batch, 1)}


def _rmse_reduce(means: dict) -> tuple[np.ndarray, float]:
    return np.sqrt(means["mse"]), math.sqrt(float(means["mse"].mean()))


@register("rmse", "pixel", higher_is_better=False, per_variable=True, reduce=_rmse_reduce,
          definition="square root of the MSE (the per-frame curve: square root of each frame's mean MSE)")
def rmse(batch: FrameBatch) -> dict:
    return {"mse": _squared_errors(batch)}


@register("psnr", "pixel", higher_is_better=True,
          definition="per frame 20 log10(1 / sqrt(mean (clip(pred) - true)^2)), averaged")
def psnr(batch: FrameBatch) -> dict:
    frame_mse = ((batch.clipped - batch.true) ** 2).mean(axis=(2, 3, 4))
    with np.errstate(divide="ignore"):
        return {"psnr": 20.0 * np.log10(1.0 / np.sqrt(frame_mse))}


@register("snr", "pixel", higher_is_better=True,
          definition="per frame 10 log10(mean true^2 / mean (true - clip(pred))^2), averaged")
def snr(batch: FrameBatch) -> dict:
    signal = (batch.true**2).mean(axis=(2, 3, 4))
    noise = ((batch.true - batch.clipped) ** 2).mean(axis=(2, 3, 4))
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"snr": 10.0 * np.log10(signal / noise)}


@register("ssim", "pixel", higher_is_better=True,
          definition="per frame scikit-image SSIM, 7x7 uniform window, (W, H, C) frames, mean over channels, "
                     "data_range 2.0")
def ssim(batch: FrameBatch) -> dict:
    from skimage.metrics import structural_similarity

    pred, true = batch.clipped, batch.true
    b, t = pred.shape[:2]
    out = np.empty((b, t))
    for i in range(b):
        for j in range(t):
            out[i, j] = structural_similarity(pred[i, j].swapaxes(0, 2), true[i, j].swapaxes(0, 2),
                                              channel_axis=-1, data_range=2.0)
    return {"ssim": out}
