"""``num_train``, ``num_val``, ``num_test`` for every dataset (``pdr.config.data_options``).

A generated dataset takes them as arguments: how many sequences to generate. For any other dataset,
``build_split`` keeps the first ``num_<split>`` sequences of the split, in the dataset's own order (all of
them when the count is unset or null, or larger than the split).
"""
from __future__ import annotations

from ..config.data_options import SPLIT_COUNTS, dataset_takes
from ..registry import DATASETS
from .base import VideoDataset

_COPIED = ("split", "in_frames", "out_frames", "mean", "std", "spatial_norm", "channel_names", "validation_is_test")


class FirstSequences(VideoDataset):
    """The first ``count`` sequences of ``dataset``, with its normalisation and conventions; other attributes
    (the dataset's files, ``set_epoch``, labels) are the dataset's own, so index i is the dataset's index i."""

    def __init__(self, dataset: VideoDataset, count: int):
        self.dataset = dataset
        self.count = min(int(count), len(dataset))
        for name in _COPIED:
            setattr(self, name, getattr(dataset, name))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        if not -self.count <= index < self.count:
            raise IndexError(f"index {index} out of range for {self.count} {self.split} sequences")
        return self.dataset[index % self.count]

    def __getattr__(self, name: str):
        if name == "dataset":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)


def build_split(name: str, split: str, in_frames: int, out_frames: int, **kwargs) -> VideoDataset:
    """Split ``split`` of the registered dataset ``name`` built with ``kwargs`` (a config's data keys), the split
    counts it does not take itself applied as ``FirstSequences``."""
    counts = {key: kwargs.pop(key) for key in SPLIT_COUNTS if key in kwargs and not dataset_takes(name, key)}
    dataset = DATASETS.build(name, split=split, in_frames=in_frames, out_frames=out_frames, **kwargs)
    limit = counts.get(f"num_{split}")
    return dataset if limit is None or limit >= len(dataset) else FirstSequences(dataset, limit)
