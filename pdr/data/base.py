"""What every dataset provides: (inputs, targets) pairs and the statistics to undo its normalisation."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError

SPLITS = ("train", "val", "test")


class VideoDataset(Dataset):
    """A split of a video prediction dataset.

    ``__getitem__`` returns ``(inputs, targets)`` float32 tensors of shapes (T_in, C, H, W) and
    (T_out, C, H, W). ``mean``/``std`` (None, a float, or one value per channel) undo the
    normalisation for metrics: ``raw = normalised * std + mean``.
    """

    mean: float | Sequence[float] | None = None
    std: float | Sequence[float] | None = None

    def __init__(self, split: str, in_frames: int, out_frames: int):
        if split not in SPLITS:
            raise DataError(f"split must be one of {SPLITS}, got {split!r}")
        self.split = split
        self.in_frames = int(in_frames)
        self.out_frames = int(out_frames)

    @classmethod
    def frame_shape(cls, **kwargs) -> tuple[int, int, int]:
        """(C, H, W) of one frame for these dataset arguments, without touching any data."""
        raise NotImplementedError

    def check_frame_count(self, available: int, name: str, key: str) -> None:
        needed = self.in_frames + self.out_frames
        if needed > available:
            raise DataError(
                f"data.in_frames + data.out_frames = {self.in_frames} + {self.out_frames} = {needed}, but {name} "
                f"sequences have {available} frames ({key}); lower the frame counts or raise {key}"
            )

    @staticmethod
    def split_pair(sequence: np.ndarray, in_frames: int, out_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        seq = torch.from_numpy(np.ascontiguousarray(sequence[: in_frames + out_frames], dtype=np.float32))
        return seq[:in_frames], seq[in_frames:]
