"""Arrays of sequences in files, read a sequence at a time and never whole.

* ``.npy``: memory-mapped.
* ``.npz``: an array stored uncompressed (``np.savez``) is memory-mapped where it lies in the archive; a
  compressed one (``np.savez_compressed``) cannot be read in parts, so it is decompressed once, streamed,
  into a ``.npy`` in a cache folder and memory-mapped there.
* HDF5 (``.h5``, ``.hdf5``, with h5py: the ``hdf5`` extra): read by slices, opened once per process (so
  DataLoader workers are safe).

A ``Layout`` says how an array's axes are ordered, with the letters N (sequences), T (frames), C
(channels), H and W: ``NTCHW``, ``NTHWC``, ``NTHW``, ``TNHW`` (Moving MNIST's ``mnist_test_seq.npy``),
``THW`` (one sequence per file), ...; T, H and W are required, N and C optional (one sequence, one channel).
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..optional import require

log = logging.getLogger("pdr")
ARRAY_SUFFIXES = (".npy", ".npz", ".h5", ".hdf5")
LAYOUT_EXAMPLES = ("NTHW for (sequences, frames, height, width), NTCHW, NTHWC, TNHW as in Moving MNIST's "
                   "mnist_test_seq.npy, or THW for one sequence per file")


@dataclass(frozen=True)
class Layout:
    """The order of an array's axes, e.g. ``NTHWC``."""

    axes: str

    @classmethod
    def parse(cls, value) -> Layout:
        if value is None:
            raise DataError(f"data.layout: not set; say how the arrays' axes are ordered: {LAYOUT_EXAMPLES}")
        text = str(value).upper()
        if (not isinstance(value, str) or not set(text) <= set("NTCHW") or len(set(text)) != len(text)
                or not set("THW") <= set(text)):
            raise DataError(f"data.layout: {value!r} is not a layout: letters N, T, C, H, W, each at most once, with "
                            f"T, H and W required: {LAYOUT_EXAMPLES}")
        return cls(text)

    def read(self, array, sequence: int, frames: slice) -> np.ndarray:
        """Frames ``frames`` of sequence ``sequence`` of ``array`` (this layout), as (T, H, W, C)."""
        index = tuple(sequence if a == "N" else frames if a == "T" else slice(None) for a in self.axes)
        out = np.asarray(array[index])
        kept = [a for a in self.axes if a != "N"]
        if "C" not in kept:
            out, kept = out[..., None], kept + ["C"]
        return np.transpose(out, [kept.index(a) for a in "THWC"])


def _stored_npz_member(path: Path, info: zipfile.ZipInfo) -> tuple[int, tuple, bool, np.dtype]:
    """(offset of the array's data in the file, shape, Fortran order, dtype) of an uncompressed ``.npy`` member."""
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
        if local[:4] != b"PK\x03\x04":
            raise DataError(f"{path}: the zip entry {info.filename} has no local header; the file is corrupt")
        name_length, extra_length = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
        start = info.header_offset + 30 + name_length + extra_length
        fh.seek(start)
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(fh)
        return fh.tell(), shape, fortran, dtype


