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

Video metrics (on the prediction clipped to ``clip_range``; per-frame curves have T - 1 values for
pairs of consecutive frames, T - 2 for motion smoothness):

* tlpips: LPIPS (the same AlexNet) between the frame differences ``pred[t] - pred[t-1]`` and
  ``true[t] - true[t-1]``, t = 1..T-1; the differences lie in [-1, 1], LPIPS's input range, and are
  passed as they are. 0 when the prediction changes exactly as the truth does.
* object_iou: foreground masks by background subtraction: the background is the per-pixel median
  over the frames of the truth; a pixel is foreground where any channel differs from it by more
  than ``foreground_threshold`` (0.1 of the [0, 1] range). IoU of the predicted and true masks per
  frame (1 when both are empty).
* motion_smoothness: ``1 - mean |pred[t] - (pred[t-1] + pred[t+1]) / 2| / (clip range width)``,
  t = 1..T-2: how well the mid-point interpolation of the neighbours explains each frame (1 for
  motion that is linear in pixel values, lower for jitter). Uses the prediction only.
* subject_consistency: cosine similarity of the features of consecutive predicted frames, by DINOv2
  ViT-S/14 (timm ``vit_small_patch14_dinov2``, CLS token of 224x224 ImageNet-normalised frames) when
  its weights are in the local Hugging Face cache (nothing is downloaded); None with a note otherwise.
* background_consistency: the same on predicted frames whose foreground (true or predicted mask,
  as for object_iou) is filled with the truth's median background, so only the background counts.

Collision accuracy / precision / recall / F1 compare predicted collision probabilities with labels:
``collision_scores(prob, label)`` or ``CollisionAccumulator`` (not a (pred, true) frame metric).

For test sets that do not fit in memory use ``MetricAccumulator`` batch by batch; it gives
the same numbers as ``evaluate`` on the concatenated arrays.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import structural_similarity

