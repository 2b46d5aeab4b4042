"""Frames brought to a declared size: checked, centre-cropped and/or resized (``FrameFit``).

The same rule for every dataset that reads frames of a size it does not choose (KTH, Human3.6M, a folder of
videos, arrays): ``data.image_size`` is the size the model sees, and nothing is resized or cut unless the
config says so.

====================  =================  ===========================================================
``resize``            ``crop``           frames of another size
====================  =================  ===========================================================
false                 null               an error naming the file
true                  null               resized to ``image_size`` (the aspect ratio is not kept)
false                 center             the centre ``image_size`` window (frames at least that large)
true                  center             the largest centred window of ``image_size``'s aspect ratio,
                                         resized to ``image_size`` (the aspect ratio is kept)
====================  =================  ===========================================================
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from .video_io import resize_frames

CROPS = (None, "center")


def size_pair(value, key: str = "data.image_size") -> tuple[int, int]:
    """(H, W) of an ``image_size`` given as one int or [H, W]; anything else is a DataError naming ``key``."""
    pair = [value, value] if isinstance(value, int) and not isinstance(value, bool) else value
    if (not isinstance(pair, (list, tuple)) or len(pair) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair)):
        raise DataError(f"{key}: expected the frame size as one int or [height, width] (ints >= 1), got {value!r}")
    return int(pair[0]), int(pair[1])


@dataclass(frozen=True)
class FrameFit:
    """How frames of any size become ``size`` = (H, W) frames (the table of the module docstring).

    ``offers_crop``: the dataset has a ``crop`` option, so error messages may suggest it.
    """

    size: tuple[int, int]
    resize: bool = False
    crop: str | None = None
    offers_crop: bool = False

    def __post_init__(self):
        if self.crop not in CROPS:
            raise DataError(f"data.crop: expected null or 'center', got {self.crop!r}")

    def problem(self, height: int, width: int) -> str | None:
        """Why frames of ``height`` x ``width`` cannot be fitted (a phrase to follow the file's name), or None."""
        h, w = self.size
        if self.resize or (height, width) == (h, w):
            return None
        if self.crop == "center":
            if height >= h and width >= w:
                return None
            return (f"frames are {height}x{width}, smaller than the {h}x{w} window that data.crop: center cuts; "
                    "set data.resize: true to scale them")
        crop = ", data.crop: center to cut their centre" if self.offers_crop else ""
        return (f"frames are {height}x{width} but data.image_size asks {h}x{w}; set data.resize: true to resize "
                f"them (area averaging){crop}, or resize the files")

    def check(self, height: int, width: int, path) -> None:
        """A DataError naming ``path`` when its ``height`` x ``width`` frames cannot be fitted."""
        problem = self.problem(height, width)
        if problem:
            raise DataError(f"{path}: {problem}")

    def window(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the part of a ``height`` x ``width`` frame that is kept."""
        if self.crop != "center":
            return 0, 0, height, width
        h, w = self.size
        if not self.resize:
            ch, cw = h, w
        elif width * h >= height * w:  # wider than the target: keep the full height
            ch, cw = height, min(width, max(1, round(height * w / h)))
        else:
            ch, cw = min(height, max(1, round(width * h / w))), width
        return (height - ch) // 2, (width - cw) // 2, ch, cw

    def __call__(self, frames: np.ndarray, path) -> np.ndarray:
        """frames (T, H, W) or (T, H, W, C) of any dtype -> (T, *size) or (T, *size, C), the same dtype.

        ``path`` names the frames' file in the error raised when they cannot be fitted.
        """
        self.check(frames.shape[1], frames.shape[2], path)
        top, left, ch, cw = self.window(frames.shape[1], frames.shape[2])
        frames = frames[:, top : top + ch, left : left + cw]
        return resize_frames(frames, self.size) if frames.shape[1:3] != self.size else frames
