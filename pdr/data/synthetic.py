"""Embedded datasets, generated deterministically from (seed, split, index): nothing to download.

* ``bouncing_sprites``: RGB 64x64, textured shapes that move, bounce off the walls and occlude
  each other (the later sprite is in front).
* ``advected_fields``: 2 channels, 32x32, smooth fields carried by a divergence-free flow on
  a periodic domain (TaxiBJ-like inflow/outflow maps).

Each split draws from its own random stream, so train, val and test never share a sequence.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import map_coordinates

from ..errors import DataError
from ..registry import DATASETS
from .base import SPLITS, VideoDataset

_SPLIT_STREAM = {name: i for i, name in enumerate(SPLITS)}
SHAPES = ("circle", "square", "diamond", "triangle")
TEXTURES = ("stripes", "checker", "rings", "plain")


def _rng(seed: int, split: str, index: int, salt: int) -> np.random.Generator:
    return np.random.default_rng([salt, seed, _SPLIT_STREAM[split], index])


def _split_size(split: str, num_train: int, num_val: int, num_test: int) -> int:
    return {"train": num_train, "val": num_val, "test": num_test}[split]


def _check_ints(low: int, **values) -> None:
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise DataError(f"data.{key}: must be an int >= {low}, got {value!r}")


class GeneratedVideos(VideoDataset):
    """A split of generated sequences, each made by ``sequence(index)`` from (seed, split, index): the split sizes,
    ``seq_len`` and ``image_size`` (>= 1) checked with their keys, the length, indexing and the (inputs, targets)
    pairs.

    ``counts``: further integer settings (>= 0) to check with their keys, e.g. ``blobs``."""

    def __init__(self, split: str, in_frames: int, out_frames: int, name: str, num_train: int, num_val: int,
                 num_test: int, seq_len: int, image_size: int, **counts):
        super().__init__(split, in_frames, out_frames)
        _check_ints(0, num_train=num_train, num_val=num_val, num_test=num_test, seq_len=seq_len, **counts)
        _check_ints(1, image_size=image_size)
        self.check_frame_count(seq_len, name, "data.seq_len")
        self.length = _split_size(split, num_train, num_val, num_test)
        self.seq_len = seq_len

    @staticmethod
    def check_objects_fit(image_size: int, diameters, key: str, what: str) -> None:
        """Objects of up to ``max(diameters)`` pixels (the range ``data.<key>``) move inside the frame, their centres
        at least a radius from every edge: a frame smaller than the largest diameter + 1 cannot hold one."""
        if len(diameters) != 2 or not 0 < float(diameters[0]) <= float(diameters[1]):
            raise DataError(f"data.{key}: must be [min, max] diameters in pixels with 0 < min <= max, got "
                            f"{list(diameters)!r}")
        largest = float(diameters[1])
        smallest = math.ceil(largest + 1)
        if image_size < smallest:
            raise DataError(f"data.image_size: {image_size} is too small for {what} of up to {largest:g} pixels "
                            f"(data.{key}: {list(diameters)}): the smallest frame that holds them is "
                            f"{smallest}; raise data.image_size to at least {smallest} or lower data.{key}")

    def __len__(self) -> int:
        return self.length

    def check_index(self, index: int) -> None:
        """An IndexError for an index outside the split."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} {self.split} sequences")

    def sequence(self, index: int) -> np.ndarray:  # pragma: no cover - abstract
        """The whole generated sequence (seq_len, C, H, W), float32."""
        raise NotImplementedError

    def __getitem__(self, index: int):
        return self.split_pair(self.sequence(index), self.in_frames, self.out_frames)


def _bounce(start: np.ndarray, velocity: np.ndarray, low: float, high: np.ndarray, steps: int) -> np.ndarray:
    """Positions (steps, 2) of a point moving in a box [low, high] and reflecting off its walls."""
    pos = np.empty((steps, 2))
    p, v = start.astype(float).copy(), velocity.astype(float).copy()
    for t in range(steps):
        pos[t] = p
        p = p + v
        for axis in range(2):
            if p[axis] < low:
                p[axis], v[axis] = 2 * low - p[axis], -v[axis]
            elif p[axis] > high[axis]:
                p[axis], v[axis] = 2 * high[axis] - p[axis], -v[axis]
    return pos


