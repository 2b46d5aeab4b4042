"""``photo_scenes``: an embedded dense dataset with the statistics of real photographs, nothing to download.

Every frame is filled: a textured background cut from one of the photographs that scikit-image ships in its
wheel (``skimage.data``: brick, grass, gravel, the immunohistochemistry slide, the Hubble deep field) pans
slowly under a moving camera, and two or three objects cut from other photographs (astronaut, coffee,
rocket, chelsea the cat, coins, camera man, and patches of the textures) move over it with constant velocity,
bouncing off the frame's walls and occluding each other (the later object in front). RGB 64x64, values in
[0, 1]; a grey photograph takes a random tint. Each sequence is a function of (seed, split, index), so runs
are reproducible and workers agree; each split draws from its own random stream, so train, val and test
never share a sequence (they do share the source photographs, as bouncing_sprites shares its shapes).

Where flat sprites and sparse digits leave most pixels empty, here every pixel has texture that moves: a
prediction that blurs loses detail everywhere, which is what a sharpening adapter should win back.
"""
from __future__ import annotations

import functools

import numpy as np

from ..errors import DataError
from ..registry import DATASETS
from .synthetic import GeneratedVideos, _bounce, _rng

# skimage.data loaders (no download: these files are inside scikit-image's wheel)
BACKGROUNDS = ("brick", "grass", "gravel", "immunohistochemistry", "hubble_deep_field")
OBJECTS = ("astronaut", "coffee", "rocket", "chelsea", "coins", "camera", "brick", "gravel")
OBJECT_SHAPES = ("ellipse", "rounded_square")
# every photograph is rescaled once so that its shorter side has this many pixels: a background shows a
# detailed part of its photograph, an object (16 to 28 pixels wide) about a third of it
_SOURCE_SIDE = 160
_OBJECT_SIDE = 72
_MEAN_SEQUENCES = 16  # ``background``: the mean colour of this many training sequences


@functools.lru_cache(maxsize=None)
def source_image(name: str, side: int = _SOURCE_SIDE) -> np.ndarray:
    """``skimage.data.<name>()`` as float RGB in [0, 1], rescaled (anti-aliased) to a shorter side of ``side``
    pixels: (H, W, 3); a grey photograph has three equal channels. Loaded once per process and size."""
    import skimage.data
    from skimage.transform import rescale

    image = np.asarray(getattr(skimage.data, name)(), dtype=np.float64)
    if image.max() > 1.0:
        image = image / 255.0
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    image = image[..., :3]
    factor = side / min(image.shape[:2])
    return np.clip(rescale(image, factor, anti_aliasing=True, channel_axis=-1), 0.0, 1.0)


def _is_grey(image: np.ndarray) -> bool:
    return bool(np.allclose(image[..., 0], image[..., 1]) and np.allclose(image[..., 0], image[..., 2]))


