"""TaxiBJ: crowd inflow/outflow in Beijing on a 32x32 grid, every 30 minutes (Zhang et al., 2017).

Two layouts are read, chosen by what is in ``root``:

* OpenSTL's ``dataset.npz`` (``X_train``, ``Y_train``, ``X_test``, ``Y_test``, each
  (N, 4, 2, 32, 32), min-max scaled to [-1, 1]): mapped to [0, 1] by (x + 1) / 2 as OpenSTL does,
  so metrics match its published ones (MSE about 0.3). OpenSTL validates on its test set; here
  val is the last ``val_fraction`` of the training windows, with the windows that share frames
  with them dropped from train.
* the raw ``BJ13_M32x32_T30_InOut.h5`` .. ``BJ16_M32x32_T30_InOut.h5`` (``data`` (N, 2, 32, 32)
  and ``date`` ``b"YYYYMMDDSS"``, slot SS in 1..48): days with missing slots are dropped (as
  ST-ResNet does); the last ``test_days`` days are test, the ``val_days`` before them val, the
  rest train. Windows of consecutive slots never cross a gap or a split boundary. Values are
  min-max scaled with the training days' minimum and maximum to [-1, 1] (ST-ResNet's scaling, the
  one the npz holds) and then to [0, 1] as above.

Both layouts report ``mean = 0, std = 1``: the published TaxiBJ metrics are computed on the [0, 1]
scale, not on raw flow counts. ``raw_range`` (h5 layout) gives (min, max) to get counts back:
raw = x * (max - min) + min.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..optional import require
from ..registry import DATASETS
from .base import VideoDataset, file_status

NPZ_NAME = "dataset.npz"
H5_NAMES = tuple(f"BJ{year}_M32x32_T30_InOut.h5" for year in (13, 14, 15, 16))
HOW_TO_GET = ("TaxiBJ: OpenSTL's dataset.npz (see OpenSTL's tools/prepare_data/download_taxibj.sh) or the raw "
              "BJ13..BJ16_M32x32_T30_InOut.h5 files of ST-ResNet (https://github.com/lucktroy/DeepST)")
SLOTS_PER_DAY = 48


def _read_npz(path: Path) -> dict:
    try:
        with np.load(path) as npz:
            missing = [k for k in ("X_train", "Y_train", "X_test", "Y_test") if k not in npz.files]
            if missing:
                raise DataError(f"{path}: missing arrays {missing}; expected OpenSTL's X_train, Y_train, X_test, Y_test")
            return {k: npz[k] for k in ("X_train", "Y_train", "X_test", "Y_test")}
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot read this npz file ({type(exc).__name__}: {exc}); it is corrupt or truncated, "
                        f"download it again. {HOW_TO_GET}") from exc


def _slot_time(code: bytes | str) -> dt.datetime:
    text = code.decode() if isinstance(code, bytes) else str(code)
    day = dt.datetime.strptime(text[:8], "%Y%m%d")
    return day + dt.timedelta(minutes=30 * (int(text[8:]) - 1))


def read_bj_h5(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(data float32 (N, 2, 32, 32), slot index (N,) int64 in half hours since 2000-01-01) of one BJ file."""
    h5py = require("h5py", "taxibj", "reading TaxiBJ's h5 files")
    try:
        with h5py.File(path, "r") as f:
            if "data" not in f or "date" not in f:
                raise DataError(f"{path}: expected datasets 'data' and 'date', found {sorted(f.keys())}")
            data, dates = f["data"][()], f["date"][()]
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot read this HDF5 file ({type(exc).__name__}: {exc}); it is corrupt or "
                        f"truncated, download it again") from exc
    if data.ndim != 4 or data.shape[1:] != (2, 32, 32) or len(dates) != len(data):
        raise DataError(f"{path}: expected data (N, 2, 32, 32) and N dates, got {data.shape} and {len(dates)} dates")
    origin = dt.datetime(2000, 1, 1)
    slots = np.array([(_slot_time(d) - origin) // dt.timedelta(minutes=30) for d in dates], dtype=np.int64)
    return data.astype(np.float32), slots


def complete_days(slots: np.ndarray) -> np.ndarray:
    """Boolean mask (N,) of the samples whose day has all 48 slots."""
    days = slots // SLOTS_PER_DAY
    unique, counts = np.unique(days, return_counts=True)
    full = set(unique[counts == SLOTS_PER_DAY].tolist())
    return np.array([d in full for d in days])


def window_starts(slots: np.ndarray, length: int) -> np.ndarray:
    """Start indices of windows of ``length`` consecutive slots (no gap) in sorted ``slots``."""
    if len(slots) < length:
        return np.zeros(0, dtype=np.int64)
    gaps = np.diff(slots) != 1
    bad = np.concatenate([[0], np.cumsum(gaps)])
    starts = np.arange(len(slots) - length + 1)
    return starts[bad[starts] == bad[starts + length - 1]]


@DATASETS.register("taxibj")
class TaxiBJ(VideoDataset):
    """TaxiBJ, 2 channels (inflow, outflow), 32x32, values in [0, 1].

    Args:
        split, in_frames, out_frames: as every dataset (4 -> 4 in the standard protocol).
        root: folder with ``dataset.npz`` or the BJ13..BJ16 h5 files.
        layout: "auto" (npz when present, else h5), "npz" or "h5".
        val_fraction: npz layout: share of the training windows used for val.
        test_days, val_days: h5 layout: days at the end used for test, and before them for val.
    """

    mean = 0.0
    std = 1.0

    def __init__(
        self,
        split: str,
        in_frames: int,
        out_frames: int,
        root: str = "data/taxibj",
        layout: str = "auto",
        val_fraction: float = 0.1,
        test_days: int = 28,
        val_days: int = 28,
    ):
        super().__init__(split, in_frames, out_frames)
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"data.root: the TaxiBJ folder {self.root.resolve()} does not exist. {HOW_TO_GET}")
        if layout not in ("auto", "npz", "h5"):
            raise DataError(f"data.layout must be 'auto', 'npz' or 'h5', got {layout!r}")
        has_npz = (self.root / NPZ_NAME).is_file()
        h5_files = [self.root / n for n in H5_NAMES if (self.root / n).is_file()]
        if layout == "auto":
            layout = "npz" if has_npz else "h5" if h5_files else None
        if layout is None or (layout == "npz" and not has_npz) or (layout == "h5" and not h5_files):
            raise DataError(f"data.root: {self.root.resolve()} has neither {NPZ_NAME} nor any of {', '.join(H5_NAMES)}. "
                            f"{HOW_TO_GET}")
        self.layout = layout
        if layout == "npz":
            self._init_npz(float(val_fraction))
        else:
            self._init_h5(h5_files, int(test_days), int(val_days))

    @classmethod
    def frame_shape(cls, **_) -> tuple[int, int, int]:
        return (2, 32, 32)

    @classmethod
    def describe_files(cls, root: Path, **_) -> list[str]:
        lines = [file_status(root / NPZ_NAME)] + [file_status(root / name) for name in H5_NAMES]
        lines.append("  (either dataset.npz or the h5 files are enough)")
        return lines

    def _init_npz(self, val_fraction: float) -> None:
        path = self.root / NPZ_NAME
        arrays = _read_npz(path)
        x_key, y_key = ("X_test", "Y_test") if self.split == "test" else ("X_train", "Y_train")
        x, y = arrays[x_key], arrays[y_key]
        for key, arr in ((x_key, x), (y_key, y)):
            if arr.ndim != 5 or arr.shape[2:] != (2, 32, 32):
                raise DataError(f"{path}: {key} has shape {arr.shape}, expected (N, frames, 2, 32, 32)")
        if len(x) != len(y):
            raise DataError(f"{path}: {x_key} has {len(x)} samples but {y_key} has {len(y)}")
        if self.in_frames > x.shape[1] or self.out_frames > y.shape[1]:
            raise DataError(f"{path}: the file has {x.shape[1]} -> {y.shape[1]} frames per sample but the config asks "
                            f"data.in_frames = {self.in_frames}, data.out_frames = {self.out_frames}")
        # the last in_frames of X and the first out_frames of Y keep the input/target boundary
        self._x, self._y = x[:, x.shape[1] - self.in_frames :], y[:, : self.out_frames]
        self.raw_range = (-1.0, 1.0)
        if self.split == "test":
            self._index = np.arange(len(x))
            return
        num_val = round(len(x) * val_fraction)
        if not 0 < num_val < len(x):
            raise DataError(f"data.val_fraction = {val_fraction} leaves no train or no val samples of {len(x)}")
        overlap = x.shape[1] + y.shape[1] - 1  # consecutive sliding windows share frames
        first_val = len(x) - num_val
        self._index = np.arange(first_val, len(x)) if self.split == "val" else np.arange(max(first_val - overlap, 0))

    def _init_h5(self, files: list[Path], test_days: int, val_days: int) -> None:
        parts = [read_bj_h5(p) for p in files]
        data = np.concatenate([d for d, _ in parts])
        slots = np.concatenate([s for _, s in parts])
        order = np.argsort(slots, kind="stable")
        data, slots = data[order], slots[order]
        keep = complete_days(slots)
        data, slots = data[keep], slots[keep]
        days = np.unique(slots // SLOTS_PER_DAY)
        if len(days) <= test_days + val_days:
            raise DataError(f"{self.root}: {len(days)} complete days, not enough for data.test_days = {test_days} "
                            f"and data.val_days = {val_days} plus training days")
        test_first, val_first = days[-test_days], days[-test_days - val_days]
        day_of = slots // SLOTS_PER_DAY
        in_split = {"train": day_of < val_first, "val": (day_of >= val_first) & (day_of < test_first),
                    "test": day_of >= test_first}
        train = data[in_split["train"]]
        low, high = float(train.min()), float(train.max())
        self.raw_range = (low, high)
        mask = in_split[self.split]
        scaled = 2.0 * (data[mask] - low) / max(high - low, 1e-6) - 1.0  # ST-ResNet's [-1, 1]
        self._frames = (scaled + 1.0) / 2.0
        self._starts = window_starts(slots[mask], self.in_frames + self.out_frames)
        if len(self._starts) == 0:
            raise DataError(f"{self.root}: the {self.split} days have no run of {self.in_frames + self.out_frames} "
                            "consecutive half-hour slots; lower data.in_frames/out_frames or change the split days")

    def __len__(self) -> int:
        return len(self._index) if self.layout == "npz" else len(self._starts)

    def __getitem__(self, index: int):
        import torch

        if self.layout == "npz":
            i = self._index[index]
            return (torch.from_numpy((np.asarray(self._x[i], dtype=np.float32) + 1.0) / 2.0),
                    torch.from_numpy((np.asarray(self._y[i], dtype=np.float32) + 1.0) / 2.0))
        start = self._starts[index]
        return self.split_pair(self._frames[start : start + self.in_frames + self.out_frames],
                               self.in_frames, self.out_frames)
