"""Finding and reading whole videos named on a command line (tools/precompute_flow.py, tools/infer.py):
frame folders and video files."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .video_io import FRAME_SUFFIXES, list_frames, read_frame, read_video, resize_frames

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


def _has_frames(folder: Path) -> bool:
    return any(p.suffix.lower() in FRAME_SUFFIXES for p in folder.iterdir())


def find_videos(paths, allow_files: bool = True) -> list[Path]:
    """Videos named by ``paths``: a frame folder is one video; a video file is one video; any other folder
    contributes its frame subfolders and video files (sorted). A missing path is a DataError."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise DataError(f"video folder not found: {path}")
        if path.is_file():
            if not (allow_files and path.suffix.lower() in VIDEO_SUFFIXES):
                raise DataError(f"{path}: not a folder of frames" + (" or a video file" if allow_files else ""))
            found.append(path)
        elif _has_frames(path):
            found.append(path)
        else:
            for child in sorted(path.iterdir()):
                if child.is_dir() and _has_frames(child) or allow_files and child.is_file() and child.suffix.lower() in VIDEO_SUFFIXES:
                    found.append(child)
    if not found:
        raise DataError(f"no videos (folders of {'/'.join(FRAME_SUFFIXES)} frames"
                        f"{' or video files' if allow_files else ''}) under {', '.join(map(str, paths))}")
    return found


def read_any(video: Path, grey: bool = False, size: tuple[int, int] | None = None,
             max_frames: int | None = None) -> np.ndarray:
    """uint8 frames (T, H, W, 3) (or (T, H, W) when ``grey``) of a frame folder or video file, resized to
    ``size = (H, W)`` when given."""
    if video.is_dir():
        files = list_frames(video)[:max_frames]
        frames = np.stack([read_frame(f, grey=grey) for f in files])
    else:
        frames = read_video(video, grey=grey)[:max_frames]
    return resize_frames(frames, size) if size is not None else frames
