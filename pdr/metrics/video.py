"""Video metrics: temporal LPIPS, VBench's consistency and smoothness scores, their proxies, and FVD.

All of them look at the prediction clipped to the clip range (frames in [0, 1]). Per-frame curves have
T - 1 values for metrics of consecutive pairs. Standard metrics need a network (see
``pdr.metrics.networks``) and are n/a with a note when it is not available; a ``*_proxy`` metric is a
cheaper stand-in, named as such. Definitions: docs/metrics.md.
"""
from __future__ import annotations

import numpy as np
import torch

from .perceptual import as_rgb_tensor, lpips_pairs
from .registry import FrameBatch, register

FOREGROUND_THRESHOLD = 0.1


def _pairs_empty(b: int, t: int, needed: int = 2) -> np.ndarray | None:
    return np.zeros((b, 0)) if t < needed else None


# ----------------------------------------------------------------------------- temporal LPIPS


def temporal_lpips(pred, true, lpips_model, device="cpu") -> np.ndarray:
    """tLPIPS (TecoGAN): |LPIPS(pred_t, pred_t-1) - LPIPS(true_t, true_t-1)| for t = 1..T-1.

    pred, true: (B, T, C, H, W) in [0, 1], C in (1, 3) -> (B, T - 1); 0 when the prediction changes from
    frame to frame as perceptibly as the truth does.
    """
    b, t = pred.shape[:2]
    if (empty := _pairs_empty(b, t)) is not None:
        return empty
    change_pred = lpips_pairs(pred[:, 1:], pred[:, :-1], lpips_model, device)
    change_true = lpips_pairs(true[:, 1:], true[:, :-1], lpips_model, device)
    return np.abs(change_pred - change_true)


def temporal_lpips_of_differences(pred, true, lpips_model, device="cpu") -> np.ndarray:
    """LPIPS between the frame differences pred_t - pred_t-1 and true_t - true_t-1 (B, T - 1); the differences
    lie in [-1, 1], LPIPS's input range, and are passed as they are."""
    b, t = pred.shape[:2]
    if (empty := _pairs_empty(b, t)) is not None:
        return empty
    return lpips_pairs(np.diff(pred, axis=1), np.diff(true, axis=1), lpips_model, device, scale=False)


def _with_lpips(batch: FrameBatch, name: str, fn) -> dict | None:
    if not batch.channels_ok(name, name):  # first: a network would not help
        return None  # n/a, as without the network
    net = batch.network("lpips")
    if net is None:
        return None
    return {name: fn(batch.clipped, batch.true, net, batch.device)}


@register("tlpips", "video", higher_is_better=False, network="lpips",
          definition="TecoGAN's tLPIPS: mean over t of |LPIPS(pred_t, pred_t-1) - LPIPS(true_t, true_t-1)|")
def tlpips(batch: FrameBatch) -> dict | None:
    return _with_lpips(batch, "tlpips", temporal_lpips)


@register("tlpips_diff", "video", higher_is_better=False, network="lpips",
          definition="LPIPS between the frame differences pred_t - pred_t-1 and true_t - true_t-1")
def tlpips_diff(batch: FrameBatch) -> dict | None:
    return _with_lpips(batch, "tlpips_diff", temporal_lpips_of_differences)


# ----------------------------------------------------------------------------- foreground proxies


def median_background(true) -> np.ndarray:
    """Per-pixel median over the frames of ``true`` (B, T, C, H, W) -> (B, 1, C, H, W)."""
    return np.median(np.asarray(true, dtype=np.float64), axis=1, keepdims=True)


def foreground_masks(frames, background, threshold: float = FOREGROUND_THRESHOLD) -> np.ndarray:
    """Boolean (B, T, H, W): pixels where any channel of ``frames`` (B, T, C, H, W) differs from
    ``background`` (B, 1, C, H, W) by more than ``threshold``."""
    return (np.abs(np.asarray(frames, dtype=np.float64) - background) > threshold).any(axis=2)


def object_iou_proxy(pred, true, threshold: float = FOREGROUND_THRESHOLD) -> np.ndarray:
    """IoU (B, T) of the foreground masks of ``pred`` and ``true`` (B, T, C, H, W), both against the truth's
    median background; 1 where both masks are empty."""
    background = median_background(true)
    mask_p, mask_t = foreground_masks(pred, background, threshold), foreground_masks(true, background, threshold)
    inter = (mask_p & mask_t).sum(axis=(2, 3)).astype(np.float64)
    union = (mask_p | mask_t).sum(axis=(2, 3)).astype(np.float64)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


@register("object_iou_proxy", "video", higher_is_better=True, proxy_of="object_iou",
          definition="IoU of foreground masks found by subtracting the truth's per-pixel median background")
