"""Evaluation metrics with OpenSTL's conventions, behind one entry point.

    pdr.metrics.evaluate(pred, true, metrics=("mse", "mae", "psnr", "ssim"), mean=None, std=None)

``pred`` and ``true`` are numpy arrays or tensors of shape (B, T, C, H, W). Conventions
(docs/pdr-method.md, section 4):

* the data normalisation is undone first (``x * std + mean``) when mean/std are given;
* MSE, MAE: mean over batch and frames of the SUM over channels and pixels; RMSE is the
  square root of that MSE;
* PSNR, SSIM, LPIPS: per frame, on the prediction clipped to ``clip_range`` (default [0, 1]);
  PSNR = 20 log10(1 / sqrt(mean squared error)); SSIM is scikit-image's with a 7x7 uniform
  window, channel axis last on (W, H, C) frames, averaged over channels, data_range 2.0
  (what OpenSTL's published numbers used); LPIPS is the ``lpips`` package's AlexNet on
  frames mapped to [-1, 1];
* sharpness: mean gradient magnitude of the prediction over that of the truth (1.0 is as
  sharp as the truth; blur scores below it).

For test sets that do not fit in memory use ``MetricAccumulator`` batch by batch; it gives
the same numbers as ``evaluate`` on the concatenated arrays.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from skimage.metrics import structural_similarity

AVAILABLE = ("mse", "mae", "rmse", "psnr", "ssim", "lpips", "sharpness")
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _stat(value, channels: int) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size not in (1, channels):
        raise ValueError(f"mean/std must be a scalar or one value per channel ({channels}), got {arr.size} values")
    return arr.reshape(1, 1, -1, 1, 1)


def lpips_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def load_lpips(device: str | torch.device = "cpu"):
    """The LPIPS(AlexNet) network, or ``(None, reason)`` when its weights are not in the torch cache.

    Returns (model, note); note is "" when the model is available.
    """
    path = lpips_weights_path()
    if not path.is_file():
        return None, (
            f"LPIPS skipped: AlexNet weights not found at {path}. Copy torchvision's ImageNet AlexNet "
            f"checkpoint ({ALEXNET_FILE}) there, or set TORCH_HOME to a folder that has checkpoints/{ALEXNET_FILE}."
        )
    import lpips

    model = lpips.LPIPS(net="alex", verbose=False).to(device).eval()
    return model, ""


def _gradient_magnitude(frames: np.ndarray) -> np.ndarray:
    """Mean |grad| per (B, T) frame of (B, T, C, H, W), by forward differences."""
    gx = np.abs(np.diff(frames, axis=-1)).mean(axis=(-3, -2, -1))
    gy = np.abs(np.diff(frames, axis=-2)).mean(axis=(-3, -2, -1))
    return 0.5 * (gx + gy)


class MetricAccumulator:
    """Accumulates per-sample, per-frame metric sums over batches.

    Args:
        metrics: names from ``AVAILABLE``.
        mean, std: statistics that undo the data normalisation (scalar or per channel), or None.
        clip_range: range the prediction is clipped to for PSNR, SSIM and LPIPS.
        lpips_model: an LPIPS network to use; None loads the pretrained AlexNet when its weights exist.
    """

    def __init__(
        self,
        metrics: Sequence[str] = ("mse", "mae"),
        mean=None,
        std=None,
        clip_range: tuple[float, float] = (0.0, 1.0),
        lpips_model=None,
        device: str | torch.device = "cpu",
    ):
        unknown = [m for m in metrics if m not in AVAILABLE]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; available: {', '.join(AVAILABLE)}")
        self.metrics = list(metrics)
        self.mean, self.std = mean, std
        self.clip_range = clip_range
        self.device = device
        self.notes: dict[str, str] = {}
        self.lpips_model = lpips_model
        if "lpips" in self.metrics and lpips_model is None:
            self.lpips_model, note = load_lpips(device)
            if note:
                self.notes["lpips"] = note
        self._sums: dict[str, np.ndarray] = {}
        self._count = 0

    def _add(self, name: str, per_frame: np.ndarray) -> None:
        """per_frame: (B, T) values of one metric."""
        total = per_frame.sum(axis=0)
        self._sums[name] = self._sums.get(name, 0) + total

    def update(self, pred, true) -> None:
        pred, true = _to_numpy(pred), _to_numpy(true)
        if pred.shape != true.shape or pred.ndim != 5:
            raise ValueError(f"pred and true must both be (B, T, C, H, W), got {pred.shape} and {true.shape}")
        channels = pred.shape[2]
        mean, std = _stat(self.mean, channels), _stat(self.std, channels)
        if std is not None:
            pred, true = pred * std, true * std
        if mean is not None:
            pred, true = pred + mean, true + mean
        err = pred - true
        if {"mse", "rmse"} & set(self.metrics):
            self._add("mse", (err**2).sum(axis=(2, 3, 4)))
        if "mae" in self.metrics:
            self._add("mae", np.abs(err).sum(axis=(2, 3, 4)))
        if "sharpness" in self.metrics:
            self._add("grad_pred", _gradient_magnitude(pred))
            self._add("grad_true", _gradient_magnitude(true))
        clipped = np.clip(pred, *self.clip_range)
        if "psnr" in self.metrics:
            frame_mse = ((clipped - true) ** 2).mean(axis=(2, 3, 4))
            with np.errstate(divide="ignore"):
                self._add("psnr", 20.0 * np.log10(1.0 / np.sqrt(frame_mse)))
        if "ssim" in self.metrics:
            self._add("ssim", self._ssim(clipped, true))
        if "lpips" in self.metrics and self.lpips_model is not None:
            self._add("lpips", self._lpips(clipped, true))
        self._count += pred.shape[0]

    @staticmethod
    def _ssim(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
        b, t = pred.shape[:2]
        out = np.empty((b, t))
        for i in range(b):
            for j in range(t):
                out[i, j] = structural_similarity(
                    pred[i, j].swapaxes(0, 2), true[i, j].swapaxes(0, 2), channel_axis=-1, data_range=2.0
                )
        return out

    def _lpips(self, pred: np.ndarray, true: np.ndarray) -> np.ndarray:
        b, t, c = pred.shape[:3]
        if c not in (1, 3):
            self.notes["lpips"] = f"LPIPS skipped: it needs 1 or 3 channels, the data has {c}"
            return np.full((b, t), np.nan)

        def prep(x):
            x = torch.from_numpy(x.reshape(b * t, c, *x.shape[3:])).float().to(self.device)
            x = x * 2.0 - 1.0
            return x.expand(-1, 3, -1, -1) if c == 1 else x

        with torch.no_grad():
            value = self.lpips_model(prep(pred), prep(true))
        return value.reshape(b, t).cpu().double().numpy()

    def all_reduce(self) -> None:
        """Add up the sums of every process (under torch.distributed); a no-op in one process."""
        from .engine.distributed import all_reduce_sum

        for key in sorted(self._sums):
            self._sums[key] = all_reduce_sum(torch.as_tensor(self._sums[key], dtype=torch.float64)).numpy()
        self._count = int(all_reduce_sum(torch.tensor(float(self._count), dtype=torch.float64)).item())

    def compute(self, per_frame: bool = False) -> dict:
        """Mean of every metric over all samples and frames; with per_frame, also a (T,) curve per metric."""
        if not self._count:
            raise ValueError("no batches were added")
        return summarise(self.metrics, {k: v / self._count for k, v in self._sums.items()}, per_frame)


def summarise(metrics, frame: dict, per_frame: bool = False) -> dict:
    """Per-frame means ``frame`` ({name: (T,) array}, with grad_pred/grad_true for sharpness) -> results.

    RMSE is the square root of the MSE; sharpness the ratio of mean gradient magnitudes; a metric
    with no values (LPIPS without weights) is None.
    """
    res: dict = {}
    for name in metrics:
        if name == "rmse" and "mse" in frame:
            curve = np.sqrt(frame["mse"])
            value = math.sqrt(frame["mse"].mean())
        elif name == "sharpness" and "grad_pred" in frame:
            curve = frame["grad_pred"] / np.maximum(frame["grad_true"], 1e-12)
            value = float(frame["grad_pred"].mean() / max(frame["grad_true"].mean(), 1e-12))
        elif name in frame and name not in ("rmse", "sharpness"):
            curve = frame[name]
            value = float(curve.mean())
        else:
            res[name] = None
            continue
        res[name] = float(value)
        if per_frame:
            res[f"{name}_per_frame"] = [float(v) for v in curve]
    return res


def evaluate(
    pred,
    true,
    metrics: Iterable[str] = ("mse", "mae"),
    mean=None,
    std=None,
    clip_range: tuple[float, float] = (0.0, 1.0),
    per_frame: bool = False,
    lpips_model=None,
) -> dict:
    """Metrics of ``pred`` against ``true`` (numpy arrays or tensors, (B, T, C, H, W)).

    Returns ``{metric: value}`` (None for LPIPS when its weights are absent; the reason is in
    ``res["notes"]``), plus ``<metric>_per_frame`` lists when ``per_frame``.
    """
    acc = MetricAccumulator(tuple(metrics), mean=mean, std=std, clip_range=clip_range, lpips_model=lpips_model)
    acc.update(pred, true)
    res = acc.compute(per_frame=per_frame)
    if acc.notes:
        res["notes"] = dict(acc.notes)
    return res
