"""Pixel metrics with OpenSTL's conventions: MSE, MAE, RMSE, PSNR, SNR and SSIM; PSNR on 8-bit frames as
E3D-LSTM and PredRNN compute it.

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


@register("psnr_uint8", "pixel", higher_is_better=True,
          definition="per frame 20 log10(255) - 10 log10(mean (q(clip(pred)) - q(true))^2) on 8-bit frames "
                     "q(x) = trunc(255 x) (E3D-LSTM's and PredRNN's code), averaged")
def psnr_uint8(batch: FrameBatch) -> dict:
    lo, hi = batch.clip_range
    # as the reference code does: np.uint8(x * 255) of float32 frames in [0, 1] truncates
    pred, true = (np.trunc(np.clip((a - lo) / (hi - lo), 0.0, 1.0).astype(np.float32) * np.float32(255.0))
                  for a in (batch.clipped, batch.true))
    frame_mse = ((pred.astype(np.float64) - true) ** 2).mean(axis=(2, 3, 4))
    with np.errstate(divide="ignore"):
        return {"psnr_uint8": 20.0 * np.log10(255.0) - 10.0 * np.log10(frame_mse)}


@register("snr", "pixel", higher_is_better=True,
          definition="per frame 10 log10(mean true^2 / mean (true - clip(pred))^2), averaged")
def snr(batch: FrameBatch) -> dict:
    signal = (batch.true**2).mean(axis=(2, 3, 4))
    noise = ((batch.true - batch.clipped) ** 2).mean(axis=(2, 3, 4))
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"snr": 10.0 * np.log10(signal / noise)}


SSIM_WINDOW = 7  # scikit-image's default, the published numbers' window
SSIM_MIN_WINDOW = 3


def ssim_window(height: int, width: int) -> int | None:
    """The SSIM window of height x width frames: 7, or on frames smaller than 7 pixels on a side the largest odd
    size that fits (5 for 5x6 or 6x6 frames, 3 for 3x3 or 4x4); None below 3 pixels (no SSIM)."""
    side = min(SSIM_WINDOW, height, width)
    side -= 1 - side % 2
    return side if side >= SSIM_MIN_WINDOW else None


@register("ssim", "pixel", higher_is_better=True,
          definition="per frame scikit-image SSIM, 7x7 uniform window (smaller on frames under 7 pixels a side: "
                     "the largest odd one that fits; n/a under 3), (W, H, C) frames, mean over channels, "
                     "data_range 2.0")
def ssim(batch: FrameBatch) -> dict | None:
    from skimage.metrics import structural_similarity

    pred, true = batch.clipped, batch.true
    b, t, _, h, w = pred.shape
    window = ssim_window(h, w)
    if window is None:
        batch.notes["ssim"] = (f"SSIM n/a: {h}x{w} frames are smaller than its smallest window "
                               f"({SSIM_MIN_WINDOW}x{SSIM_MIN_WINDOW})")
        return None
    if window != SSIM_WINDOW:
        batch.notes["ssim"] = (f"SSIM of {h}x{w} frames uses a {window}x{window} window (the standard 7x7 does not "
                               "fit): not comparable with SSIM values of larger frames")
    out = np.empty((b, t))
    for i in range(b):
        for j in range(t):
            out[i, j] = structural_similarity(pred[i, j].swapaxes(0, 2), true[i, j].swapaxes(0, 2), win_size=window,
                                              channel_axis=-1, data_range=2.0)
    return {"ssim": out}
