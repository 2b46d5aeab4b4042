"""Fixed-length clips cut from a collection of videos (video files or folders of frames).

Shared by the KTH and Human3.6M loaders: each source is probed once for its frame count and size
(cheap: a video header or the file list), clips are (source, first frame) pairs, and frames are
decoded only when a clip is requested, with a small per-process cache of decoded sources.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..optional import require
from .base import VideoDataset
from .frame_fit import FrameFit
from .video_io import FRAME_SUFFIXES, VIDEO_SUFFIXES, list_frames, read_frame, read_video


def split_ids(split: str, train, val, test, keys: tuple[str, str, str], what: str) -> set[int]:
    """The ids (persons, subjects) of ``split``; ``val`` None means the test ids, as OpenSTL validates.

    ``keys`` are the config keys of (train, val, test) for the messages.
    """
    def as_set(value, key):
        if value is None:
            return set()
        if isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
            return set(value)
        raise DataError(f"data.{key} must be a list of {what} numbers, got {value!r}")

    train_ids, test_ids = as_set(train, keys[0]), as_set(test, keys[2])
    val_ids = as_set(val, keys[1]) or test_ids
    if train_ids & (test_ids | val_ids):
        raise DataError(f"data.{keys[0]} overlaps the test or val {what}s: {sorted(train_ids & (test_ids | val_ids))}")
    return {"train": train_ids, "val": val_ids, "test": test_ids}[split]


@dataclass
class Source:
    """One video: a file or a folder of frames, with its frame count and frame size (H, W)."""

    path: Path
    num_frames: int
    size: tuple[int, int]


def probe(path: Path) -> Source:
    """Frame count and size of a video file or frame folder, without decoding the frames."""
    if path.is_dir():
        frames = list_frames(path)
        if not frames:
            raise DataError(f"{path}: a frame folder without image files")
        first = read_frame(frames[0])
        return Source(path, len(frames), tuple(first.shape[:2]))
    av = require("av", "video", "decoding video files (PyAV)")
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            count = stream.frames
            size = (stream.codec_context.height, stream.codec_context.width)
            if count <= 0:  # containers without a frame count in the header
                count = sum(1 for _ in container.decode(video=0))
    except Exception as exc:
        raise DataError(f"{path}: cannot open this video ({type(exc).__name__}: {exc}); the file is corrupt or "
                        "truncated, download it again") from exc
    if count <= 0:
        raise DataError(f"{path}: the video has no frames")
    return Source(path, count, size)


def find_sources(root: Path) -> list[Path]:
    """Video files and frame folders under ``root`` (recursively), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        here = Path(dirpath)
        if any(Path(f).suffix.lower() in FRAME_SUFFIXES for f in filenames):
            found.append(here)
        found.extend(here / f for f in sorted(filenames) if Path(f).suffix.lower() in VIDEO_SUFFIXES)
    return sorted(found)


def read_source(path: Path, grey: bool, fit: FrameFit, files: list[Path] | None = None) -> np.ndarray:
    """uint8 frames (T, H, W) or (T, H, W, 3) of a video file or frame folder, each fitted to ``fit.size`` as it is
    read (``files``: the frame folder's images to read, default all). A frame that does not fit is an error
    naming its file."""
    if not path.is_dir():
        return read_video(path, grey=grey, fit=lambda frame: fit(frame, path))
    files = list_frames(path) if files is None else files
    return np.stack([fit(read_frame(f, grey=grey)[None], f)[0] for f in files])


class ClipCollection:
    """Clips of ``length`` frames, ``frame_step`` apart, a new clip every ``clip_stride`` frames.

    Args:
        sources: probed videos.
        length, frame_step, clip_stride: clip geometry in source frames.
        grey: decode to one channel (else RGB).
        fit: the frame size and how frames of another size get it (``FrameFit``); sources it cannot fit are
            refused here, naming the file.
        cache_videos: decoded video files kept in memory per process, at the fitted size (frame folders are read
            per clip).
    """

    def __init__(self, sources: list[Source], length: int, frame_step: int, clip_stride: int, grey: bool,
                 fit: FrameFit, cache_videos: int = 4):
        self.sources, self.length, self.frame_step = sources, length, frame_step
        self.grey, self.fit = grey, fit
        self.span = (length - 1) * frame_step + 1
        self.clips = [(i, start) for i, src in enumerate(sources)
                      for start in range(0, src.num_frames - self.span + 1, clip_stride)]
        for src in sources:
            fit.check(*src.size, src.path)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = cache_videos
        self._listing: dict[int, list[Path]] = {}

    def __len__(self) -> int:
        return len(self.clips)

    def _decode_video(self, i: int) -> np.ndarray:
        """Every frame of video file i (a video is decoded from its start, so whole videos are cached)."""
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        frames = read_source(self.sources[i].path, self.grey, self.fit)
        self._cache[i] = frames
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return frames

    def clip(self, index: int) -> np.ndarray:
        """Clip ``index`` as float32 (length, C, H, W) in [0, 1]."""
        i, start = self.clips[index]
        src = self.sources[i]
        stop = start + (self.length - 1) * self.frame_step + 1
        if src.path.is_dir():  # read only the clip's frames
            files = self._listing.get(i) or self._listing.setdefault(i, list_frames(src.path))
            if len(files) != src.num_frames:
                raise DataError(f"{src.path}: {len(files)} frames now, {src.num_frames} when the dataset was built")
            frames = read_source(src.path, self.grey, self.fit, files[start:stop:self.frame_step])
        else:
            decoded = self._decode_video(i)
            if stop > len(decoded):
                raise DataError(f"{src.path}: {len(decoded)} frames decoded, {src.num_frames} announced in its "
                                "header; the file is truncated")
            frames = decoded[start:stop:self.frame_step]
        clip = frames.astype(np.float32) / 255.0
        return clip[:, None] if clip.ndim == 3 else clip.transpose(0, 3, 1, 2)


class ClipDataset(VideoDataset):
    """A dataset of clips cut from videos or frame folders, values in [0, 1] (KTH, Human3.6M).

    Subclasses find their sources and call ``cut_clips``.
    """

    mean = 0.0
    std = 1.0
    uint8_scale = 1 / 255  # 8-bit images scaled to [0, 1]

    def open_root(self, root: str, benchmark: str, how_to_get: str) -> Path:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"data.root: the {benchmark} folder {self.root.resolve()} does not exist; {how_to_get}")
        return self.root

    def cut_clips(self, paths: list[Path], frame_step: int, clip_stride: int, eval_clip_stride: int, grey: bool,
                  fit: FrameFit) -> None:
        """Probe ``paths`` and cut clips of in_frames + out_frames frames (``clip_stride`` apart in train)."""
        stride = clip_stride if self.split == "train" else eval_clip_stride
        self.clips = ClipCollection([probe(p) for p in paths], self.in_frames + self.out_frames, int(frame_step),
                                    int(stride), grey=grey, fit=fit)
        if len(self.clips) == 0:
            longest = max(self.clips.sources, key=lambda s: s.num_frames)
            raise DataError(
                f"data: the longest {self.split} video has {longest.num_frames} frames, fewer than the "
                f"{self.clips.span} needed for {self.in_frames} + {self.out_frames} frames {frame_step} apart "
                f"(data.in_frames, data.out_frames, data.frame_step): {longest.path}"
            )

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int):
        return self.split_pair(self.clips.clip(index), self.in_frames, self.out_frames)