AVAILABLE = ("mse", "mae", "rmse", "psnr", "ssim", "lpips", "sharpness",
             "tlpips", "object_iou", "motion_smoothness", "subject_consistency", "background_consistency")
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
FOREGROUND_THRESHOLD = 0.1
DINO_MODEL = "vit_small_patch14_dinov2"
DINO_HUB_ID = "timm/vit_small_patch14_dinov2.lvd142m"
FEATURE_METRICS = ("subject_consistency", "background_consistency")


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
        clip_range: range the prediction is clipped to for PSNR, SSIM, LPIPS and the video metrics.
        lpips_model: an LPIPS network to use (also for tlpips); None loads the pretrained AlexNet when its
            weights exist.
        feature_model: frames (N, 3, H, W) in [0, 1] -> features (N, D) for the consistency metrics; None
            loads DINOv2 when its weights are in the cache.
        foreground_threshold: per-channel difference from the background that marks foreground (object_iou,
            background_consistency).
    """

    def __init__(
        self,
        metrics: Sequence[str] = ("mse", "mae"),
        mean=None,
        std=None,
        clip_range: tuple[float, float] = (0.0, 1.0),
        lpips_model=None,
        device: str | torch.device = "cpu",
        feature_model=None,
        foreground_threshold: float = FOREGROUND_THRESHOLD,
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
        if {"lpips", "tlpips"} & set(self.metrics) and lpips_model is None:
            self.lpips_model, note = load_lpips(device)
            if note:
                for name in {"lpips", "tlpips"} & set(self.metrics):
                    self.notes[name] = note.replace("LPIPS", "tLPIPS", 1) if name == "tlpips" else note
        self.feature_model = feature_model
        self.foreground_threshold = float(foreground_threshold)
        if set(FEATURE_METRICS) & set(self.metrics) and feature_model is None:
            self.feature_model, note = load_dino(device)
            if note:
                for name in set(FEATURE_METRICS) & set(self.metrics):
                    self.notes[name] = note
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
        self._video_metrics(clipped, true)
        self._count += pred.shape[0]

    def _video_metrics(self, pred: np.ndarray, true: np.ndarray) -> None:
        """tlpips, object_iou, motion_smoothness and the consistencies of clipped pred / true (B, T, C, H, W)."""
        wanted = set(self.metrics)
        if "tlpips" in wanted and self.lpips_model is not None:
            self._add("tlpips", self._tlpips(pred, true))
        if "object_iou" in wanted:
            self._add("object_iou", object_iou(pred, true, self.foreground_threshold))
        if "motion_smoothness" in wanted:
            self._add("motion_smoothness", motion_smoothness(pred, self.clip_range[1] - self.clip_range[0]))
        if self.feature_model is None or not set(FEATURE_METRICS) & wanted:
            return
        if pred.shape[2] not in (1, 3):
            for name in set(FEATURE_METRICS) & wanted:
                self.notes[name] = f"{name} skipped: it needs 1 or 3 channels, the data has {pred.shape[2]}"
                self._add(name, np.full(pred.shape[:2], np.nan)[:, 1:])
            return
        if "subject_consistency" in wanted:
            self._add("subject_consistency", feature_consistency(pred, self.feature_model, self.device))
        if "background_consistency" in wanted:
            filled = fill_foreground(pred, true, self.foreground_threshold)
            self._add("background_consistency", feature_consistency(filled, self.feature_model, self.device))

    def _tlpips(self, pred: np.ndarray, true: np.ndarray) -> np.ndarray:
        if pred.shape[2] not in (1, 3):
            self.notes["tlpips"] = f"tLPIPS skipped: it needs 1 or 3 channels, the data has {pred.shape[2]}"
            return np.full((pred.shape[0], max(pred.shape[1] - 1, 0)), np.nan)
        return temporal_lpips(pred, true, self.lpips_model, self.device)

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
    feature_model=None,
) -> dict:
    """Metrics of ``pred`` against ``true`` (numpy arrays or tensors, (B, T, C, H, W)).

    Returns ``{metric: value}`` (None for LPIPS, tLPIPS or the consistencies when their weights are absent;
    the reason is in ``res["notes"]``), plus ``<metric>_per_frame`` lists when ``per_frame``.
    ``feature_model``: the network of the consistency metrics (see ``MetricAccumulator``).
    """
    acc = MetricAccumulator(tuple(metrics), mean=mean, std=std, clip_range=clip_range, lpips_model=lpips_model,
                            feature_model=feature_model)
    acc.update(pred, true)
    res = acc.compute(per_frame=per_frame)
    if acc.notes:
        res["notes"] = dict(acc.notes)
    return res


# ----------------------------------------------------------------------------- video metrics


def _as_rgb_tensor(x: np.ndarray, device) -> torch.Tensor:
    """(N, C, H, W) numpy with C in (1, 3) -> float tensor (N, 3, H, W) on ``device``."""
    t = torch.from_numpy(np.ascontiguousarray(x)).float().to(device)
    return t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t


def temporal_lpips(pred, true, lpips_model, device="cpu") -> np.ndarray:
    """tLPIPS: LPIPS between consecutive-frame differences of ``pred`` and ``true``.

    pred, true: (B, T, C, H, W) in [0, 1], C in (1, 3); lpips_model: an LPIPS network taking two (N, 3, H, W)
    batches in [-1, 1]. Returns (B, T - 1) values, pair t-1 -> t in column t - 1. The differences already lie in
    [-1, 1] and are passed unscaled.
    """
    pred, true = _to_numpy(pred), _to_numpy(true)
    b, t = pred.shape[:2]
    if t < 2:
        return np.zeros((b, 0))
    d_pred = np.diff(pred, axis=1).reshape(b * (t - 1), *pred.shape[2:])
    d_true = np.diff(true, axis=1).reshape(b * (t - 1), *true.shape[2:])
    with torch.no_grad():
        value = lpips_model(_as_rgb_tensor(d_pred, device), _as_rgb_tensor(d_true, device))
    return value.reshape(b, t - 1).cpu().double().numpy()


def median_background(true) -> np.ndarray:
    """Per-pixel median over the frames of ``true`` (B, T, C, H, W) -> (B, 1, C, H, W)."""
    return np.median(_to_numpy(true), axis=1, keepdims=True)


def foreground_masks(frames, background, threshold: float = FOREGROUND_THRESHOLD) -> np.ndarray:
    """Boolean (B, T, H, W): pixels where any channel of ``frames`` (B, T, C, H, W) differs from
    ``background`` (B, 1, C, H, W) by more than ``threshold``."""
    return (np.abs(_to_numpy(frames) - background) > threshold).any(axis=2)


def object_iou(pred, true, threshold: float = FOREGROUND_THRESHOLD) -> np.ndarray:
    """IoU (B, T) of the foreground masks of ``pred`` and ``true`` (B, T, C, H, W), both against the truth's
    median background; 1 where both masks are empty."""
    background = median_background(true)
    mask_p, mask_t = foreground_masks(pred, background, threshold), foreground_masks(true, background, threshold)
    inter = (mask_p & mask_t).sum(axis=(2, 3)).astype(np.float64)
    union = (mask_p | mask_t).sum(axis=(2, 3)).astype(np.float64)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def motion_smoothness(pred, data_range: float = 1.0) -> np.ndarray:
    """(B, T - 2): ``1 - mean |pred[t] - (pred[t-1] + pred[t+1]) / 2| / data_range`` for t = 1..T-2.

    1 when every frame is the mid-point of its neighbours (no motion, or pixel values changing linearly);
    jittering motion scores lower. ``pred`` is (B, T, C, H, W).
    """
    pred = _to_numpy(pred)
    if pred.shape[1] < 3:
        return np.zeros((pred.shape[0], 0))
    midpoint = 0.5 * (pred[:, :-2] + pred[:, 2:])
    return 1.0 - np.abs(pred[:, 1:-1] - midpoint).mean(axis=(2, 3, 4)) / float(data_range)


def feature_consistency(frames, feature_model, device="cpu") -> np.ndarray:
    """Cosine similarity (B, T - 1) of the features of consecutive frames.

    frames: (B, T, C, H, W) in [0, 1], C in (1, 3); feature_model: (N, 3, H, W) -> (N, ...) features,
    flattened per frame before the cosine.
    """
    frames = _to_numpy(frames)
    b, t = frames.shape[:2]
    if t < 2:
        return np.zeros((b, 0))
    with torch.no_grad():
        feats = feature_model(_as_rgb_tensor(frames.reshape(b * t, *frames.shape[2:]), device))
    feats = feats.reshape(b, t, -1).double()
    cos = torch.nn.functional.cosine_similarity(feats[:, 1:], feats[:, :-1], dim=-1, eps=1e-12)
    return cos.cpu().numpy()


def fill_foreground(pred, true, threshold: float = FOREGROUND_THRESHOLD) -> np.ndarray:
    """``pred`` (B, T, C, H, W) with its foreground (predicted or true mask, per frame) replaced by the truth's
    median background: what is left is the predicted background."""
    pred = _to_numpy(pred)
    background = median_background(true)
    mask = foreground_masks(pred, background, threshold) | foreground_masks(true, background, threshold)
    return np.where(mask[:, :, None], background, pred)


def dino_weights_path() -> Path | None:
    """The cached DINOv2 ViT-S/14 weights file of the Hugging Face hub cache, or None (never downloads)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(DINO_HUB_ID, filename)
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


