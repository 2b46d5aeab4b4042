"""Clips named on a command line, read into a run's units, and what is written of their predictions (pdr-predict,
tools/infer.py): the predicted frames (png or npy), one GIF per clip, a metrics JSON.

A clip is a video file (mp4, avi, ... through PyAV; gif through imageio), a folder of frames (png, jpg), or an
array: a ``.npy`` file or each array of a ``.npz`` file, holding one clip (T, C, H, W), (T, H, W, C) or (T, H, W)
for one channel, or several (N, T, C, H, W), (N, T, H, W, C) or (N, T, H, W). Videos and images are 8-bit: they are
converted to RGB or grey as the run's channels ask, resized to its frame size and scaled as its dataset scales 8-bit
images. Arrays are in the data's units (uint8 arrays: 8-bit images, scaled the same way) and must have the run's
frame size.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..data.video_io import FRAME_SUFFIXES, list_frames, read_frame, read_video, resize_frames
from ..data.videos import VIDEO_SUFFIXES
from ..errors import DataError
from ..visualize import frames_to_rgb8, save_sequence_gif

log = logging.getLogger("pdr")

ARRAY_SUFFIXES = (".npy", ".npz")
GIF_SUFFIXES = (".gif",)
FORMATS = ("png", "npy")


@dataclass(frozen=True)
class FrameSpec:
    """What a run's frames are: (C, H, W) and the data units per 8-bit level (None: not 8-bit images)."""

    channels: int
    height: int
    width: int
    uint8_scale: float | None = None

    @property
    def eight_bit(self) -> bool:
        return self.uint8_scale is not None

    def display_range(self, *frames: np.ndarray) -> tuple[float, float]:
        """(low, high) of the data as pictures show them: the 8-bit range for 8-bit data, else that of ``frames``."""
        if self.eight_bit:
            return 0.0, 255.0 * self.uint8_scale
        values = np.concatenate([f.ravel() for f in frames if f is not None and f.size])
        return float(values.min()), float(values.max())


@dataclass
class Clip:
    """One clip: its output name, where it came from and its frames (T, C, H, W), float32 in the data's units."""

    name: str
    source: Path
    frames: np.ndarray


def _is_clip_file(path: Path) -> bool:
    return path.suffix.lower() in (*VIDEO_SUFFIXES, *GIF_SUFFIXES, *ARRAY_SUFFIXES)


def _is_frame_folder(path: Path) -> bool:
    return path.is_dir() and any(p.suffix.lower() in FRAME_SUFFIXES for p in path.iterdir())


def find_sources(paths) -> list[Path]:
    """The clip sources named by ``paths``: a file is one source (video, gif, npy, npz), a folder of frames is one,
    any other folder gives its clip files and frame folders (sorted). Missing paths and folders with nothing to read
    are DataErrors."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise DataError(f"--input: not found: {path}")
        if path.is_file():
            if not _is_clip_file(path):
                raise DataError(f"--input: {path}: not a video ({', '.join(VIDEO_SUFFIXES + GIF_SUFFIXES)}), an array "
                                f"({', '.join(ARRAY_SUFFIXES)}) or a folder of frames")
            found.append(path)
        elif _is_frame_folder(path):
            found.append(path)
        else:
            children = [c for c in sorted(path.iterdir()) if c.is_file() and _is_clip_file(c) or _is_frame_folder(c)]
            if not children:
                raise DataError(f"--input: {path}: no videos, arrays or folders of "
                                f"{'/'.join(FRAME_SUFFIXES)} frames in this folder")
            found.extend(children)
    return found


# ----------------------------------------------------------------------------- reading


def _scaled(frames: np.ndarray, spec: FrameSpec, source: Path, what: str) -> np.ndarray:
    """uint8 frames (T, C, H, W) in the data's units (float32)."""
    if not spec.eight_bit:
        raise DataError(f"{source}: {what} are 8-bit images, but the run's data are not (they have no 8-bit scaling); "
                        "give the frames as a float array (.npy/.npz) in the data's units")
    return frames.astype(np.float32) * np.float32(spec.uint8_scale)


def _read_images(source: Path, spec: FrameSpec, max_frames: int | None) -> np.ndarray:
    """A video, gif or frame folder as uint8 (T, C, H, W) with the run's channels and frame size."""
    if spec.channels not in (1, 3):
        raise DataError(f"{source}: videos and images give 1 or 3 channels, the run's data have {spec.channels}; "
                        "give the frames as an array (.npy/.npz)")
    grey = spec.channels == 1
    if source.is_dir():
        frames = np.stack([read_frame(f, grey=grey) for f in list_frames(source)[:max_frames]])
    elif source.suffix.lower() in GIF_SUFFIXES:
        frames = _read_gif(source, grey)[:max_frames]
    else:
        frames = read_video(source, grey=grey)[:max_frames]
    size = (spec.height, spec.width)
    if frames.shape[1:3] != size:
        log.info("%s: %dx%d frames resized to the run's %dx%d", source.name, *frames.shape[1:3], *size)
        frames = resize_frames(frames, size)
    return frames[:, None] if grey else frames.transpose(0, 3, 1, 2)