def _tint(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A grey photograph in a random colour (brightest channel 1); a colour one unchanged."""
    if not _is_grey(image):
        return image
    colour = rng.uniform(0.55, 1.0, size=3)
    colour[rng.integers(3)] = 1.0
    return image * colour


def _sample(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear samples of an (H, W, 3) image at (rows, cols) of any shape S, inside the image: (*S, 3)."""
    h, w = image.shape[:2]
    r0 = np.clip(np.floor(rows).astype(np.int64), 0, h - 2)
    c0 = np.clip(np.floor(cols).astype(np.int64), 0, w - 2)
    fr, fc = (np.clip(rows - r0, 0.0, 1.0)[..., None], np.clip(cols - c0, 0.0, 1.0)[..., None])
    top = image[r0, c0] * (1 - fc) + image[r0, c0 + 1] * fc
    bottom = image[r0 + 1, c0] * (1 - fc) + image[r0 + 1, c0 + 1] * fc
    return top * (1 - fr) + bottom * fr


def _object_cover(shape: str, dx: np.ndarray, dy: np.ndarray, half: float, aspect: float) -> np.ndarray:
    """Coverage in [0, 1] of an object centred at (0, 0) with half-size ``half`` (anti-aliased edge, one pixel)."""
    u, v = dx / (half * aspect), dy * aspect / half
    if shape == "ellipse":
        inside = (1.0 - np.hypot(u, v)) * half
    else:  # a square with rounded corners: an L4 ball
        inside = (1.0 - (u**4 + v**4) ** 0.25) * half
    return np.clip(inside + 0.5, 0.0, 1.0)


@DATASETS.register("photo_scenes")
class PhotoScenes(GeneratedVideos):
    """Objects cut from photographs moving over a photographic texture under a slow camera pan; RGB, [0, 1].

    Args:
        split: "train", "val" or "test".
        in_frames, out_frames: frames observed and predicted.
        num_train, num_val, num_test: sequences per split.
        seq_len: frames per generated sequence (in_frames + out_frames must fit).
        image_size: frame height and width; at least the largest object diameter + 1 (29 with the default
            object_size): a smaller frame is refused, objects are not shrunk to fit it.
        num_objects: objects per sequence, as [min, max].
        object_size: object diameter range in pixels, [min, max].
        object_speed: object speed range in pixels per frame, [min, max].
        pan_speed: camera speed range in pixels per frame, [min, max] (the background's motion).
        zoom: source pixels per frame pixel, [min, max] (above 1 shows more of the photograph, smaller).
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
        num_objects: list = (2, 3),
        object_size: list = (16.0, 28.0),
        object_speed: list = (1.0, 2.5),
        pan_speed: list = (0.3, 0.8),
        zoom: list = (0.8, 1.2),
        seed: int = 0,
    ):
        super().__init__(split, in_frames, out_frames, "photo_scenes", num_train, num_val, num_test, seq_len,
                         image_size)
        ranges = {"num_objects": num_objects, "object_size": object_size, "object_speed": object_speed,
                  "pan_speed": pan_speed, "zoom": zoom}
        for key, value in ranges.items():
            if len(value) != 2 or not 0 <= float(value[0]) <= float(value[1]):
                raise DataError(f"data.{key} must be [min, max] with 0 <= min <= max, got {list(value)!r}")
        if float(zoom[0]) <= 0:
            raise DataError(f"data.zoom must be positive, got {list(zoom)!r}")
        self.check_objects_fit(image_size, object_size, "object_size", "objects")
        self.size, self.seed = image_size, seed
        self.num_objects = tuple(int(v) for v in num_objects)
        self.object_size, self.object_speed, self.pan_speed, self.zoom = (
            tuple(float(v) for v in r) for r in (object_size, object_speed, pan_speed, zoom))
        # the pan must fit in the smallest photograph at the largest zoom
        reach = (image_size + self.pan_speed[1] * seq_len) * self.zoom[1] + 2
        if reach >= _SOURCE_SIDE:
            raise DataError(f"photo_scenes: a {image_size}x{image_size} frame panning {self.pan_speed[1]} px per frame for "
                            f"{seq_len} frames at zoom {self.zoom[1]} needs {reach:.0f} source pixels, more than the "
                            f"{_SOURCE_SIDE} the photographs have; lower data.image_size, data.pan_speed or data.zoom")
        self._background = None

    @classmethod
    def frame_shape(cls, image_size: int = 64, **_) -> tuple[int, int, int]:
        return (3, image_size, image_size)

    @property
    def background(self) -> np.ndarray:
        """The "all background" prediction of a comparison: the mean colour (3,) of the first 16 training
        sequences (the same for every split)."""
        if self._background is None:
            train = PhotoScenes("train", self.in_frames, self.out_frames, num_train=_MEAN_SEQUENCES,
                                seq_len=self.seq_len, image_size=self.size, num_objects=self.num_objects,
                                object_size=self.object_size, object_speed=self.object_speed,
                                pan_speed=self.pan_speed, zoom=self.zoom, seed=self.seed)
            self._background = np.mean([train.sequence(i).mean(axis=(0, 2, 3)) for i in range(_MEAN_SEQUENCES)], axis=0)
        return self._background

    def sequence(self, index: int) -> np.ndarray:
        """The whole generated sequence (seq_len, 3, size, size), float32 in [0, 1]."""
        self.check_index(index)
        rng = _rng(self.seed, self.split, index, salt=41)
        n = self.size
        rows, cols = np.mgrid[0:n, 0:n].astype(np.float64)
        frames = self._pan(rng, rows, cols)
        for _ in range(rng.integers(self.num_objects[0], self.num_objects[1] + 1)):
            self._add_object(rng, frames)
        return np.clip(frames, 0.0, 1.0).transpose(0, 3, 1, 2).astype(np.float32)

    def _pan(self, rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The background of every frame (seq_len, size, size, 3): a window of a photograph that moves with the
        camera at a constant velocity, sampled bilinearly (sub-pixel motion)."""
        image = _tint(rng, source_image(BACKGROUNDS[rng.integers(len(BACKGROUNDS))]))
        zoom = rng.uniform(*self.zoom)
        angle = rng.uniform(0, 2 * np.pi)
        velocity = rng.uniform(*self.pan_speed) * np.array([np.sin(angle), np.cos(angle)])  # (rows, cols) per frame
        travel = velocity * (self.seq_len - 1)
        extent = (self.size - 1) * zoom
        low = np.maximum(0.0, -travel * zoom)  # the window stays inside the photograph for the whole pan
        high = np.array(image.shape[:2]) - 1 - extent - np.maximum(0.0, travel * zoom)
        origin = rng.uniform(low, high)
        t = np.arange(self.seq_len)[:, None, None]
        return _sample(image, origin[0] + zoom * (rows + velocity[0] * t), origin[1] + zoom * (cols + velocity[1] * t))

    def _add_object(self, rng: np.random.Generator, frames: np.ndarray) -> None:
        """Composite one object, cut from a photograph, moving and bouncing, over ``frames`` (T, H, W, 3) in place."""
        image = _tint(rng, source_image(OBJECTS[rng.integers(len(OBJECTS))], _OBJECT_SIDE))
        half = rng.uniform(*self.object_size) / 2
        shape = OBJECT_SHAPES[rng.integers(len(OBJECT_SHAPES))]
        aspect = rng.uniform(0.75, 1.33)
        zoom = rng.uniform(*self.zoom)
        box = int(np.ceil(1.4 * half)) + 1  # the object's window: its centre pixel +- box
        reach = box * zoom + 1
        source = rng.uniform(reach, np.array(image.shape[:2]) - 1 - reach)  # where the object is cut from
        angle = rng.uniform(0, 2 * np.pi)
        velocity = rng.uniform(*self.object_speed) * np.array([np.cos(angle), np.sin(angle)])
        limit = np.array([self.size - 1 - half, self.size - 1 - half])
        path = _bounce(rng.uniform(half, limit), velocity, half, limit, len(frames))  # (x, y) per frame
        corner = np.round(path).astype(np.int64) - box  # the window's top-left pixel (x, y) per frame
        span = np.arange(2 * box + 1, dtype=np.float64)
        dx = corner[:, 0, None, None] + span[None, None, :] - path[:, 0, None, None]  # (T, 1, S): offsets from
        dy = corner[:, 1, None, None] + span[None, :, None] - path[:, 1, None, None]  # (T, S, 1) the centre
        dx, dy = np.broadcast_arrays(dx, dy)
        cover = _object_cover(shape, dx, dy, half, aspect)[..., None]
        texture = _sample(image, source[0] + zoom * dy, source[1] + zoom * dx)
        pad = 2 * box + 1
        padded = np.pad(frames, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        for t, (x0, y0) in enumerate(corner + pad):
            window = padded[t, y0:y0 + 2 * box + 1, x0:x0 + 2 * box + 1]
            window[:] = window * (1 - cover[t]) + texture[t] * cover[t]
        frames[:] = padded[:, pad:-pad, pad:-pad]
