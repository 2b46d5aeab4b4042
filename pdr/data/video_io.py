"""Reading video files (avi, mp4) and folders of frames, with errors that name the file.

Video files are decoded with PyAV (``pip install av``); folders of frames are read with imageio.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from ..optional import require

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".gif")  # what PyAV decodes


def _import_av():
    return require("av", "video", "decoding video files (PyAV)")


def read_video(path: str | Path, grey: bool = False, fit=None) -> np.ndarray:
    """Every frame of a video file; ``fit`` (frames (1, H, W[, C]) -> (1, H', W'[, C])) is applied to each frame
    as it is decoded, so that a long video is held at the fitted size only.

    Returns:
        uint8 array (T, H, W, 3) for RGB, or (T, H, W) when ``grey``.
    """
    av = _import_av()
    path = Path(path)
    if not path.is_file():
        raise DataError(f"video file not found: {path}")
    fmt = "gray" if grey else "rgb24"
    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: no video stream in this file")
            for frame in container.decode(video=0):
                image = frame.to_ndarray(format=fmt)
                frames.append(image if fit is None else fit(image[None])[0])
    except DataError:
        raise
    except Exception as exc:  # PyAV raises many error types for damaged files
        if not frames:
            raise DataError(f"{path}: cannot decode this video ({type(exc).__name__}: {exc}); "
                            "the file is corrupt or truncated, download it again") from exc
        # a truncated tail: keep the frames that decoded, the frame-count check decides if they suffice
    if not frames:
        raise DataError(f"{path}: the video has no decodable frames (corrupt or truncated file)")
    return np.stack(frames)


def write_video(path: str | Path, frames: np.ndarray, fps: int = 25, codec: str = "mpeg4") -> None:
    """Write uint8 frames (T, H, W, 3) or (T, H, W) to a video file (used by tests and tools)."""
    av = _import_av()
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec == "mpeg4":
            stream.bit_rate = 4_000_000
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def list_frames(folder: str | Path) -> list[Path]:
    """Image files of a folder of extracted frames, in natural order (frame_2 before frame_10)."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES]

    def natural(p: Path):
        digits = "".join(ch if ch.isdigit() else " " for ch in p.stem).split()
        return (int(digits[-1]) if digits else -1, p.name)

    return sorted(files, key=natural)


def read_frame(path: str | Path, grey: bool = False) -> np.ndarray:
    """One image file as uint8 (H, W, 3), or (H, W) when ``grey`` (RGB converted by luminance)."""
    import imageio.v3 as iio

    try:
        image = np.asarray(iio.imread(path))
    except Exception as exc:
        raise DataError(f"{path}: cannot read this image ({type(exc).__name__}: {exc}); corrupt or truncated") from exc
    if image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    if grey and image.ndim == 3:
        image = np.round(image @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    elif not grey and image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return image


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize frames (T, H, W[, C]) to ``size = (H, W)`` with area-averaging (downscale) or bilinear; uint8 frames
    are rounded back to uint8, other dtypes keep their values' precision (float32 or float64)."""
    import torch
    import torch.nn.functional as F

    if frames.shape[1:3] == tuple(size):
        return frames
    t = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float64 if frames.dtype == np.float64 else np.float32))
    grey = t.ndim == 3
    t = t.unsqueeze(1) if grey else t.permute(0, 3, 1, 2)
    shrinking = size[0] <= t.shape[-2] and size[1] <= t.shape[-1]
    t = F.interpolate(t, size=size, mode="area") if shrinking else F.interpolate(t, size=size, mode="bilinear", align_corners=False)
    t = t.squeeze(1) if grey else t.permute(0, 2, 3, 1)
    if frames.dtype == np.uint8:
        return t.round().clamp(0, 255).to(torch.uint8).numpy()
    return t.numpy().astype(frames.dtype if frames.dtype.kind == "f" else np.float32, copy=False)
