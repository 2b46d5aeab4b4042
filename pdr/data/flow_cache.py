"""The on-disk cache of precomputed optical flows that tools/precompute_flow.py writes next to the data.

A frame folder ``<video>/`` gets ``<video>/flow.npz`` and a video file ``<name>.mp4`` gets
``<name>_flow.npz``, holding ``forward``/``backward`` (T-1, 2, H, W) float16, ``visible``
(T-1, 1, H, W) uint8 and ``method`` ("raft_large" or "farneback"). Datasets read it (CLEVRER's
``return_flows``); tools/precompute_flow.py writes the flows of ``pdr.data.optical_flow.compute_flows``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError

FLOW_FILE = "flow.npz"


def cache_path(video: str | Path) -> Path:
    """Where the flows of a frame folder or a video file are stored."""
    video = Path(video)
    return video / FLOW_FILE if video.is_dir() else video.with_name(f"{video.stem}_flow.npz")


def save_flows(video: str | Path, flows: dict) -> Path:
    path = cache_path(video)
    np.savez_compressed(path, **flows)
    return path


def load_flows(video: str | Path) -> dict:
    """The cached flows of a frame folder or video file as numpy arrays."""
    path = cache_path(video)
    if not path.is_file():
        raise DataError(f"no precomputed flows at {path}; run tools/precompute_flow.py on {Path(video).parent}")
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except Exception as exc:
        raise DataError(f"{path}: cannot read the flows ({type(exc).__name__}: {exc}); run "
                        "tools/precompute_flow.py --overwrite on the video") from exc
