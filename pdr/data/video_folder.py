"""``video_folder``: a user's own folder of videos (mp4, avi, gif, mkv, mov, webm: PyAV, the ``video`` extra) or
of frame folders (png, jpg: one folder per video), found anywhere under ``root``.

Clips of ``in_frames + out_frames`` frames are cut from every video, ``clip_stride`` frames apart, at
``image_size`` (resized or centre-cropped as ``pdr.data.frame_fit`` says). Videos, never clips, are divided
between train, val and test (``pdr.data.splits``), so no frame of a test video is seen in training. Videos too
short for one clip are left out with a warning naming them. ``normalise: standard`` standardises with the train
videos' statistics (``pdr.data.statistics``).
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..errors import DataError
from ..registry import DATASETS
from .base import SPLITS
from .clips import ClipCollection, find_sources, probe, read_source
from .frame_fit import FrameFit
from .own_data import OwnDataset, clip_geometry, declared_size, root_and_split_paths
from .splits import assign_splits
from .statistics import standard_statistics
from .video_io import FRAME_SUFFIXES, VIDEO_SUFFIXES

log = logging.getLogger("pdr")
WHAT = f"videos ({', '.join(VIDEO_SUFFIXES)}) or folders of frames ({', '.join(FRAME_SUFFIXES)})"


def videos_in(path: Path) -> list[Path]:
    """The videos a path names: a video file, a frame folder, or every video and frame folder under a folder."""
    if path.is_file():
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise DataError(f"{path}: not a video file; expected {', '.join(VIDEO_SUFFIXES)}")
        return [path]
    return find_sources(path)


@DATASETS.register("video_folder")
class VideoFolder(OwnDataset):
    """Clips of a user's videos, RGB (or grey with ``channels: 1``), ``image_size`` frames.

    Args:
        split, in_frames, out_frames: as every dataset.
        root: the folder (videos and frame folders anywhere under it), one video, or a glob pattern.
        image_size: the frame size the model sees, one int or [H, W] (required).
        channels: 3 (RGB) or 1 (grey, by luminance).
        resize, crop: what frames of another size become (``pdr.data.frame_fit``); false and null: an error.
        normalise: none (frames in [0, 1]), standard (the train videos' per-channel mean and std) or
            {mean: ..., std: ...}.
        frame_step: source frames between consecutive frames of a clip.
        clip_stride, eval_clip_stride: source frames between the starts of a video's clips in train, and in
            val/test (null: in_frames + out_frames, back to back).
        split_fractions: [train, val, test] shares of the videos that no ``<split>_files`` names.
        seed: the shuffle of those videos before they are divided.
        train_files, val_files, test_files: a split's own videos: paths or glob patterns relative to root (video
            files, frame folders or folders of them), e.g. ``train_files: train``.
    """

    uint8_scale = 1 / 255  # 8-bit video frames scaled to [0, 1]

    def __init__(
        self,
        split: str,
        in_frames: int,
        out_frames: int,
        root: str = "data/videos",
        image_size: int | list | None = None,
        channels: int = 3,
        resize: bool = False,
        crop: str | None = None,
        normalise: str | dict = "none",
        frame_step: int = 1,
        clip_stride: int | None = None,
        eval_clip_stride: int | None = None,
        split_fractions: list = (0.8, 0.1, 0.1),
        seed: int = 0,
        train_files: str | list | None = None,
        val_files: str | list | None = None,
        test_files: str | list | None = None,
    ):
        super().__init__(split, in_frames, out_frames)
        if channels not in (1, 3):
            raise DataError(f"data.channels: expected 3 (RGB) or 1 (grey), got {channels!r}")
        span, frame_step, stride = clip_geometry(split, in_frames, out_frames, frame_step, clip_stride,
                                                 eval_clip_stride)
        fit = FrameFit(declared_size(image_size), bool(resize), crop, offers_crop=True)
        pool, own = root_and_split_paths(root, dict(zip(SPLITS, (train_files, val_files, test_files))), videos_in,
                                         WHAT)
        splits = assign_splits(pool, own, split_fractions, seed, "video", f"data.root {root}")
        self.videos = [Path(p) for p in splits[split]]
        self.clips = ClipCollection([probe(p) for p in self.videos], in_frames + out_frames, frame_step, stride,
                                    grey=channels == 1, fit=fit)
        self._check_lengths(span, frame_step)
        train = [Path(p) for p in splits["train"]]
        key = (type(self).__name__, tuple((str(p.resolve()), p.stat().st_mtime_ns) for p in train), channels, fit)
        self.set_normalisation(normalise, channels, lambda: standard_statistics(
            (self._whole(p, channels == 1, fit) for p in train), channels, len(train), "videos"), key)

    @classmethod
    def frame_shape(cls, image_size=None, channels: int = 3, **_) -> tuple[int, int, int]:
        return (channels, *declared_size(image_size))

    def _check_lengths(self, span: int, frame_step: int) -> None:
        short = [s for s in self.clips.sources if s.num_frames < span]
        needed = (f"{span} frames that data.in_frames + data.out_frames = {self.in_frames} + {self.out_frames} "
                  f"frames {frame_step} apart need")
        if len(short) == len(self.clips.sources):
            longest = max(short, key=lambda s: s.num_frames)
            raise DataError(f"{longest.path}: {longest.num_frames} frames, the most of any {self.split} video, fewer "
                            f"than the {needed}")
        if short:
            names = ", ".join(f"{s.path.name} ({s.num_frames})" for s in short[:5])
            log.warning("data: %d of the %d %s videos have fewer than the %s and give no clip: %s%s", len(short),
                        len(self.clips.sources), self.split, needed, names, ", ..." if len(short) > 5 else "")

    @staticmethod
    def _whole(path: Path, grey: bool, fit: FrameFit):
        """Every frame of a video, (T, C, H, W) in [0, 1] (the statistics' pass)."""
        frames = read_source(path, grey, fit).astype("float32") / 255.0
        return frames[:, None] if frames.ndim == 3 else frames.transpose(0, 3, 1, 2)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} {self.split} clips")
        return self.pair(self.clips.clip(index))