def _read_gif(path: Path, grey: bool) -> np.ndarray:
    import imageio.v3 as iio

    try:
        frames = np.asarray(iio.imread(path, index=None))
    except Exception as exc:
        raise DataError(f"{path}: cannot read this gif ({type(exc).__name__}: {exc})") from exc
    frames = frames[None] if frames.ndim == 2 or frames.ndim == 3 and frames.shape[-1] in (3, 4) else frames
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    frames = frames[..., :3]
    if grey:
        frames = np.round(frames @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    return frames


def _clips_of_array(array: np.ndarray, spec: FrameSpec, where: str) -> list[np.ndarray]:
    """The clips (T, C, H, W) of an array in one of the layouts of the module docstring."""
    c, h, w = spec.channels, spec.height, spec.width
    shape = tuple(array.shape)
    if array.ndim in (4, 5):
        if shape[-3:] == (c, h, w):
            clips = array if array.ndim == 5 else array[None]
            return list(clips)
        if shape[-3:] == (h, w, c):
            clips = array if array.ndim == 5 else array[None]
            return [np.moveaxis(clip, -1, 1) for clip in clips]
    if c == 1 and array.ndim in (3, 4) and shape[-2:] == (h, w):
        clips = array if array.ndim == 4 else array[None]
        return [clip[:, None] for clip in clips]
    grey = " (T, H, W), (N, T, H, W)," if c == 1 else ""
    raise DataError(f"{where}: an array of shape {shape}; the run predicts {h}x{w} frames of {c} channel(s): expected "
                    f"(T, {c}, {h}, {w}), (T, {h}, {w}, {c}),{grey} or (N, T, ...) for N clips")


def _read_arrays(source: Path) -> list[tuple[str, np.ndarray]]:
    """(suffix of the clip name, array) of a .npy file (memory-mapped) or of each array of a .npz file."""
    try:
        if source.suffix.lower() == ".npy":
            return [("", np.load(source, mmap_mode="r", allow_pickle=False))]
        with np.load(source, allow_pickle=False) as archive:
            return [(f"_{key}", archive[key]) for key in sorted(archive.files)]
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{source}: cannot read this array file ({type(exc).__name__}: {exc})") from exc


def read_clips(source: Path, spec: FrameSpec, max_frames: int | None = None) -> Iterator[Clip]:
    """The clips of one source (``find_sources``) in the data's units, at most ``max_frames`` frames each."""
    name = source.stem if source.is_file() else source.name
    if source.suffix.lower() not in ARRAY_SUFFIXES:
        yield Clip(name, source, _scaled(_read_images(source, spec, max_frames), spec, source, "its frames"))
        return
    for suffix, array in _read_arrays(source):
        where = f"{source}" + (f" [{suffix[1:]}]" if suffix else "")
        clips = _clips_of_array(array, spec, where)
        for i, clip in enumerate(clips):
            clip = np.asarray(clip[:max_frames])
            label = name + suffix + (f"_{i:03d}" if len(clips) > 1 else "")
            if clip.dtype == np.uint8:
                frames = _scaled(clip, spec, source, "its uint8 arrays")
            elif np.issubdtype(clip.dtype, np.floating):
                frames = clip.astype(np.float32)
            else:
                raise DataError(f"{where}: an array of {clip.dtype}; expected floats in the data's units or uint8 "
                                "images")
            if not np.isfinite(frames).all():
                raise DataError(f"{where}: the array holds NaN or infinite values")
            yield Clip(label, source, frames)


# ----------------------------------------------------------------------------- writing


def to_images(frames: np.ndarray, spec: FrameSpec, value_range: tuple[float, float]) -> np.ndarray:
    """Frames (T, C, H, W) in the data's units as uint8 images (T, H, W) for one channel, else (T, H, W, 3): 8-bit
    data exactly (their own levels), other data scaled from ``value_range`` (channel 0 in viridis beside 1 and 3
    channels)."""
    if spec.eight_bit and spec.channels in (1, 3):
        levels = np.clip(np.round(frames / spec.uint8_scale), 0, 255).astype(np.uint8)
        return levels[:, 0] if spec.channels == 1 else levels.transpose(0, 2, 3, 1)
    low, high = value_range
    display = (frames - low) / max(high - low, 1e-12)
    rgb = frames_to_rgb8(display, 0.0, 1.0)
    return rgb[..., 0] if frames.shape[1] == 1 else rgb


def write_prediction(out_dir: Path, name: str, observed: np.ndarray, pred: np.ndarray, truth: np.ndarray | None,
                     spec: FrameSpec, fmt: str = "png") -> None:
    """``out_dir/name/pred_XXX.png`` (or ``out_dir/name/pred.npy``, (T, C, H, W) in the data's units) and
    ``out_dir/name.gif`` (observed frames, then the prediction, beside the truth when there is one) of one clip:
    observed (T_in, C, H, W), pred (T_out, C, H, W), truth (T <= T_out, C, H, W) or None, in the data's units."""
    import imageio.v3 as iio

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {fmt!r}")
    folder = Path(out_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    value_range = spec.display_range(observed, truth)
    if fmt == "npy":
        np.save(folder / "pred.npy", pred.astype(np.float32))
    else:
        for i, image in enumerate(to_images(pred, spec, value_range)):
            iio.imwrite(folder / f"pred_{i:03d}.png", image)
    low, high = value_range
    span = max(high - low, 1e-12)
    save_sequence_gif(Path(out_dir) / f"{name}.gif", (observed - low) / span,
                      None if truth is None else (truth - low) / span, (pred - low) / span, value_range=(0.0, 1.0))


def write_json(path: Path, record: dict) -> None:
    Path(path).write_text(json.dumps(record, indent=2))
