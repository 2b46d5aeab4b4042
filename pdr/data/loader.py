"""Datasets and data loaders from the ``data`` section of a config.

Training reads shuffled global batches through an ``EpochBatchSampler`` (each process its share of a batch);
evaluation reads a split in order, each process every ``world_size``-th sequence. Every loader is a
``VideoLoader``: it says how its frames are normalised (``loader.normalisation``), so metrics never look
inside the dataset it wraps.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from ..config import Config, dataset_kwargs
from ..errors import DataError, PDRError
from .base import VideoDataset
from .counts import build_split
from .sampler import EpochBatchSampler


_LEADING_DATA_KEY = re.compile(r"data(\.\w+)+")


def build_dataset(cfg: Config, split: str) -> VideoDataset:
    """Split ``split`` of the config's dataset. A DataError whose message opens with a data key (``data.image_size:
    ...``) names where that key was set first (``--set``, a config file), as config errors do."""
    data = cfg["data"]
    try:
        return build_split(data["name"], split, data["in_frames"], data["out_frames"], **dataset_kwargs(cfg))
    except DataError as exc:
        key = _LEADING_DATA_KEY.match(str(exc))
        if key is None:
            raise
        raise DataError(f"{cfg.origin(key.group())}: {exc}") from exc


def build_train_val(cfg: Config) -> tuple[VideoDataset, VideoDataset]:
    """The train and val splits of the config's dataset; an empty train split is an error."""
    train_set = build_dataset(cfg, "train")
    val_set = build_dataset(cfg, "val")
    if len(train_set) == 0:
        raise PDRError("the train split is empty (data.num_train or the data root)")
    return train_set, val_set


def _plain(value):
    """A mean/std as a float, a list of floats or None (checkpoints hold plain values)."""
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64)
    return float(arr) if arr.ndim == 0 else [float(v) for v in arr.ravel()]


@dataclass(frozen=True)
class Normalisation:
    """How a dataset's frames map to the data's units (``raw = frames * std + mean``) and its metric conventions
    (``spatial_norm``, ``channel_names``): the class attributes every ``VideoDataset`` declares."""

    mean: float | Sequence[float] | None = None
    std: float | Sequence[float] | None = None
    spatial_norm: bool = False
    channel_names: Sequence[str] | None = None

    @classmethod
    def of(cls, dataset: VideoDataset) -> Normalisation:
        return cls(dataset.mean, dataset.std, dataset.spatial_norm, dataset.channel_names)

    def metric_options(self) -> dict:
        """Keyword arguments of ``pdr.metrics.MetricAccumulator`` that score frames in the data's units."""
        return {"mean": self.mean, "std": self.std, "spatial_norm": self.spatial_norm,
                "channel_names": self.channel_names}

    def plain_stats(self) -> tuple:
        """(mean, std), each a float, a list of floats or None."""
        return _plain(self.mean), _plain(self.std)


class VideoLoader(DataLoader):
    """A DataLoader of a ``VideoDataset`` (or of one process's share of it) with its ``normalisation``."""

    def __init__(self, dataset, normalisation: Normalisation, **kwargs):
        super().__init__(dataset, **kwargs)
        self.normalisation = normalisation

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Start epoch ``epoch`` at batch ``start_batch`` (a resumed run): the sampler's order, and the dataset's
        clips where it draws new ones per epoch (workers are forked per epoch, so they see it)."""
        if callable(getattr(self.batch_sampler, "set_epoch", None)):
            self.batch_sampler.set_epoch(epoch, start_batch)
        if callable(getattr(self.dataset, "set_epoch", None)):
            self.dataset.set_epoch(epoch)


def build_train_loader(dataset: VideoDataset, batch_size: int, seed: int, num_workers: int = 0, rank: int = 0,
                       world_size: int = 1) -> VideoLoader:
    """Shuffled global batches of ``batch_size`` whose order depends only on (seed, epoch); this process reads its
    share of each (``loader.batch_sampler.set_epoch`` starts an epoch, or resumes one mid-way)."""
    try:
        sampler = EpochBatchSampler(len(dataset), batch_size, seed, rank=rank, world_size=world_size)
    except ValueError as exc:
        raise PDRError(str(exc)) from None
    # The loader gets its own generator: starting an epoch must not draw from the global RNG that
    # dropout uses, or a resumed run would diverge from an uninterrupted one.
    return VideoLoader(dataset, Normalisation.of(dataset), batch_sampler=sampler, num_workers=num_workers,
                       generator=torch.Generator().manual_seed(seed))


def build_eval_loader(dataset: VideoDataset, batch_size: int, num_workers: int = 0, rank: int = 0,
                      world_size: int = 1, seed: int | None = None) -> VideoLoader:
    """The split in order; under ``world_size`` processes, process ``rank`` reads sequences rank, rank + world_size, ...
    ``seed`` gives the loader its own generator (training's validation) instead of drawing from the global one."""
    shard = dataset if world_size == 1 else Subset(dataset, range(rank, len(dataset), world_size))
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return VideoLoader(shard, Normalisation.of(dataset), batch_size=batch_size, shuffle=False,
                       num_workers=num_workers, generator=generator)
