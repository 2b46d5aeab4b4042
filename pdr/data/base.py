"""What every dataset provides: (inputs, targets) pairs and the statistics to undo its normalisation."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError

SPLITS = ("train", "val", "test")


def file_status(path: Path) -> str:
    """One line of a dataset's file list (``describe_files``): the file's name, present with its size or missing."""
    if path.is_file():
        return f"  [present] {path.name} ({path.stat().st_size / 2**20:.1f} MiB)"
    return f"  [missing] {path.name}"


def split_batch(batch, device=None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(inputs, targets, extras) of a collated batch, moved to ``device``; extras is {} for 2-tuples."""
    x, y = batch[0], batch[1]
    extras = dict(batch[2]) if len(batch) > 2 else {}
    if device is not None:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        extras = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in extras.items()}
    return x, y, extras


class VideoDataset(Dataset):
    """A split of a video prediction dataset.

    ``__getitem__`` returns ``(inputs, targets)`` float32 tensors of shapes (T_in, C, H, W) and
    (T_out, C, H, W), or ``(inputs, targets, extras)`` with a dict of per-sequence labels (for example
    ``{"collision": (T_out,)}``) that the training loop hands to backbones naming them in
    ``extra_inputs``. ``mean``/``std`` (None, a float, or one value per channel) undo the
    normalisation for metrics: ``raw = normalised * std + mean``. ``spatial_norm`` and ``channel_names``
    are the dataset's metric conventions (``pdr.metrics.MetricAccumulator``): MSE/MAE/RMSE per pixel
    instead of summed over pixels, and per-variable metrics for multi-variable data.
    ``validation_is_test``: the val split is the test data (OpenSTL's KTH and Human3.6M protocol).
    ``uint8_scale``: for data read from 8-bit images, the data units per 8-bit level (frames = uint8 * scale,
    1/255 for frames in [0, 1]); None for data that are not 8-bit images. ``PDRModel.predict`` and pdr-predict
    read it (``uint8_scale_of``) to take uint8 frames and videos.
    """

    mean: float | Sequence[float] | None = None
    std: float | Sequence[float] | None = None
    spatial_norm: bool = False
    channel_names: list[str] | None = None
    validation_is_test: bool = False
    uint8_scale: float | None = None

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

    @classmethod
    def uint8_scale_of(cls, **kwargs) -> float | None:
        """``uint8_scale`` for these dataset arguments (a dataset whose scaling is an argument overrides this)."""
        return cls.uint8_scale

    @classmethod
    def describe_files(cls, root: Path, **kwargs) -> list[str] | None:
        """Lines for a person to read: which files of a download in ``root`` this dataset would read with
        these dataset arguments, present or missing (tools/prepare_data.py); None for a dataset that
        describes no download (generated data)."""
        return None

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