def _signed_distance(shape: str, dx: np.ndarray, dy: np.ndarray, half: float) -> np.ndarray:
    """Distance inside the shape's edge (positive inside), in pixels."""
    if shape == "circle":
        return half - np.hypot(dx, dy)
    if shape == "square":
        return half - np.maximum(np.abs(dx), np.abs(dy))
    if shape == "diamond":
        return (half - (np.abs(dx) + np.abs(dy))) / np.sqrt(2)
    # upward triangle: three half-planes
    edges = [(0.0, 1.0, half * 0.5), (-0.866, -0.5, half * 0.5), (0.866, -0.5, half * 0.5)]
    return np.min([c - (nx * dx + ny * dy) for nx, ny, c in edges], axis=0)


def _texture_params(rng: np.random.Generator) -> dict:
    return {"kind": TEXTURES[rng.integers(len(TEXTURES))], "period": rng.uniform(3.0, 6.0), "angle": rng.uniform(0, np.pi)}


def _texture(params: dict, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Brightness factor in [0.45, 1] in the sprite's own coordinates."""
    kind, period, angle = params["kind"], params["period"], params["angle"]
    if kind == "stripes":
        wave = np.cos(2 * np.pi * (np.cos(angle) * dx + np.sin(angle) * dy) / period)
    elif kind == "checker":
        wave = np.sign(np.sin(2 * np.pi * dx / period) * np.sin(2 * np.pi * dy / period))
    elif kind == "rings":
        wave = np.cos(2 * np.pi * np.hypot(dx, dy) / period)
    else:
        wave = np.zeros_like(dx)
    return 0.725 + 0.275 * wave


@DATASETS.register("bouncing_sprites")
class BouncingSprites(GeneratedVideos):
    """Textured sprites bouncing in a 64x64 RGB frame; values in [0, 1].

    Args:
        split: "train", "val" or "test".
        in_frames, out_frames: frames observed and predicted.
        num_train, num_val, num_test: sequences per split.
        seq_len: frames per generated sequence (in_frames + out_frames must fit).
        image_size: frame height and width (formerly ``size``); at least the largest sprite diameter + 1
            (23 with the default sprite_size): a smaller frame is refused, sprites are not shrunk to fit it.
        num_sprites: sprites per sequence, as [min, max].
        sprite_size: sprite diameter range in pixels, [min, max].
        speed: speed range in pixels per frame, [min, max].
        seed: dataset seed.
    """

    uint8_scale = 1 / 255  # RGB frames in [0, 1], as an 8-bit image / 255

    def __init__(
        self,
        split: str,
        in_frames: int,
        out_frames: int,
        num_train: int = 2000,
        num_val: int = 200,
        num_test: int = 200,
        seq_len: int = 20,
        image_size: int = 64,
        num_sprites: list = (2, 4),
        sprite_size: list = (12.0, 22.0),
        speed: list = (1.0, 3.0),
        seed: int = 0,
    ):
        super().__init__(split, in_frames, out_frames, "bouncing_sprites", num_train, num_val, num_test, seq_len,
                         image_size)
        self.check_objects_fit(image_size, sprite_size, "sprite_size", "sprites")
        self.size, self.seed = image_size, seed
        self.num_sprites = tuple(int(v) for v in num_sprites)
        self.sprite_size = tuple(float(v) for v in sprite_size)
        self.speed = tuple(float(v) for v in speed)
        ys, xs = np.mgrid[0:image_size, 0:image_size].astype(np.float64)
        self._grid = (xs, ys)

    @classmethod
    def frame_shape(cls, image_size: int = 64, **_) -> tuple[int, int, int]:
        return (3, image_size, image_size)

    def sequence(self, index: int) -> np.ndarray:
        """The whole generated sequence (seq_len, 3, size, size), float32 in [0, 1]."""
        self.check_index(index)
        rng = _rng(self.seed, self.split, index, salt=17)
        xs, ys = self._grid
        background = rng.uniform(0.02, 0.15, size=3)
        tilt = rng.uniform(-0.04, 0.04, size=2)
        frames = np.empty((self.seq_len, self.size, self.size, 3))
        frames[:] = background + (tilt[0] * xs / self.size + tilt[1] * ys / self.size)[..., None]
        for _ in range(rng.integers(self.num_sprites[0], self.num_sprites[1] + 1)):
            diameter = rng.uniform(*self.sprite_size)
            half = diameter / 2
            shape = SHAPES[rng.integers(len(SHAPES))]
            colour = rng.uniform(0.35, 1.0, size=3)
            colour[rng.integers(3)] = rng.uniform(0.8, 1.0)  # keep every sprite bright in some channel
            texture = _texture_params(rng)
            angle = rng.uniform(0, 2 * np.pi)
            velocity = rng.uniform(*self.speed) * np.array([np.cos(angle), np.sin(angle)])
            limit = np.array([self.size - 1 - half, self.size - 1 - half])
            start = rng.uniform(half, limit)
            path = _bounce(start, velocity, half, limit, self.seq_len)
            for t, (cx, cy) in enumerate(path):
                dx, dy = xs - cx, ys - cy
                cover = np.clip(_signed_distance(shape, dx, dy, half) + 0.5, 0.0, 1.0)
                shade = _texture(texture, dx, dy)
                frames[t] = frames[t] * (1 - cover[..., None]) + (shade[..., None] * colour) * cover[..., None]
        return np.clip(frames, 0.0, 1.0).transpose(0, 3, 1, 2).astype(np.float32)



def _smooth_field(rng: np.random.Generator, size: int, blobs: int) -> np.ndarray:
    """Sum of periodic Gaussian blobs on a size x size torus, values about in [0, 1]."""
    coords = np.arange(size)
    field = np.zeros((size, size))
    for _ in range(blobs):
        cx, cy = rng.uniform(0, size, size=2)
        sigma = rng.uniform(1.5, 4.5)
        ddx = np.minimum(np.abs(coords - cx), size - np.abs(coords - cx))
        ddy = np.minimum(np.abs(coords - cy), size - np.abs(coords - cy))
        field += rng.uniform(0.3, 1.0) * np.exp(-0.5 * (ddy[:, None] ** 2 + ddx[None, :] ** 2) / sigma**2)
    return field


@DATASETS.register("advected_fields")
class AdvectedFields(GeneratedVideos):
    """Two smooth, correlated fields (inflow/outflow-like) carried by a divergence-free flow on a torus.

    Args:
        split, in_frames, out_frames, num_train, num_val, num_test, seq_len, seed: as for bouncing_sprites.
        image_size: frame height and width (formerly ``size``), >= 1.
        blobs: blobs per channel in the initial field.
        max_speed: peak flow speed in pixels per frame.
    """

    def __init__(
        self,
        split: str,
        in_frames: int,
        out_frames: int,
        num_train: int = 4000,
        num_val: int = 400,
        num_test: int = 400,
        seq_len: int = 8,
        image_size: int = 32,
        blobs: int = 12,
        max_speed: float = 1.5,
        seed: int = 0,
    ):
        super().__init__(split, in_frames, out_frames, "advected_fields", num_train, num_val, num_test, seq_len,
                         image_size, blobs=blobs)
        self.size, self.blobs, self.max_speed, self.seed = image_size, blobs, float(max_speed), seed

    @classmethod
    def frame_shape(cls, image_size: int = 32, **_) -> tuple[int, int, int]:
        return (2, image_size, image_size)

    def _velocity(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """u, v (size, size) from a random periodic stream function: u = dpsi/dy, v = -dpsi/dx."""
        n = self.size
        y, x = np.mgrid[0:n, 0:n] * (2 * np.pi / n)
        u = np.zeros((n, n))
        v = np.zeros((n, n))
        for _ in range(3):
            kx, ky = rng.integers(0, 3, size=2)
            if kx == ky == 0:
                kx = 1
            phase, amp = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.0)
            arg = kx * x + ky * y + phase
            u += amp * ky * np.cos(arg)
            v -= amp * kx * np.cos(arg)
        u += rng.uniform(-0.5, 0.5)  # a mean drift
        v += rng.uniform(-0.5, 0.5)
        peak = max(np.abs(u).max(), np.abs(v).max(), 1e-6)
        return u * self.max_speed / peak, v * self.max_speed / peak

    def sequence(self, index: int) -> np.ndarray:
        """The whole generated sequence (seq_len, 2, size, size), float32 in [0, 1]."""
        self.check_index(index)
        rng = _rng(self.seed, self.split, index, salt=29)
        inflow = _smooth_field(rng, self.size, self.blobs)
        outflow = 0.6 * inflow + _smooth_field(rng, self.size, self.blobs // 2)
        fields = np.stack([inflow, outflow])
        fields /= max(fields.max(), 1e-6)
        u, v = self._velocity(rng)
        rows, cols = np.mgrid[0 : self.size, 0 : self.size].astype(np.float64)
        back = np.stack([rows - v, cols - u])  # semi-Lagrangian: sample where the flow came from
        out = np.empty((self.seq_len, 2, self.size, self.size))
        for t in range(self.seq_len):
            out[t] = fields
            fields = np.stack([map_coordinates(f, back, order=1, mode="grid-wrap") for f in fields])
        return np.clip(out, 0.0, 1.0).astype(np.float32)

