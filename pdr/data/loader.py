"""Datasets from the ``data`` section of a config."""
from __future__ import annotations

from ..config import Config, dataset_kwargs
from ..registry import DATASETS
from .base import VideoDataset


def build_dataset(cfg: Config, split: str) -> VideoDataset:
    data = cfg["data"]
    return DATASETS.build(
        data["name"], split=split, in_frames=data["in_frames"], out_frames=data["out_frames"], **dataset_kwargs(cfg)
    )
