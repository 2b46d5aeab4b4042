"""Batches of indices whose order depends only on (seed, epoch), split between processes."""
from __future__ import annotations

import math

import torch
from torch.utils.data import Sampler


class EpochBatchSampler(Sampler[list[int]]):
    """Shuffled global batches; process ``rank`` of ``world_size`` gets its contiguous share of each.

    The order depends only on (seed, epoch), so a run resumes mid-epoch by skipping
    ``start_batch`` batches, and N processes see together exactly the batches one process sees.
    """

    def __init__(self, size: int, batch_size: int, seed: int, shuffle: bool = True, drop_last: bool = True,
                 rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise ValueError(f"data.batch_size ({batch_size}) must be divisible by the number of processes ({world_size})")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.shuffle, self.drop_last = shuffle, drop_last and size >= batch_size
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        """Batches in a whole epoch (not counting the ones skipped by ``start_batch``)."""
        return self.size // self.batch_size if self.drop_last else math.ceil(self.size / self.batch_size)

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100003 + self.epoch))
        else:
            order = torch.arange(self.size)
        share = self.batch_size // self.world_size
        for b in range(self.start_batch, len(self)):
            batch = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield batch[self.rank * share : (self.rank + 1) * share].tolist()
