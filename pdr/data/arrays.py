"""``arrays``: a user's own sequences stored as arrays (``.npy``, ``.npz``, HDF5), one file or many.

Each file holds one array whose axes ``layout`` names (``NTHW``, ``NTCHW``, ``NTHWC``, ``TNHW`` as Moving
MNIST's ``mnist_test_seq.npy``, ``THW`` for a sequence per file, ...), read a sequence at a time and never
whole (``pdr.data.array_files``). Values are brought to the data's [0, 1] scale by ``value_range`` or by
their dtype, frames to ``image_size`` as ``pdr.data.frame_fit`` says, and clips of ``in_frames +
out_frames`` frames are cut from every sequence. Sequences are divided between train, val and test by
files named per split or by fractions with a seed (``pdr.data.splits``); a sequence's clips are all in
one split. ``normalise: standard`` standardises with the train split's statistics (``pdr.data.statistics``).
"""
from __future__ import annotations

import glob
import hashlib
import logging
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..registry import DATASETS
from .array_files import ARRAY_SUFFIXES, ArrayFile, Layout
from .base import SPLITS
from .frame_fit import FrameFit
from .own_data import OwnDataset, clip_geometry, declared_size, root_and_split_paths
from .splits import assign_splits
from .statistics import standard_statistics

log = logging.getLogger("pdr")
WHAT = f"array files ({', '.join(ARRAY_SUFFIXES)})"