def _object_iou_proxy(batch: FrameBatch) -> dict:
    return {"object_iou_proxy": object_iou_proxy(batch.clipped, batch.true, batch.foreground_threshold)}


@register("object_iou", "video", higher_is_better=True,
          definition="IoU of predicted and true per-object masks (needs object masks of the prediction)")
def _object_iou(batch: FrameBatch) -> None:
    batch.notes["object_iou"] = (
        "object_iou n/a: it compares per-object masks of the prediction with the annotated masks; pixel "
        "predictions have no object masks and CLEVRER's annotation files hold object positions, not masks. "
        "object_iou_proxy compares foreground masks found by background subtraction instead")
    return None


def fill_foreground(pred, true, threshold: float = FOREGROUND_THRESHOLD) -> np.ndarray:
    """``pred`` (B, T, C, H, W) with its foreground (predicted or true mask, per frame) replaced by the truth's
    median background: what is left is the predicted background."""
    pred = np.asarray(pred, dtype=np.float64)
    background = median_background(true)
    mask = foreground_masks(pred, background, threshold) | foreground_masks(true, background, threshold)
    return np.where(mask[:, :, None], background, pred)


# ----------------------------------------------------------------------------- smoothness


def motion_smoothness_proxy(pred, data_range: float = 1.0) -> np.ndarray:
    """(B, T - 2): ``1 - mean |pred[t] - (pred[t-1] + pred[t+1]) / 2| / data_range`` for t = 1..T-2."""
    pred = np.asarray(pred, dtype=np.float64)
    if pred.shape[1] < 3:
        return np.zeros((pred.shape[0], 0))
    midpoint = 0.5 * (pred[:, :-2] + pred[:, 2:])
    return 1.0 - np.abs(pred[:, 1:-1] - midpoint).mean(axis=(2, 3, 4)) / float(data_range)


@register("motion_smoothness_proxy", "video", higher_is_better=True, proxy_of="motion_smoothness",
          definition="1 - mean |pred_t - (pred_t-1 + pred_t+1) / 2|: the mid-point of the neighbours stands in "
                     "for VBench's interpolation network")
def _motion_smoothness_proxy(batch: FrameBatch) -> dict:
    width = batch.clip_range[1] - batch.clip_range[0]
    return {"motion_smoothness_proxy": motion_smoothness_proxy(batch.clipped, width)}


def motion_smoothness(pred, interpolate, device="cpu", data_range: float = 1.0) -> np.ndarray:
    """VBench's motion smoothness per odd frame: (B, (T - 1) // 2) values ``1 - mean |f(p_2k, p_2k+2) - p_2k+1|``.

    ``interpolate``: (N, C, H, W) frames a, b in [0, 1] -> the frame between them (N, C, H, W).
    """
    pred = np.asarray(pred, dtype=np.float64)
    b, t = pred.shape[:2]
    n = (t - 1) // 2
    if n < 1:
        return np.zeros((b, 0))
    first, last, middle = pred[:, 0:2 * n:2], pred[:, 2:2 * n + 1:2], pred[:, 1:2 * n:2]
    shape = (b * n, *pred.shape[2:])
    with torch.no_grad():
        guess = interpolate(torch.from_numpy(first.reshape(shape)).float().to(device),
                            torch.from_numpy(last.reshape(shape)).float().to(device))
    guess = guess.detach().cpu().double().numpy().reshape(middle.shape)
    return 1.0 - np.abs(guess - middle).mean(axis=(2, 3, 4)) / float(data_range)


@register("motion_smoothness", "video", higher_is_better=True, network="interpolation",
          definition="VBench: 1 - mean |interp(pred_2k, pred_2k+2) - pred_2k+1| with a frame interpolation network")
def _motion_smoothness(batch: FrameBatch) -> dict | None:
    net = batch.network("interpolation")
    if net is None:
        return None
    width = batch.clip_range[1] - batch.clip_range[0]
    return {"motion_smoothness": motion_smoothness(batch.clipped, net, batch.device, width)}


# ----------------------------------------------------------------------------- feature consistency


def frame_features(frames, feature_model, device="cpu") -> torch.Tensor:
    """Features (B, T, D) of frames (B, T, C, H, W) in [0, 1], C in (1, 3), flattened per frame."""
    frames = np.asarray(frames, dtype=np.float64)
    b, t = frames.shape[:2]
    with torch.no_grad():
        feats = feature_model(as_rgb_tensor(frames.reshape(b * t, *frames.shape[2:]), device))
    return feats.reshape(b, t, -1).double().cpu()


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-12)


def feature_consistency(frames, feature_model, device="cpu") -> np.ndarray:
    """Cosine similarity (B, T - 1) of the features of consecutive frames (the proxies)."""
    if (empty := _pairs_empty(*np.shape(frames)[:2])) is not None:
        return empty
    feats = frame_features(frames, feature_model, device)
    return _cosine(feats[:, 1:], feats[:, :-1]).numpy()


