"""Moving MNIST: digits bouncing in a 64x64 frame (Srivastava et al., 2015; OpenSTL's protocol), and
Stochastic Moving MNIST (``stochastic: true``: a new random direction at each wall hit; SVG's and SRVP's benchmark).

Sequences are generated on the fly from MNIST digits in idx format. Which digits each split uses:

* ``train-images-idx3-ubyte[.gz]`` present: train and val draw from it (val from its last
  ``val_digits`` images), test from ``t10k-images-idx3-ubyte[.gz]`` (held-out digits);
* only one idx file present (for example the 10,000 test digits): its last ``val_digits`` images
  go to val, the ``test_digits`` before them to test, the rest to train, so no digit image is in
  two splits.

The test split reads the standard ``mnist_test_seq.npy`` (20 x 10000 x 64 x 64, uint8) when it
is in ``root`` (memory-mapped); otherwise a fixed test set is generated from the held-out digits
with the dataset seed. Every sequence is a deterministic function of (seed, split, index).
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..registry import DATASETS
from .base import SPLITS, VideoDataset, file_status

MNIST_URL = "http://yann.lecun.com/exdb/mnist/ (or any MNIST mirror, e.g. torchvision.datasets.MNIST(download=True))"
TEST_SEQ_URL = "http://www.cs.toronto.edu/~nitish/unsupervised_video/mnist_test_seq.npy"
IDX_IMAGES_MAGIC = 2051
_SPLIT_STREAM = {name: i for i, name in enumerate(SPLITS)}


def read_idx_images(path: str | Path) -> np.ndarray:
    """Images of an idx3-ubyte file (optionally gzipped) as uint8 (N, rows, cols)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read this idx file ({exc}); it is corrupt or truncated, download it again") from exc
    if len(raw) < 16:
        raise DataError(f"{path}: {len(raw)} bytes is too short for an idx3 header; the file is truncated")
    magic, count, rows, cols = (int.from_bytes(raw[i : i + 4], "big") for i in range(0, 16, 4))
    if magic != IDX_IMAGES_MAGIC:
        raise DataError(f"{path}: not an idx3-ubyte image file (magic number {magic}, expected {IDX_IMAGES_MAGIC})")
    expected = 16 + count * rows * cols
    if len(raw) != expected:
        raise DataError(
            f"{path}: the header announces {count} images of {rows}x{cols} ({expected} bytes) but the file has "
            f"{len(raw)} bytes; it is truncated or corrupt, download it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(count, rows, cols)


def find_idx(root: Path, prefix: str) -> Path | None:
    for name in (f"{prefix}-images-idx3-ubyte", f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-images.idx3-ubyte"):
        if (root / name).is_file():
            return root / name
    return None


def bouncing_trajectory(rng: np.random.Generator, steps: int, canvas: int, step_length: float,
                        stochastic: bool = False) -> np.ndarray:
    """Top-left corners (steps, 2) as (row, col) ints of a digit bouncing in [0, canvas] x [0, canvas].

    Motion is in unit coordinates: a random start, a random direction, ``step_length`` per frame,
    reflection off the walls at 0 and 1; positions are scaled by ``canvas`` (frame size - digit size).
    ``stochastic`` (Stochastic Moving MNIST): at each wall hit the digit leaves in a new random direction,
    uniform over the directions that point away from the wall(s) it hit, at the same speed; the draws come
    from ``rng``, which the deterministic motion uses only for the start.
    """
    pos = rng.uniform(0.0, 1.0, size=2)
    theta = rng.uniform(0.0, 2.0 * np.pi)
    velocity = np.array([np.sin(theta), np.cos(theta)])
    out = np.empty((steps, 2))
    for t in range(steps):
        out[t] = pos
        pos = pos + velocity * step_length
        away = np.zeros(2)  # per axis: +1 after a hit of the wall at 0, -1 after one at 1
        for axis in range(2):
            if pos[axis] < 0.0:
                pos[axis], velocity[axis], away[axis] = -pos[axis], -velocity[axis], 1.0
            elif pos[axis] > 1.0:
                pos[axis], velocity[axis], away[axis] = 2.0 - pos[axis], -velocity[axis], -1.0
        if stochastic and away.any():
            theta = rng.uniform(0.0, 2.0 * np.pi)
            velocity = np.array([np.sin(theta), np.cos(theta)])
            velocity = np.where(away != 0, away * np.abs(velocity), velocity)
    return np.round(out * canvas).astype(np.int64)


@DATASETS.register("moving_mnist")
class MovingMNIST(VideoDataset):
    """Moving MNIST, 1 channel, values in [0, 1] (overlapping digits combine by maximum).

    Args:
        split, in_frames, out_frames: as every dataset.
        root: folder with the MNIST idx files and, optionally, ``mnist_test_seq.npy``.
        num_digits: digits per sequence (2 in the classic protocol).
        image_size: frame height and width (64).
        seq_len: frames per generated sequence (20).
        step_length: displacement per frame in units of the free canvas (0.1).
        num_train, num_val, num_test: sequences per split (with ``mnist_test_seq.npy``, the test split is its
            first ``num_test`` sequences of 10,000).
        val_digits, test_digits: digit images held out for val and (with one idx file) for test.
        test_file: name of the standard test file in ``root``; ``null`` always generates the test set.
        seed: dataset seed.
        stochastic: Stochastic Moving MNIST (the benchmark of SVG and SRVP): a digit takes a new random
            direction at each wall hit (``bouncing_trajectory``). Its test set is always generated (the standard
            file has deterministic bounces), a fixed function of (seed, index) like every split.
    """

    mean = 0.0
    std = 1.0
    uint8_scale = 1 / 255  # 8-bit images scaled to [0, 1]

    def __init__(
        self,
        split: str,
        in_frames: int,
        out_frames: int,
        root: str = "data/moving_mnist",
        num_digits: int = 2,
        image_size: int = 64,
        seq_len: int = 20,
        step_length: float = 0.1,
        num_train: int = 10000,
        num_val: int = 1000,
        num_test: int = 10000,
        val_digits: int = 1000,
        test_digits: int = 2000,
        test_file: str | None = "mnist_test_seq.npy",
        seed: int = 0,
        stochastic: bool = False,
    ):
        super().__init__(split, in_frames, out_frames)
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(
                f"data.root: the Moving MNIST folder {self.root.resolve()} does not exist; put the MNIST idx files "
                f"(train-images-idx3-ubyte.gz and/or t10k-images-idx3-ubyte.gz, from {MNIST_URL}) there, "
                f"optionally with mnist_test_seq.npy ({TEST_SEQ_URL})"
            )
        for key, value in {"num_digits": num_digits, "num_train": num_train, "num_val": num_val, "num_test": num_test}.items():
            if not isinstance(value, int) or value < (1 if key == "num_digits" else 0):
                raise DataError(f"data.{key} must be a positive int, got {value!r}")
        self.num_digits, self.image_size, self.seq_len = int(num_digits), int(image_size), int(seq_len)
        self.step_length, self.seed, self.stochastic = float(step_length), int(seed), bool(stochastic)
        self._test_seq = None
        if split == "test" and test_file and not self.stochastic and (self.root / test_file).is_file():
            self._test_seq = self._open_test_file(self.root / test_file)
            self.check_frame_count(self._test_seq.shape[0], str(self.root / test_file), "the file's first axis")
            self.length = min(self._test_seq.shape[1], num_test)
            return
        self.check_frame_count(self.seq_len, "moving_mnist", "data.seq_len")
        self.digits = self._split_digits(split, int(val_digits), int(test_digits))
        if self.digits.shape[1] > self.image_size or self.digits.shape[2] > self.image_size:
            raise DataError(f"data.image_size = {self.image_size} is smaller than the {self.digits.shape[1:]} digits")
        self.length = {"train": num_train, "val": num_val, "test": num_test}[split]

    @classmethod
    def frame_shape(cls, image_size: int = 64, **_) -> tuple[int, int, int]:
        return (1, image_size, image_size)

    @classmethod
    def describe_files(cls, root: Path, **_) -> list[str]:
        lines = []
        for prefix in ("train", "t10k"):
            found = find_idx(root, prefix)
            lines.append(file_status(found) if found else f"  [missing] {prefix}-images-idx3-ubyte[.gz]")
        test_file = root / "mnist_test_seq.npy"
        lines.append(file_status(test_file) + ("" if test_file.is_file()
                                                else " (optional: the test set is generated instead)"))
        return lines

    def _open_test_file(self, path: Path) -> np.ndarray:
        try:
            seq = np.load(path, mmap_mode="r")
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"{path}: cannot read this .npy file ({exc}); it is corrupt or truncated, download it "
                            f"again from {TEST_SEQ_URL}") from exc
        expected = (self.image_size, self.image_size)
        if seq.ndim != 4 or tuple(seq.shape[2:]) != expected:
            raise DataError(f"{path}: expected an array (frames, sequences, {expected[0]}, {expected[1]}) like "
                            f"mnist_test_seq.npy, got shape {tuple(seq.shape)}")
        return seq

    def _split_digits(self, split: str, val_digits: int, test_digits: int) -> np.ndarray:
        train_file, test_file = find_idx(self.root, "train"), find_idx(self.root, "t10k")
        if train_file is None and test_file is None:
            present = sorted(p.name for p in self.root.iterdir())[:10]
            raise DataError(
                f"data.root: no MNIST idx image file in {self.root.resolve()} (looked for train-images-idx3-ubyte[.gz] "
                f"and t10k-images-idx3-ubyte[.gz]; the folder has {present}); download them from {MNIST_URL}"
            )
        if train_file is not None and test_file is not None:
            if split == "test":
                return read_idx_images(test_file)
            images = read_idx_images(train_file)
            return self._take(images, split, {"val": slice(len(images) - val_digits, None),
                                              "train": slice(0, len(images) - val_digits)}, train_file)
        source = train_file or test_file
        images = read_idx_images(source)
        n = len(images)
        ranges = {"val": slice(n - val_digits, n), "test": slice(n - val_digits - test_digits, n - val_digits),
                  "train": slice(0, n - val_digits - test_digits)}
        return self._take(images, split, ranges, source)

    @staticmethod
    def _take(images: np.ndarray, split: str, ranges: dict, source: Path) -> np.ndarray:
        chosen = images[ranges[split]]
        if len(chosen) == 0:
            raise DataError(f"{source}: {len(images)} digit images leave none for the {split} split; lower "
                            "data.val_digits / data.test_digits")
        return chosen

    def __len__(self) -> int:
        return self.length

    def sequence(self, index: int) -> np.ndarray:
        """One sequence (T, 1, H, W), float32 in [0, 1]."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} {self.split} sequences")
        if self._test_seq is not None:
            frames = np.asarray(self._test_seq[:, index], dtype=np.float32) / 255.0
            return frames[:, None]
        rng = np.random.default_rng([self.seed, _SPLIT_STREAM[self.split], index])
        size = self.image_size
        canvas = np.zeros((self.seq_len, size, size), dtype=np.float32)
        for _ in range(self.num_digits):
            digit = self.digits[rng.integers(len(self.digits))].astype(np.float32) / 255.0
            h, w = digit.shape
            corners = bouncing_trajectory(rng, self.seq_len, size - max(h, w), self.step_length, self.stochastic)
            for t, (top, left) in enumerate(corners):
                np.maximum(canvas[t, top : top + h, left : left + w], digit, out=canvas[t, top : top + h, left : left + w])
        return canvas[:, None]

    def trajectories(self, index: int) -> np.ndarray:
        """Top-left corners (num_digits, seq_len, 2) of the digits of a generated sequence (for checks)."""
        rng = np.random.default_rng([self.seed, _SPLIT_STREAM[self.split], index])
        out = []
        for _ in range(self.num_digits):
            h, w = self.digits[rng.integers(len(self.digits))].shape
            out.append(bouncing_trajectory(rng, self.seq_len, self.image_size - max(h, w), self.step_length,
                                           self.stochastic))
        return np.stack(out)

    def __getitem__(self, index: int):
        return self.split_pair(self.sequence(index), self.in_frames, self.out_frames)
