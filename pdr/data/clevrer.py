"""CLEVRER (Yi et al., 2020): rendered videos of colliding objects, with per-frame annotations.

Layout under ``root`` (as distributed at http://clevrer.csail.mit.edu, unzipped anywhere under it):

* videos ``video_XXXXX.mp4`` (480x320, 128 frames at 25 fps), e.g. ``video_train/video_00000-01000/``;
* annotations ``annotation_XXXXX.json``, e.g. ``annotation_train/annotation_00000-01000/``, with
  ``"collision": [{"object_ids": [i, j], "frame_id": f, "location": [...]}, ...]`` and
  ``"motion_trajectory": [{"frame_id": f, "objects": [{"object_id", "location", "inside_camera_view", ...}]}]``.

Files are found by name anywhere under ``root``; the split is given by the video index
(the official one: 0-9999 train, 10000-14999 val, 15000-19999 test; half-open ranges in the
config). The official test annotations are not public: set ``require_annotations: false`` to
evaluate frames only (collision labels are then unavailable).

Frames are decoded lazily (one video per item), resized explicitly to ``image_size`` x ``image_size``
with area averaging (the 3:2 aspect ratio is NOT kept: 480x320 -> 128x128 squeezes the width), and
scaled to [0, 1] (mean 0, std 1: no further normalisation). A clip is ``in_frames + out_frames``
frames ``frame_step`` source frames apart. ``cache_dir``, when set, keeps the decoded, resized
frames of each video as ``.npy`` so that later epochs skip decoding.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..errors import DataError
from ..registry import DATASETS
from .base import VideoDataset
from .clevrer_files import HOW_TO_GET, VIDEO_NAME, collision_frames, index_files, load_annotation
from .flow_cache import clip_flows
from .optical_flow import METHOD_CHOICES, resolve_flow_method
from .video_io import read_video, resize_frames

CLIP_STARTS = ("random", "fixed")


def _index_range(value, key: str) -> tuple[int, int]:
    if (not isinstance(value, (list, tuple)) or len(value) != 2 or not all(isinstance(v, int) for v in value)
            or not 0 <= value[0] < value[1]):
        raise DataError(f"data.{key} must be [first, end) video indices with 0 <= first < end, got {value!r}")
    return int(value[0]), int(value[1])


@DATASETS.register("clevrer")
class CLEVRER(VideoDataset):
    """CLEVRER clips, RGB ``image_size`` x ``image_size``, values in [0, 1]; one clip per video.

    Args:
        split, in_frames, out_frames: as every dataset (20 -> 12 in our configs).
        root: folder with the videos and annotations (searched recursively).
        train_videos, val_videos, test_videos: [first, end) video indices of each split.
        image_size: frame height and width after resizing (area averaging, aspect ratio not kept).
        frame_step: source frames between consecutive clip frames.
        clip_start: "random" (a start drawn from (seed, video index, epoch); see ``set_epoch``) or
            "fixed" (``start_frame``). Default: "random" for train, "fixed" for val and test.
        start_frame: the first source frame of a "fixed" clip.
        seed: seed of the random clip starts.
        require_annotations: every video needs its annotation (else only frames are available).
        return_collision: in the train split, ``__getitem__`` returns ``(inputs, targets, {"collision":
            (T_out,)})``: the trainer hands the labels to backbones that train on them (latent_flow's
            collision head). Val and test always return pairs (the official test labels are not public);
            ``collision_labels(index)`` and ``item(index)`` give the labels of any annotated video.
        return_flows: in the train split, add ``"flow_backward"`` (T-1, 2, H, W) and ``"flow_visible"``
            (T-1, 1, H, W) over the clip's frames to the extras, read from ``video_XXXXX_flow.npz`` next to each
            video (written by tools/precompute_flow.py; resized to ``image_size`` with the vectors scaled). Needs
            ``frame_step: 1``: the stored flows are between consecutive frames.
        flow_method: the method the precomputed flows must have been made with, "raft_large", "farneback" or
            "auto" (RAFT when its weights are in the torch hub cache, else Farneback: the rule of
            tools/precompute_flow.py, whose default is the same "auto"); tools/precompute_flow.py records the
            method in each file, and flows of another method are an error.
        cache_dir: folder for decoded, resized frames (``video_XXXXX_<H>x<W>.npy``), or null.
        max_videos: use only the first this many videos of the split (quick runs), or null.
    """

    mean = 0.0
    std = 1.0
    uint8_scale = 1 / 255  # 8-bit images scaled to [0, 1]

    def __init__(
        self,
        split: str,
        in_frames: int,
        out_frames: int,
        root: str = "data/clevrer",
        train_videos: list = (0, 10000),
        val_videos: list = (10000, 15000),
        test_videos: list = (15000, 20000),
        image_size: int = 128,
        frame_step: int = 1,
        clip_start: str | None = None,
        start_frame: int = 0,
        seed: int = 0,
        require_annotations: bool = True,
        return_collision: bool = False,
        return_flows: bool = False,
        flow_method: Literal["auto", "raft_large", "farneback"] = "auto",
        cache_dir: str | None = None,
        max_videos: int | None = None,
    ):
        super().__init__(split, in_frames, out_frames)
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"data.root: the CLEVRER folder {self.root.resolve()} does not exist; {HOW_TO_GET}")
        ranges = {name: _index_range(list(value), f"{name}_videos")
                  for name, value in (("train", train_videos), ("val", val_videos), ("test", test_videos))}
        self._check_disjoint(ranges)
        self.clip_start = clip_start or ("random" if split == "train" else "fixed")
        if self.clip_start not in CLIP_STARTS:
            raise DataError(f"data.clip_start must be one of {CLIP_STARTS} (or null), got {clip_start!r}")
        if not isinstance(image_size, int) or image_size < 1 or not isinstance(frame_step, int) or frame_step < 1:
            raise DataError(f"data.image_size and data.frame_step must be ints >= 1, got {image_size!r} and "
                            f"{frame_step!r}")
        self.image_size, self.frame_step = image_size, frame_step
        self.start_frame, self.seed, self.epoch = int(start_frame), int(seed), 0
        self.return_collision = bool(return_collision)
        self.return_flows = bool(return_flows)
        if self.return_flows and frame_step != 1:
            raise DataError(f"data.return_flows needs data.frame_step: 1 (the stored flows join consecutive frames), "
                            f"got {frame_step}")
        if flow_method not in METHOD_CHOICES:
            raise DataError(f"data.flow_method must be one of {list(METHOD_CHOICES)}, got {flow_method!r}")
        self.flow_method_asked = flow_method
        self.flow_method = resolve_flow_method(flow_method)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.videos, self.annotations = self._select(ranges[split], bool(require_annotations), max_videos)

    # ------------------------------------------------------------------ finding the files

    @staticmethod
    def _check_disjoint(ranges: dict[str, tuple[int, int]]) -> None:
        names = list(ranges)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                (a0, a1), (b0, b1) = ranges[a], ranges[b]
                if a0 < b1 and b0 < a1:
                    raise DataError(f"data.{a}_videos {list(ranges[a])} overlaps data.{b}_videos {list(ranges[b])}")

    def _select(self, index_range: tuple[int, int], require_annotations: bool, max_videos):
        """Paths of this split's videos and their annotations (None where absent), sorted by index."""
        videos, annotations = index_files(self.root)
        first, end = index_range
        chosen = sorted(i for i in videos if first <= i < end)
        if max_videos is not None:
            chosen = chosen[: int(max_videos)]
        if not chosen:
            raise DataError(f"data.root: no CLEVRER video video_XXXXX.mp4 with index in [{first}, {end}) "
                            f"({self.split} split) under {self.root.resolve()}; {HOW_TO_GET}")
        missing = [i for i in chosen if i not in annotations]
        if missing and require_annotations:
            raise DataError(
                f"data.root: {len(missing)} {self.split} video(s) have no annotation, e.g. annotation_{missing[0]:05d}.json "
                f"for {videos[missing[0]]} (searched under {self.root.resolve()}); {HOW_TO_GET}. The official test "
                f"annotations are not public: set data.require_annotations: false to use frames only")
        return [videos[i] for i in chosen], [annotations.get(i) for i in chosen]

    @classmethod
    def frame_shape(cls, image_size: int = 128, **_) -> tuple[int, int, int]:
        return (3, image_size, image_size)

    def __len__(self) -> int:
        return len(self.videos)

    def set_epoch(self, epoch: int) -> None:
        """Pick new random clip starts (clip_start "random"): starts are drawn from (seed, video, epoch)."""
        self.epoch = int(epoch)

    # ------------------------------------------------------------------ frames

    @property
    def span(self) -> int:
        """Source frames covered by one clip."""
        return (self.in_frames + self.out_frames - 1) * self.frame_step + 1

    def frames(self, index: int) -> np.ndarray:
        """Every frame of video ``index``, decoded and resized: uint8 (T_src, image_size, image_size, 3)."""
        cached = self._cache_path(index)
        if cached is not None and cached.is_file():
            try:
                return np.load(cached)
            except (OSError, ValueError):
                cached.unlink(missing_ok=True)  # a damaged cache entry: decode again
        frames = resize_frames(read_video(self.videos[index]), (self.image_size, self.image_size))
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(tmp, frames)
            tmp.replace(cached)
        return frames

    def _cache_path(self, index: int) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"{self.videos[index].stem}_{self.image_size}x{self.image_size}.npy"

    def start(self, index: int, num_frames: int) -> int:
        """First source frame of the clip of video ``index`` that has ``num_frames`` frames."""
        last = num_frames - self.span
        if last < 0:
            raise DataError(f"{self.videos[index]}: {num_frames} frames, fewer than the {self.span} needed for "
                            f"{self.in_frames} + {self.out_frames} frames {self.frame_step} apart (data.in_frames, "
                            f"data.out_frames, data.frame_step)")
        if self.clip_start == "fixed":
            if self.start_frame > last:
                raise DataError(f"{self.videos[index]}: data.start_frame {self.start_frame} leaves fewer than "
                                f"{self.span} frames of its {num_frames}")
            return self.start_frame
        rng = np.random.default_rng([self.seed, index, self.epoch])
        return int(rng.integers(0, last + 1))

    def source_frames(self, index: int, num_frames: int) -> np.ndarray:
        """Source-frame numbers (T_in + T_out,) of the clip of video ``index``."""
        return self.start(index, num_frames) + self.frame_step * np.arange(self.in_frames + self.out_frames)

    # ------------------------------------------------------------------ annotations

    def annotation(self, index: int) -> dict:
        """The parsed annotation JSON of video ``index``."""
        path = self.annotations[index]
        if path is None:
            raise DataError(f"{self.videos[index]}: no annotation_{self._video_number(index):05d}.json under "
                            f"{self.root.resolve()} (data.require_annotations is false); {HOW_TO_GET}")
        return load_annotation(path)

    def _video_number(self, index: int) -> int:
        return int(VIDEO_NAME.match(self.videos[index].name).group(1))

    def _labels(self, index: int, picked: np.ndarray) -> torch.Tensor:
        """(T,) float: 1 where a collision happened in (previous clip frame, this clip frame] in source frames."""
        events = collision_frames(self.annotation(index))
        low = picked - self.frame_step
        hit = ((events[None, :] > low[:, None]) & (events[None, :] <= picked[:, None])).any(axis=1)
        return torch.from_numpy(hit.astype(np.float32))

    def collision_labels(self, index: int, num_frames: int | None = None, all_frames: bool = False) -> torch.Tensor:
        """Collision label per predicted step: float tensor (T_out,), or (T_in + T_out,) with ``all_frames``.

        Step t is 1 when a collision event's ``frame_id`` lies in (f_t - frame_step, f_t], f_t being the source
        frame of clip frame t (with frame_step 1: exactly at f_t). ``num_frames`` (the video's frame count)
        is needed for random clip starts; it is read from the video (or the cache) when not given.
        """
        if num_frames is None:
            num_frames = len(self.frames(index)) if self.clip_start == "random" else self.span + self.start_frame
        labels = self._labels(index, self.source_frames(index, num_frames))
        return labels if all_frames else labels[self.in_frames:]

    def _clip(self, index: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """inputs (T_in, 3, H, W), targets (T_out, 3, H, W) in [0, 1] and their source frames (T_in + T_out,)."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} {self.split} videos")
        frames = self.frames(index)
        picked = self.source_frames(index, len(frames))
        clip = frames[picked].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        inputs, targets = self.split_pair(clip, self.in_frames, self.out_frames)
        return inputs, targets, picked

    def item(self, index: int) -> dict:
        """Everything about clip ``index``: inputs (T_in, 3, H, W), targets (T_out, 3, H, W), collision (T_out,)
        (None without an annotation), source_frames (T_in + T_out,) and the video path."""
        inputs, targets, picked = self._clip(index)
        collision = self._labels(index, picked)[self.in_frames:] if self.annotations[index] is not None else None
        return {"inputs": inputs, "targets": targets, "collision": collision, "source_frames": picked,
                "video": str(self.videos[index])}

    def flows(self, index: int, picked: np.ndarray) -> dict:
        """Precomputed backward flows (T-1, 2, H, W) and visibility (T-1, 1, H, W) between the picked frames."""
        return clip_flows(self.videos[index], picked, self.flow_method, (self.image_size, self.image_size),
                          asked=self.flow_method_asked)

    def __getitem__(self, index: int):
        if self.split != "train" or not (self.return_collision or self.return_flows):
            inputs, targets, _ = self._clip(index)
            return inputs, targets
        item = self.item(index)
        extras = {}
        if self.return_collision:
            if item["collision"] is None:
                raise DataError(f"{item['video']}: data.return_collision needs its annotation JSON; {HOW_TO_GET}")
            extras["collision"] = item["collision"]
        if self.return_flows:
            extras.update(self.flows(index, item["source_frames"]))
        return item["inputs"], item["targets"], extras
