"""Normalisation statistics of a training split, computed once and streamed (``ChannelStats``), and the
``normalise`` option of the datasets that read a user's own data (``normalisation``).

``normalise`` takes ``none`` (frames as read: the dataset's [0, 1] scale), ``standard`` (per-channel mean and
standard deviation of the train split's frames) or the values themselves, ``{mean: [...], std: [...]}``. The
statistics of ``standard`` are computed in one pass over the train split, a sequence at a time, once per process
(every split of the same data reuses them). A run stores them in its checkpoints (``data_stats``) and in
``log.txt``; ``pdr.load_run`` gives them back to the run's config, so that evaluation and prediction use the
statistics the model was trained with, without reading the training data again (``with_stored_statistics``).
"""
from __future__ import annotations

import logging
from typing import Callable, Hashable, Iterable

import numpy as np
from tqdm import tqdm

from ..errors import DataError

log = logging.getLogger("pdr")
NORMALISE = ("none", "standard")
_COMPUTED: dict[Hashable, tuple[list[float], list[float]]] = {}


class ChannelStats:
    """Per-channel count, mean, sum of squared deviations, minimum and maximum of frames added in batches.

    Batches are merged with the pairwise update of Chan et al. in float64, so the result does not depend on how
    the frames were batched (up to rounding) and a large set never has to be held in memory.
    """

    def __init__(self, channels: int):
        self.count = 0  # values per channel
        self.frames = 0
        self.mean = np.zeros(channels)
        self.m2 = np.zeros(channels)
        self.low = np.full(channels, np.inf)
        self.high = np.full(channels, -np.inf)

    def add(self, frames: np.ndarray) -> None:
        """frames (..., C, H, W): any number of frames of C channels."""
        frames = np.asarray(frames, dtype=np.float64)
        values = np.moveaxis(frames, -3, 0).reshape(len(self.mean), -1)
        n = values.shape[1]
        if n == 0:
            return
        self.frames += int(np.prod(frames.shape[:-3]))
        mean = values.mean(axis=1)
        m2 = ((values - mean[:, None]) ** 2).sum(axis=1)
        delta, total = mean - self.mean, self.count + n
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + m2 + delta**2 * self.count * n / total
        self.count = total
        self.low = np.minimum(self.low, values.min(axis=1))
        self.high = np.maximum(self.high, values.max(axis=1))

    @property
    def std(self) -> np.ndarray:
        """The population standard deviation per channel."""
        return np.sqrt(self.m2 / max(self.count, 1))


def standard_statistics(sequences: Iterable[np.ndarray], channels: int, total: int | None = None,
                        what: str = "sequences") -> ChannelStats:
    """``ChannelStats`` of ``sequences`` (each (T, C, H, W)), read one at a time with a progress bar."""
    stats = ChannelStats(channels)
    for frames in tqdm(sequences, total=total, desc=f"normalisation statistics of the train {what}", unit=what[:-1],
                       leave=False, disable=None):
        stats.add(frames)
    return stats


def _given(value: dict, channels: int) -> tuple[list[float], list[float]]:
    unknown = sorted(set(value) - {"mean", "std"})
    if unknown or not {"mean", "std"} <= set(value):
        raise DataError(f"data.normalise: a mapping needs exactly the keys mean and std, got {sorted(value)}")
    out = []
    for key in ("mean", "std"):
        raw = value[key]
        items = raw if isinstance(raw, (list, tuple)) else [raw]
        if (len(items) not in (1, channels) or
                not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in items)):
            raise DataError(f"data.normalise.{key}: expected a number or {channels} numbers (one per channel), "
                            f"got {raw!r}")
        out.append([float(v) for v in items] * (channels if len(items) == 1 else 1))
    if min(out[1]) <= 0:
        raise DataError(f"data.normalise.std: every value must be > 0, got {value['std']!r}")
    return out[0], out[1]


def normalisation(value, channels: int, compute: Callable[[], ChannelStats], key: Hashable) \
        -> tuple[float | list[float], float | list[float]]:
    """(mean, std) that the dataset's frames are normalised with, ``frames = (read - mean) / std``.

    ``value``: the ``normalise`` option. ``compute``: the train split's ``ChannelStats`` (called for
    ``standard``, at most once per process for the same ``key``).
    """
    if value == "none":
        return 0.0, 1.0
    if isinstance(value, dict):
        return _given(value, channels)
    if value != "standard":
        raise DataError(f"data.normalise: expected none, standard or {{mean: ..., std: ...}}, got {value!r}")
    if key not in _COMPUTED:
        stats = compute()
        if stats.count == 0:
            raise DataError("data.normalise: standard: the train split has no frame to compute statistics on")
        std = stats.std
        flat = std <= 1e-12 * np.maximum(1.0, np.abs(stats.mean))
        if flat.any():
            log.warning("data.normalise: channels %s are constant in the train split; their std is taken as 1",
                        np.flatnonzero(flat).tolist())
        std = np.where(flat, 1.0, std)
        _COMPUTED[key] = ([float(v) for v in stats.mean], [float(v) for v in std])
        log.info("data.normalise: standard: mean %s, std %s per channel, from %d frames of the train split",
                 _rounded(_COMPUTED[key][0]), _rounded(_COMPUTED[key][1]), stats.frames)
    mean, std = _COMPUTED[key]
    return list(mean), list(std)


def _rounded(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"


def with_stored_statistics(data: dict, mean, std) -> None:
    """A run's data section with ``normalise: standard`` gets the statistics its checkpoint stored (``mean``,
    ``std``), so that its datasets are normalised as in training without computing them again."""
    if data.get("normalise") == "standard" and mean is not None and std is not None:
        data["normalise"] = {"mean": mean, "std": std}
