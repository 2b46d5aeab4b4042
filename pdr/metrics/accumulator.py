"""Metrics over a split, batch by batch: ``MetricAccumulator``, and ``evaluate`` for arrays in memory."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from .networks import load_network
from .registry import METRICS, FrameBatch, names, unknown_metric_message
from .video import FOREGROUND_THRESHOLD

ALL_CHANNELS = ""  # the group key of metrics over every channel; other groups are variable names


def to_numpy(x) -> np.ndarray:
    """A tensor (any device) or array as a float64 array."""
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


def check_metric_names(metrics: Iterable[str]) -> list[str]:
    """The names, checked: frame and set metrics of the registry (collision scores come from the model)."""
    allowed = names("frame") + names("set")
    metrics = list(metrics)
    for name in metrics:
        if name not in allowed:
            raise ValueError(unknown_metric_message(name, allowed))
    return metrics


class MetricAccumulator:
    """Accumulates per-sample, per-frame metric sums over batches.

    Args:
        metrics: registered frame or set metric names (``pdr.metrics.AVAILABLE``).
        mean, std: statistics that undo the data normalisation (scalar or per channel), or None.
        clip_range: range the prediction is clipped to for PSNR, SNR, SSIM and the perceptual and video metrics.
        lpips_model: the LPIPS network (lpips, tlpips); None loads it (see ``pdr.metrics.networks``).
        device: where the networks run.
        feature_model: the network of the consistency proxies, frames (N, 3, H, W) in [0, 1] -> (N, D); None
            loads DINOv2 when its weights are in the cache.
        foreground_threshold: per-channel difference from the background that marks foreground (the proxies).
        spatial_norm: MSE, MAE and RMSE divide by C*H*W (OpenSTL's convention for WeatherBench).
        channel_names: one name per variable of multi-variable data (C divisible by their number): MSE, MAE
            and RMSE are also reported per variable as ``<metric>_<name>``, and the overall value is their mean
            over variables (OpenSTL's ``channel_names``).
        networks: networks by name (``lpips``, ``dinov2``, ``dino``, ``clip``, ``interpolation``, ``i3d``) to use
            instead of loading them.
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
        spatial_norm: bool = False,
        channel_names: Sequence[str] | None = None,
        networks: dict | None = None,
    ):
        self.metrics = check_metric_names(metrics)
        self.mean, self.std = mean, std
        self.clip_range = tuple(clip_range)
        self.device = device
        self.spatial_norm = bool(spatial_norm)
        self.channel_names = list(channel_names) if channel_names and len(channel_names) > 1 else None
        self.foreground_threshold = float(foreground_threshold)
        self.notes: dict[str, str] = {}
        given = {"lpips": lpips_model, "dinov2": feature_model, **(networks or {})}
        self.networks = {k: v for k, v in given.items() if v is not None}
        self._load_networks()
        self._sums: dict[str, dict[str, np.ndarray]] = {}
        self._sets = {name: METRICS[name].compute() for name in self.metrics if METRICS[name].kind == "set"}
        self._count = 0

    def _load_networks(self) -> None:
        for name in self.metrics:
            net = METRICS[name].network
            if net is None or net in self.networks:
                continue
            model, note = load_network(net, self.device)
            self.networks[net] = model
            if note:
                for other in self.metrics:
                    if METRICS[other].network == net:
                        self.notes[other] = note

    # ------------------------------------------------------------------ per batch

    def _batch(self, pred: np.ndarray, true: np.ndarray) -> FrameBatch:
        return FrameBatch(pred, true, np.clip(pred, *self.clip_range), self.clip_range, self.spatial_norm,
                          self.foreground_threshold, self.networks, self.device, self.notes)

    def _groups(self, channels: int) -> list[tuple[str, slice]]:
        if self.channel_names is None:
            return []
        n = len(self.channel_names)
        if channels % n:
            raise ValueError(f"channel_names: {n} names do not divide the {channels} channels")
        width = channels // n
        return [(name, slice(i * width, (i + 1) * width)) for i, name in enumerate(self.channel_names)]

    def prepare(self, pred, true) -> FrameBatch:
        """The batch in the data's units (normalisation undone), checked: pred and true (B, T, C, H, W)."""
        pred, true = to_numpy(pred), to_numpy(true)
        if pred.shape != true.shape or pred.ndim != 5:
            raise ValueError(f"pred and true must both be (B, T, C, H, W), got {pred.shape} and {true.shape}")
        channels = pred.shape[2]
        mean, std = _stat(self.mean, channels), _stat(self.std, channels)
        if std is not None:
            pred, true = pred * std, true * std
        if mean is not None:
            pred, true = pred + mean, true + mean
        return self._batch(pred, true)

    def frame_values(self, pred, true) -> dict[str, dict[str, np.ndarray]]:
        """Per-frame values of this batch, not accumulated: {group: {key: (B, T') array}}; group "" holds the
        metrics over every channel, the others (variable names) the per-variable ones."""
        return self.values_of(self.prepare(pred, true))

    def values_of(self, batch: FrameBatch) -> dict[str, dict[str, np.ndarray]]:
        """``frame_values`` of a batch from ``prepare``."""
        groups = self._groups(batch.pred.shape[2])
        parts: dict[str, FrameBatch] = {}  # one batch per variable, made once for every per-variable metric
        out: dict[str, dict[str, np.ndarray]] = {ALL_CHANNELS: {}}
        for name in self.metrics:
            metric = METRICS[name]
            if metric.kind != "frame":
                continue
            if metric.per_variable and groups:
                for group, sl in groups:
                    if group not in parts:
                        parts[group] = self._batch(batch.pred[:, :, sl], batch.true[:, :, sl])
                    out.setdefault(group, {}).update(metric.compute(parts[group]) or {})
            else:
                out[ALL_CHANNELS].update(metric.compute(batch) or {})
        return out

    def update(self, pred, true) -> None:
        batch = self.prepare(pred, true)
        self.add(self.values_of(batch), batch.pred.shape[0])
        self.feed_sets(batch)

    def add(self, values: dict[str, dict[str, np.ndarray]], count: int) -> None:
        """Add the ``frame_values`` of ``count`` sequences."""
        for group, keyed in values.items():
            sums = self._sums.setdefault(group, {})
            for key, per_frame in keyed.items():
                sums[key] = sums.get(key, 0) + np.asarray(per_frame, dtype=np.float64).sum(axis=0)
        self._count += count

    def feed_sets(self, batch: FrameBatch) -> None:
        """Feed a batch from ``prepare`` to the set metrics (FVD), which need every clip before they give a value."""
        for metric in self._sets.values():
            metric.update(batch)

    def all_reduce(self) -> None:
        """Add up the sums of every process (under torch.distributed); a no-op in one process."""
        from ..engine.distributed import all_reduce_sum

        if self._sets:
            raise ValueError(f"{', '.join(self._sets)}: set metrics are computed in one process only")
        for group in sorted(self._sums):
            for key in sorted(self._sums[group]):
                value = torch.as_tensor(self._sums[group][key], dtype=torch.float64)
                self._sums[group][key] = all_reduce_sum(value).numpy()
        self._count = int(all_reduce_sum(torch.tensor(float(self._count), dtype=torch.float64)).item())

    def compute(self, per_frame: bool = False) -> dict:
        """Mean of every metric over all samples and frames; with per_frame, also a (T',) curve per metric."""
        if not self._count:
            raise ValueError("no batches were added")
        means = {g: {k: v / self._count for k, v in keyed.items()} for g, keyed in self._sums.items()}
        res = summarise(self.metrics, means, per_frame, self.channel_names)
        for name, metric in self._sets.items():
            res[name] = metric.compute(self.notes)
        return res


def _reduce(name: str, means: dict) -> tuple[np.ndarray, float] | None:
    metric = METRICS[name]
    if metric.reduce is not None:
        try:
            return metric.reduce(means)
        except KeyError:
            return None
    if name not in means:
        return None
    return means[name], float(np.mean(means[name]))


def summarise(metrics, means: dict, per_frame: bool = False, channel_names=None) -> dict:
    """Mean curves ``means`` ({group: {key: (T',) array}}, see ``MetricAccumulator.frame_values``) -> results.

    ``{metric: value}`` (None for a metric without values, e.g. LPIPS without weights), ``<metric>_<variable>``
    for per-variable metrics with ``channel_names`` (the overall value is their mean), and
    ``<key>_per_frame`` lists with ``per_frame``.
    """
    res: dict = {}

    def put(key: str, reduced):
        res[key] = None if reduced is None else float(reduced[1])
        if per_frame and reduced is not None:
            res[f"{key}_per_frame"] = [float(v) for v in reduced[0]]

    for name in metrics:
        metric = METRICS[name]
        if metric.kind != "frame":
            continue
        if metric.per_variable and channel_names and len(channel_names) > 1:
            parts = [_reduce(name, means.get(var, {})) for var in channel_names]
            for var, part in zip(channel_names, parts):
                put(f"{name}_{var}", part)
            known = [p for p in parts if p is not None]
            put(name, None if len(known) < len(parts) else
                (np.mean([p[0] for p in known], axis=0), float(np.mean([p[1] for p in known]))))
        else:
            put(name, _reduce(name, means.get(ALL_CHANNELS, {})))
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
    spatial_norm: bool = False,
    channel_names: Sequence[str] | None = None,
    networks: dict | None = None,
) -> dict:
    """Metrics of ``pred`` against ``true`` (numpy arrays or tensors, (B, T, C, H, W)).

    Returns ``{metric: value}`` (None where a network is absent; the reason is in ``res["notes"]``), plus
    ``<metric>_per_frame`` lists when ``per_frame``. Arguments as ``MetricAccumulator``'s.
    """
    acc = MetricAccumulator(tuple(metrics), mean=mean, std=std, clip_range=clip_range, lpips_model=lpips_model,
                            feature_model=feature_model, spatial_norm=spatial_norm, channel_names=channel_names,
                            networks=networks)
    acc.update(pred, true)
    res = acc.compute(per_frame=per_frame)
    if acc.notes:
        res["notes"] = dict(acc.notes)
    return res