class DinoFeatures(torch.nn.Module):
    """Frames (N, 3, H, W) in [0, 1] -> DINOv2 CLS features (N, D): resized to 224x224, ImageNet-normalised."""

    def __init__(self, backbone: torch.nn.Module, size: int = 224):
        super().__init__()
        self.backbone, self.size = backbone, size
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.backbone((x - self.mean) / self.std)


def load_dino(device: str | torch.device = "cpu"):
    """DINOv2 ViT-S/14 as a ``DinoFeatures`` model, or ``(None, reason)`` when its weights are not cached.

    Returns (model, note); note is "" when the model is available. Only a local file is read.
    """
    path = dino_weights_path()
    if path is None:
        return None, (
            f"consistency skipped: DINOv2 weights ({DINO_HUB_ID}) not in the local Hugging Face cache; put them "
            f"there (e.g. huggingface-cli download {DINO_HUB_ID} on a machine with internet, then copy the cache "
            f"folder, or set HF_HOME to one that has them). Nothing is downloaded."
        )
    try:
        import timm

        backbone = timm.create_model(DINO_MODEL, pretrained=True, num_classes=0, img_size=224,
                                     pretrained_cfg_overlay={"file": str(path)})
    except (OSError, RuntimeError, ValueError, KeyError, ImportError) as exc:  # a damaged file, an old timm
        return None, f"consistency skipped: cannot load DINOv2 from {path} ({type(exc).__name__}: {exc})"
    return DinoFeatures(backbone).to(device).eval(), ""


# ----------------------------------------------------------------------------- collision prediction


def _collision_counts(prob, label, threshold: float) -> np.ndarray:
    """[TP, FP, FN, TN] of probabilities ``prob`` thresholded at ``threshold`` against 0/1 ``label`` (same shape)."""
    prob, label = _to_numpy(prob), _to_numpy(label)
    if prob.shape != label.shape:
        raise ValueError(f"prob and label must have the same shape, got {prob.shape} and {label.shape}")
    predicted, actual = prob >= threshold, label >= 0.5
    return np.array([(predicted & actual).sum(), (predicted & ~actual).sum(),
                     (~predicted & actual).sum(), (~predicted & ~actual).sum()], dtype=np.int64)


def _scores_from_counts(counts: np.ndarray) -> dict:
    """Accuracy, precision, recall and F1 from [TP, FP, FN, TN].

    Precision (recall) with no predicted (true) positives is 1.0 when there are no true (predicted) positives
    either, else 0.0; F1 = 2 TP / (2 TP + FP + FN), 1.0 when nothing is positive in either.
    """
    tp, fp, fn, tn = (int(v) for v in counts)
    total = tp + fp + fn + tn
    if not total:
        raise ValueError("no collision labels were given")
    perfect = 1.0 if fp + fn == 0 else 0.0
    return {
        "collision_accuracy": (tp + tn) / total,
        "collision_precision": tp / (tp + fp) if tp + fp else perfect,
        "collision_recall": tp / (tp + fn) if tp + fn else perfect,
        "collision_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        "collision_count": total,
    }


def collision_scores(prob, label, threshold: float = 0.5) -> dict:
    """Collision accuracy, precision, recall and F1 of probabilities ``prob`` (any shape, e.g. (B, T_out))
    thresholded at ``threshold`` against 0/1 labels ``label`` of the same shape; ``collision_count`` steps."""
    return _scores_from_counts(_collision_counts(prob, label, threshold))


class CollisionAccumulator:
    """``collision_scores`` over batches: ``update(prob, label)`` per batch, ``compute()`` at the end."""

    def __init__(self, threshold: float = 0.5):
        self.threshold = float(threshold)
        self._counts = np.zeros(4, dtype=np.int64)

    def update(self, prob, label) -> None:
        self._counts += _collision_counts(prob, label, self.threshold)

    def compute(self) -> dict:
        return _scores_from_counts(self._counts)