def array_files_in(path: Path) -> list[Path]:
    """The array files a path names: itself, or every array file under a folder (sorted)."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in ARRAY_SUFFIXES)
    if path.suffix.lower() not in ARRAY_SUFFIXES:
        raise DataError(f"{path}: not an array file; expected {', '.join(ARRAY_SUFFIXES)}")
    return [path]


def scale_values(raw: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    """Stored values -> float32 in the data's [0, 1] scale: ``value_range`` (low, high) -> (0, 1); without it
    unsigned integers are divided by their largest value (uint8: 255), other values are kept."""
    if value_range is not None:
        low, high = value_range
        return ((raw.astype(np.float64) - low) / (high - low)).astype(np.float32)
    if raw.dtype.kind == "u":
        return (raw.astype(np.float64) / np.iinfo(raw.dtype).max).astype(np.float32)
    return raw.astype(np.float32)


@DATASETS.register("arrays")
class ArraySequences(OwnDataset):
    """Sequences of a user's array files, C channels of ``image_size`` frames.

    Args:
        split, in_frames, out_frames: as every dataset.
        root: an array file, a folder (every array file under it) or a glob pattern (``data/*.npy``).
        layout: the order of the arrays' axes, e.g. ``NTHW`` (required).
        key: the array's name in ``.npz`` and HDF5 files (null: each file's only array).
        image_size: the frame size the model sees, one int or [H, W] (required).
        channels: channels per frame (1 when the layout has no C).
        resize, crop: what frames of another size become (``pdr.data.frame_fit``); false and null: an error.
        value_range: [low, high] of the stored values, mapped to [0, 1]; null: unsigned integers divided by
            their largest value (uint8: 255), floats and signed integers used as stored.
        normalise: none, standard (the train split's per-channel mean and std) or {mean: ..., std: ...}.
        frame_step: stored frames between consecutive frames of a clip.
        clip_stride, eval_clip_stride: frames between the starts of a sequence's clips in train, and in val/test
            (null: in_frames + out_frames, back to back; a sequence of exactly that length gives one clip).
        split_fractions: [train, val, test] shares of the sequences that no ``<split>_files`` names.
        seed: the shuffle of those sequences before they are divided.
        train_files, val_files, test_files: a split's own files (paths or glob patterns relative to root's folder).
        cache_dir: where compressed ``.npz`` arrays are decompressed once (default ``~/.cache/pdr/arrays``).
    """

    @classmethod
    def uint8_scale_of(cls, root=None, layout=None, key=None, value_range=None, cache_dir=None, **_) -> float | None:
        """1/255 when the stored values are 8-bit levels (``value_range`` [0, 255], or uint8 arrays read without
        one), so that ``predict`` takes uint8 frames as the files hold them; None otherwise (or when the files
        cannot be opened to tell)."""
        if value_range is not None:
            return 1 / 255 if [float(v) for v in value_range] == [0.0, 255.0] else None
        try:
            pattern = str(root)
            paths = sorted(Path(p) for p in glob.glob(pattern)) if glob.has_magic(pattern) else array_files_in(Path(root))
            first = ArrayFile(paths[0], key, Layout.parse(layout), cache_dir)
        except (DataError, OSError, IndexError, TypeError, ValueError):
            return None
        return 1 / 255 if first.dtype == np.uint8 else None

    def __init__(
        self,
        split: str,
        in_frames: int,
        out_frames: int,
        root: str = "data/arrays",
        layout: str | None = None,
        key: str | None = None,
        image_size: int | list | None = None,
        channels: int = 1,
        resize: bool = False,
        crop: str | None = None,
        value_range: list | None = None,
        normalise: str | dict = "none",
        frame_step: int = 1,
        clip_stride: int | None = None,
        eval_clip_stride: int | None = None,
        split_fractions: list = (0.8, 0.1, 0.1),
        seed: int = 0,
        train_files: str | list | None = None,
        val_files: str | list | None = None,
        test_files: str | list | None = None,
        cache_dir: str | None = None,
    ):
        super().__init__(split, in_frames, out_frames)
        layout = Layout.parse(layout)
        self.span, self.frame_step, stride = clip_geometry(split, in_frames, out_frames, frame_step, clip_stride,
                                                           eval_clip_stride)
        self.value_range = self._check_range(value_range)
        pool, own = root_and_split_paths(root, dict(zip(SPLITS, (train_files, val_files, test_files))),
                                         array_files_in, WHAT)
        paths = sorted({*pool, *(p for items in own.values() for p in items)})
        self.files = [ArrayFile(p, key, layout, cache_dir) for p in paths]
        first = self.files[0]
        size = declared_size(image_size, f", e.g. the arrays' own [{first.height}, {first.width}]")
        self.fit = FrameFit(size, bool(resize), crop, offers_crop=True)
        self.channels = channels
        for f in self.files:
            self._check_file(f)
        offsets = np.cumsum([0] + [f.num_sequences for f in self.files])
        ids = {p: np.arange(offsets[i], offsets[i + 1]) for i, p in enumerate(paths)}
        gather = lambda files: np.concatenate([ids[p] for p in files]) if files else np.zeros(0, np.int64)
        splits = assign_splits(gather(pool), {s: gather(files) for s, files in own.items()}, split_fractions, seed,
                               "sequence", f"data.root {root}")
        self._offsets, self.sequences = offsets, splits[split].astype(np.int64)
        self.clips = self._cut(self.sequences, stride)
        train = splits["train"].astype(np.int64)
        key_of_train = (type(self).__name__, tuple((str(f.path.resolve()), f.path.stat().st_size,
                                                    f.path.stat().st_mtime_ns) for f in self.files),
                        hashlib.sha1(train.tobytes()).hexdigest(), layout.axes, key, self.value_range, self.fit)
        self.set_normalisation(normalise, channels, lambda: standard_statistics(
            (self._frames(g, slice(None)) for g in train), channels, len(train), "sequences"), key_of_train)
        self._note_range()

    @classmethod
    def frame_shape(cls, image_size=None, channels: int = 1, **_) -> tuple[int, int, int]:
        return (channels, *declared_size(image_size))

    @staticmethod
    def _check_range(value_range) -> tuple[float, float] | None:
        if value_range is None:
            return None
        if (not isinstance(value_range, (list, tuple)) or len(value_range) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value_range)
                or not value_range[1] > value_range[0]):
            raise DataError(f"data.value_range: expected [low, high] with high > low (the stored values that become "
                            f"0 and 1), got {value_range!r}")
        return float(value_range[0]), float(value_range[1])

    def _check_file(self, f: ArrayFile) -> None:
        if f.channels != self.channels:
            raise DataError(f"{f.describe()}: {f.channels} channel{'s' if f.channels != 1 else ''} per frame, but "
                            f"data.channels is {self.channels}; set data.channels, or check data.layout")
        self.fit.check(f.height, f.width, f.describe())
        if f.num_sequences == 0:
            raise DataError(f"{f.describe()}: holds no sequence (its N axis is empty)")
        if f.num_frames < self.span:
            raise DataError(f"{f.describe()}: sequences have {f.num_frames} frames, fewer than the {self.span} that "
                            f"data.in_frames + data.out_frames = {self.in_frames} + {self.out_frames} frames "
                            f"{self.frame_step} apart need")

    def _cut(self, sequences: np.ndarray, stride: int) -> np.ndarray:
        """(sequence id, first frame) of every clip of ``sequences``, (K, 2)."""
        files = np.searchsorted(self._offsets, sequences, side="right") - 1
        starts_per_file = [np.arange(0, f.num_frames - self.span + 1, stride) for f in self.files]
        counts = np.array([len(starts_per_file[i]) for i in files], dtype=np.int64)
        ids = np.repeat(sequences, counts)
        starts = np.concatenate([starts_per_file[i] for i in files]) if len(files) else np.zeros(0, np.int64)
        return np.stack([ids, starts], axis=1)

    def _locate(self, sequence: int) -> tuple[ArrayFile, int]:
        i = int(np.searchsorted(self._offsets, sequence, side="right")) - 1
        return self.files[i], int(sequence - self._offsets[i])

    def _frames(self, sequence: int, frames: slice) -> np.ndarray:
        """Frames of a sequence as float32 (T, C, H, W) in the data's [0, 1] scale, at ``image_size``."""
        f, index = self._locate(sequence)
        raw = f.read(index, frames)
        if raw.dtype.kind == "f" and not np.isfinite(raw).all():
            bad = np.flatnonzero(~np.isfinite(raw).reshape(len(raw), -1).all(axis=1))
            raise DataError(f"{f.path}: sequence {index} holds NaN or infinite values (in {len(bad)} of the "
                            f"{len(raw)} frames read, first at frame {bad[0]} of them); the data must be finite: "
                            "fix or drop that sequence")
        frames = self.fit(scale_values(raw, self.value_range), f.path)
        return np.ascontiguousarray(frames.transpose(0, 3, 1, 2))

    def _note_range(self) -> None:
        """A warning when the split's first clip lies outside [0, 1], the range PSNR, SSIM and LPIPS assume."""
        if not len(self.clips):
            return
        clip = self.clip(0)
        low, high = float(clip.min()), float(clip.max())
        if low < -0.01 or high > 1.01:
            log.warning("data: values of %s span [%.4g, %.4g] after scaling, but PSNR, SSIM and LPIPS compare frames "
                        "on [0, 1]; set data.value_range to the stored values' [low, high]",
                        self._locate(int(self.clips[0, 0]))[0].path, low, high)

    def __len__(self) -> int:
        return len(self.clips)

    def clip(self, index: int) -> np.ndarray:
        """Clip ``index`` as float32 (in_frames + out_frames, C, H, W) in the data's [0, 1] scale."""
        sequence, start = (int(v) for v in self.clips[index])
        return self._frames(sequence, slice(start, start + self.span, self.frame_step))

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} {self.split} clips")
        return self.pair(self.clip(index))