def vbench_consistency(frames, feature_model, device="cpu") -> np.ndarray:
    """VBench's consistency (B, T - 1): for t >= 1, (max(0, cos(f_0, f_t)) + max(0, cos(f_t-1, f_t))) / 2."""
    if (empty := _pairs_empty(*np.shape(frames)[:2])) is not None:
        return empty
    feats = frame_features(frames, feature_model, device)
    to_first = _cosine(feats[:, :1], feats[:, 1:]).clamp(min=0)
    to_previous = _cosine(feats[:, :-1], feats[:, 1:]).clamp(min=0)
    return (0.5 * (to_first + to_previous)).numpy()


def _consistency(batch: FrameBatch, name: str, network: str, fn, background: bool) -> dict | None:
    if not batch.channels_ok(name, name):  # first: a network would not help
        return None  # n/a, as without the network
    net = batch.network(network)
    if net is None:
        return None
    frames = fill_foreground(batch.clipped, batch.true, batch.foreground_threshold) if background else batch.clipped
    return {name: fn(frames, net, batch.device)}


@register("subject_consistency", "video", higher_is_better=True, network="dino",
          definition="VBench: DINO ViT-B/16 features, mean over t of (cos(f_0, f_t)^+ + cos(f_t-1, f_t)^+) / 2")
def _subject_consistency(batch: FrameBatch) -> dict | None:
    return _consistency(batch, "subject_consistency", "dino", vbench_consistency, background=False)


@register("background_consistency", "video", higher_is_better=True, network="clip",
          definition="VBench: as subject_consistency with CLIP ViT-B/32 image features")
def _background_consistency(batch: FrameBatch) -> dict | None:
    return _consistency(batch, "background_consistency", "clip", vbench_consistency, background=False)


@register("subject_consistency_proxy", "video", higher_is_better=True, network="dinov2",
          proxy_of="subject_consistency",
          definition="cosine of DINOv2 ViT-S/14 features of consecutive frames")
def _subject_consistency_proxy(batch: FrameBatch) -> dict | None:
    return _consistency(batch, "subject_consistency_proxy", "dinov2", feature_consistency, background=False)


@register("background_consistency_proxy", "video", higher_is_better=True, network="dinov2",
          proxy_of="background_consistency",
          definition="subject_consistency_proxy on frames whose foreground is filled with the truth's median "
                     "background")
def _background_consistency_proxy(batch: FrameBatch) -> dict | None:
    return _consistency(batch, "background_consistency_proxy", "dinov2", feature_consistency, background=True)


# ----------------------------------------------------------------------------- FVD


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance of Gaussians fitted to features a (N, D) and b (M, D), N, M >= 2."""
    from scipy import linalg

    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(np.real(root)))


@register("fvd", "video", higher_is_better=False, kind="set", network="i3d",
          definition="Fréchet distance of I3D features of the predicted and the true clips (predicted frames "
                     "only), over the whole split")
class FVD:
    """Collects I3D features of predicted and true clips; ``compute()`` gives their Fréchet distance."""

    def __init__(self):
        self.pred: list[np.ndarray] = []
        self.true: list[np.ndarray] = []
        self.failed = False

    @staticmethod
    def _features(net, frames: np.ndarray, device) -> np.ndarray:
        clips = torch.from_numpy(np.ascontiguousarray(frames)).float().to(device)
        if clips.shape[2] == 1:
            clips = clips.expand(-1, -1, 3, -1, -1)
        with torch.no_grad():
            return net(clips).reshape(clips.shape[0], -1).double().cpu().numpy()

    def update(self, batch: FrameBatch) -> None:
        net = batch.network("i3d")
        if self.failed or not batch.channels_ok("fvd", "FVD") or net is None:
            return
        try:
            pred, true = (self._features(net, f, batch.device) for f in (batch.clipped, batch.true))
        except RuntimeError as exc:  # I3D's pooling needs clips of enough frames and pixels
            self.failed = True
            batch.notes["fvd"] = (f"FVD n/a: the I3D network failed on clips of shape {batch.pred.shape[1:]} "
                                  f"(T, C, H, W): {str(exc).splitlines()[0]}")
            return
        self.pred.append(pred)
        self.true.append(true)

    def compute(self, notes: dict) -> float | None:
        count = sum(len(p) for p in self.pred)
        if self.failed:
            return None
        if count < 2:
            if self.pred:
                notes["fvd"] = f"FVD n/a: it needs at least 2 clips, got {count}"
            return None
        return frechet_distance(np.concatenate(self.pred), np.concatenate(self.true))