class ArrayFile:
    """One array of sequences in a file, laid out as ``layout``: its sizes from the file's header, its frames read
    on demand (``read``).

    Args:
        path: a ``.npy``, ``.npz``, ``.h5`` or ``.hdf5`` file.
        key: the array's name in a ``.npz`` or HDF5 file (null: the file's only array); ignored for ``.npy``.
        layout: the order of the array's axes.
        cache_dir: where compressed ``.npz`` arrays are decompressed (default ``~/.cache/pdr/arrays``).
    """

    def __init__(self, path: Path, key: str | None, layout: Layout, cache_dir: str | None = None):
        self.path, self.key, self.layout = Path(path), key, layout
        self.cache_dir = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "pdr" / "arrays"
        self.suffix = self.path.suffix.lower()
        if self.suffix not in ARRAY_SUFFIXES:
            raise DataError(f"{self.path}: not an array file ({', '.join(ARRAY_SUFFIXES)})")
        self._array, self._pid = None, None
        array = self.array()
        self.shape, self.dtype = tuple(int(s) for s in array.shape), np.dtype(array.dtype)
        if self.dtype.kind not in "biuf":
            raise DataError(f"{self.path}: the array holds {self.dtype} values; expected numbers (int, uint, float "
                            "or bool)")
        if len(self.shape) != len(layout.axes):
            raise DataError(f"{self.path}: data.layout {layout.axes} names {len(layout.axes)} axes, but the array has "
                            f"shape {self.shape} ({len(self.shape)} axes); give one letter per axis: {LAYOUT_EXAMPLES}")
        sizes = dict(zip(layout.axes, self.shape))
        self.num_sequences, self.num_frames = sizes.get("N", 1), sizes["T"]
        self.channels, self.height, self.width = sizes.get("C", 1), sizes["H"], sizes["W"]

    def __getstate__(self) -> dict:  # workers that are not forked open the file themselves (never a copy of it)
        return {**self.__dict__, "_array": None, "_pid": None}

    def describe(self) -> str:
        """'path (shape (...), layout ...)' for messages."""
        return f"{self.path} (shape {self.shape}, layout {self.layout.axes})"

    def array(self):
        """The array, opened lazily once per process (a memmap or an h5py dataset)."""
        if self._array is None or self._pid != os.getpid():
            self._array, self._pid = self._open(), os.getpid()
        return self._array

    def read(self, sequence: int, frames: slice) -> np.ndarray:
        """Frames ``frames`` of sequence ``sequence``, (T, H, W, C) in the file's dtype."""
        try:
            return self.layout.read(self.array(), sequence, frames)
        except (OSError, ValueError) as exc:
            raise DataError(f"{self.path}: reading sequence {sequence} failed ({type(exc).__name__}: {exc}); the file "
                            "is corrupt or truncated") from exc

    def _open(self):
        try:
            if self.suffix == ".npy":
                return np.load(self.path, mmap_mode="r")
            if self.suffix == ".npz":
                return self._open_npz()
            return self._open_h5()
        except DataError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"{self.path}: cannot read this {self.suffix} file ({type(exc).__name__}: {exc}); it is "
                            "corrupt or truncated") from exc

    def _pick(self, names: list[str]) -> str:
        if self.key is not None:
            if self.key not in names:
                raise DataError(f"data.key: {self.path} has no array {self.key!r}; it holds {names}")
            return self.key
        if len(names) != 1:
            raise DataError(f"data.key: {self.path} holds {len(names)} arrays {names}; name the one to read")
        return names[0]

    def _open_npz(self):
        with zipfile.ZipFile(self.path) as archive:
            members = {info.filename[:-4]: info for info in archive.infolist() if info.filename.endswith(".npy")}
        info = members[self._pick(sorted(members))]
        if info.compress_type == zipfile.ZIP_STORED:
            offset, shape, fortran, dtype = _stored_npz_member(self.path, info)
            return np.memmap(self.path, dtype=dtype, mode="r", offset=offset, shape=shape,
                             order="F" if fortran else "C")
        return np.load(self._decompressed(info), mmap_mode="r")

    def _decompressed(self, info: zipfile.ZipInfo) -> Path:
        """A ``.npy`` copy of a compressed member in the cache folder, written once (atomically)."""
        stat = self.path.stat()
        tag = hashlib.sha1(f"{self.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{info.filename}".encode())
        target = self.cache_dir / f"{self.path.stem}-{info.filename[:-4]}-{tag.hexdigest()[:12]}.npy"
        if target.is_file():
            return target
        log.info("%s: %s is compressed, so it is decompressed once into %s to be read a sequence at a time",
                 self.path, info.filename, target)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=self.cache_dir)
        try:
            with zipfile.ZipFile(self.path) as archive, archive.open(info) as src, os.fdopen(fd, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 24)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def _open_h5(self):
        h5py = require("h5py", "hdf5", "reading HDF5 files")
        handle = h5py.File(self.path, "r")
        names: list[str] = []
        handle.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        return handle[self._pick(sorted(names))]
