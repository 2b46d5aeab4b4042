"""What the datasets of a user's own data (``arrays``, ``video_folder``) share: the declared frame size, the
clip geometry, the files of ``root`` and of each split, and frames normalised as ``normalise`` says."""
from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Callable, Hashable

import numpy as np
import torch

from ..errors import DataError
from .base import VideoDataset
from .frame_fit import size_pair
from .splits import is_pattern, named_paths
from .statistics import ChannelStats, normalisation


def declared_size(image_size, found: str = "") -> tuple[int, int]:
    """(H, W) of ``data.image_size``, which must be set (``found``: what the data holds, for the message)."""
    if image_size is None:
        raise DataError("data.image_size: not set; declare the frame size the model sees (one int or [height, "
                        f"width]){found}; frames of another size are resized (data.resize) or cropped (data.crop)")
    return size_pair(image_size)


def clip_geometry(split: str, in_frames: int, out_frames: int, frame_step, clip_stride, eval_clip_stride) \
        -> tuple[int, int, int]:
    """(span, frame_step, stride) of this split's clips, in stored frames: a clip covers ``span`` frames, and one
    starts every ``stride`` frames (null strides: (in_frames + out_frames) * frame_step, clips back to back)."""
    length = in_frames + out_frames
    stride = clip_stride if split == "train" else eval_clip_stride
    for key, value in (("frame_step", frame_step), ("clip_stride", clip_stride),
                       ("eval_clip_stride", eval_clip_stride)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise DataError(f"data.{key}: expected an int >= 1" + ("" if key == "frame_step" else " or null")
                            + f", got {value!r}")
    if frame_step is None:
        raise DataError("data.frame_step: expected an int >= 1, got None")
    return (length - 1) * frame_step + 1, frame_step, length * frame_step if stride is None else stride


def root_and_split_paths(root, split_files: dict, find: Callable[[Path], list[Path]], what: str) \
        -> tuple[list[Path], dict[str, list[Path]]]:
    """(the items of ``root`` that no split names, {split: the items its files name}).

    ``root``: a file, a folder or a glob pattern; ``split_files``: {split: ``data.<split>_files`` value or None},
    paths relative to ``root``'s folder; ``find(path)``: the items (files, videos) a file or folder holds;
    ``what`` describes them for messages.
    """
    text = str(root)
    if is_pattern(text):
        roots = [Path(m) for m in sorted(glob.glob(text, recursive=True))]
        if not roots:
            raise DataError(f"data.root: nothing matches {text}; expected {what}")
        base = Path(os.path.commonpath([str(m if m.is_dir() else m.parent) for m in roots]))
    else:
        path = Path(text)
        if not path.exists():
            raise DataError(f"data.root: {path.resolve()} does not exist; point it at {what}")
        roots, base = [path], path if path.is_dir() else path.parent
    own = {split: [item for p in named_paths(base, value, f"{split}_files") for item in find(p)]
           for split, value in split_files.items() if value is not None}
    claimed = {p.resolve() for items in own.values() for p in items}
    everything = [item for p in roots for item in find(p)]
    pool = sorted(p for p in everything if p.resolve() not in claimed)
    for split, items in own.items():
        if not items:
            raise DataError(f"data.{split}_files: {split_files[split]!r} names no {what}")
    if not everything and not own:
        raise DataError(f"data.root: no {what} in {Path(text).resolve()}")
    return pool, own


class OwnDataset(VideoDataset):
    """A split of a user's own data: clips (T, C, H, W) float32 in the data's [0, 1] scale, normalised with the
    ``normalise`` statistics (``mean``, ``std``) before they are returned."""

    def set_normalisation(self, value, channels: int, compute: Callable[[], ChannelStats], key: Hashable) -> None:
        self.mean, self.std = normalisation(value, channels, compute, key)
        shape = (1, -1, 1, 1)
        self._offset = torch.tensor(np.reshape(self.mean, -1), dtype=torch.float32).view(shape)
        self._scale = torch.tensor(np.reshape(self.std, -1), dtype=torch.float32).view(shape)

    def pair(self, clip: np.ndarray):
        """(inputs, targets) of a clip (T, C, H, W) in the data's scale, normalised."""
        x, y = self.split_pair(clip, self.in_frames, self.out_frames)
        return (x - self._offset) / self._scale, (y - self._offset) / self._scale

