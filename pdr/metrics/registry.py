"""The metric registry: every metric once, with its direction, its kind and its definition.

A metric is one of three kinds:

* ``frame``: a value per predicted frame (or per pair of frames) and sequence, averaged over both; its
  function takes a ``FrameBatch`` and returns ``{sum key: (B, T') array}`` (usually the key is the
  metric's own name; RMSE and sharpness keep other sums that their ``reduce`` turns into the value), or
  None when it cannot be computed (the function then writes a note);
* ``set``: one value for the whole split (FVD): a class with ``update(FrameBatch)`` and ``compute()``;
* ``collision``: scores of predicted collision events (``pdr.metrics.collision``), not of frames.

Definitions are listed in docs/metrics.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..registry import closest_hint

FAMILIES = ("pixel", "perceptual", "video", "collision")
KINDS = ("frame", "set", "collision")


@dataclass(frozen=True)
class Metric:
    name: str
    family: str
    higher_is_better: bool | None  # None: no order (sharpness: 1 is best); such a metric cannot pick checkpoints
    kind: str = "frame"
    definition: str = ""
    compute: Any = None  # frame: FrameBatch -> {key: (B, T')} | None; set: a class; collision: None
    reduce: Callable | None = None  # {key: (T',) mean curve} -> ((T',) curve, value); default: its own key
    per_variable: bool = False  # reported per variable (``<name>_<variable>``) for multi-variable data
    network: str | None = None  # the network it needs (see pdr.metrics.networks)
    proxy_of: str | None = None  # the standard metric this one stands in for

    @property
    def per_frame(self) -> bool:
        return self.kind == "frame"


METRICS: dict[str, Metric] = {}
# What validation computes during training (cheap, no network): ``val/<name>`` in metrics.csv. ``contrast`` is
# there for the collapse warning (``pdr.engine.collapse``); it has no order, so it cannot be a monitor.
VALIDATION_METRICS = ("mse", "mae", "psnr", "ssim", "contrast")


def monitor_names() -> tuple[str, ...]:
    """The values ``train.monitor`` may name: validation loss and metrics, or the training loss."""
    ordered = [m for m in VALIDATION_METRICS if METRICS[m].higher_is_better is not None]
    return ("val/loss", *(f"val/{m}" for m in ordered), "train/loss")


def register(name: str, family: str, higher_is_better: bool | None, definition: str, kind: str = "frame", **options):
    """Decorator: register ``compute`` (a function, a class for ``set`` metrics, or None) under ``name``."""
    if family not in FAMILIES or kind not in KINDS:
        raise ValueError(f"metric {name!r}: family must be one of {FAMILIES} and kind one of {KINDS}")

    def add(compute):
        if name in METRICS:
            raise ValueError(f"metric {name!r} is registered twice")
        METRICS[name] = Metric(name, family, higher_is_better, kind, definition, compute, **options)
        return compute

    return add


def names(kind: str | None = None) -> tuple[str, ...]:
    """Registered metric names (of one kind), in registration order."""
    return tuple(n for n, m in METRICS.items() if kind is None or m.kind == kind)


def unknown_metric_message(name: str, allowed) -> str:
    allowed = list(allowed)
    return f"unknown metric {name!r}.{closest_hint(str(name), allowed, cutoff=0.5)} Available: {', '.join(allowed)}"


def get(name: str) -> Metric:
    if name not in METRICS:
        raise KeyError(unknown_metric_message(name, METRICS))
    return METRICS[name]


def higher_is_better(name: str) -> bool | None:
    """The direction of a metric, a per-variable metric (``mse_t2m``) or a loss (``loss``: lower is better);
    None for a metric without an order."""
    if name in METRICS:
        return METRICS[name].higher_is_better
    base = next((m for m in METRICS if METRICS[m].per_variable and name.startswith(m + "_")), None)
    if base is not None:
        return METRICS[base].higher_is_better
    if name == "loss" or name.endswith("_loss"):
        return False
    raise KeyError(unknown_metric_message(name, METRICS))


@dataclass
class FrameBatch:
    """One batch of predictions and truths, as the metric functions see it.

    pred, true: (B, T, C, H, W) float64 in the data's units (normalisation undone); clipped: ``pred``
    clipped to ``clip_range`` (PSNR, SSIM, the perceptual and video metrics use it). ``spatial_norm``:
    MSE/MAE/RMSE divide by C*H*W (OpenSTL's WeatherBench convention). ``networks``: loaded networks by
    name (None where unavailable); ``notes``: where a metric explains why it has no value.
    """

    pred: np.ndarray
    true: np.ndarray
    clipped: np.ndarray
    clip_range: tuple[float, float] = (0.0, 1.0)
    spatial_norm: bool = False
    foreground_threshold: float = 0.1
    networks: dict = field(default_factory=dict)
    device: Any = "cpu"
    notes: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)

    def channels_ok(self, name: str, label: str) -> bool:
        """True for 1 or 3 channels; else a note for ``name`` (the network takes grey or RGB frames)."""
        c = self.pred.shape[2]
        if c in (1, 3):
            return True
        self.notes[name] = f"{label} n/a: it needs 1 or 3 channels, the data has {c}"
        return False

    def network(self, name: str):
        """The network ``name``, or None (its loader's note is already in ``notes``)."""
        return self.networks.get(name)
