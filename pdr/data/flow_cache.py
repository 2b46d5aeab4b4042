"""The on-disk cache of precomputed optical flows that tools/precompute_flow.py writes next to the data.

A frame folder ``<video>/`` gets ``<video>/flow.npz`` and a video file ``<name>.mp4`` gets
``<name>_flow.npz``, holding ``forward``/``backward`` (T-1, 2, H, W) float16, ``visible``
(T-1, 1, H, W) uint8 and ``method`` ("raft_large" or "farneback"). Datasets read a clip's flows with
``clip_flows`` (CLEVRER's ``return_flows``); tools/precompute_flow.py writes the flows of
``pdr.data.optical_flow.compute_flows``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .optical_flow import describe_flow_method

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


def clip_flows(video: str | Path, picked: np.ndarray, method: str, size: tuple[int, int],
               asked: str | None = None) -> dict:
    """The cached backward flows (T-1, 2, H, W) and visibility (T-1, 1, H, W) between consecutive frames of a
    clip of ``video``, ``picked`` (T,) being the clip's source-frame numbers (one apart), resized to ``size``
    (H, W) with the vectors scaled alike. The cache must hold flows made with ``method`` (data.flow_method
    resolved; ``asked``: as the config gave it, e.g. "auto", for the message)."""

    path = cache_path(video)
    stored = load_flows(video)
    made_with = str(stored.get("method", "unknown"))
    if made_with != method:
        raise DataError(f"{path}: flows made with {made_with}, but data.flow_method asks for "
                        f"{describe_flow_method(asked or method)}; recompute them with tools/precompute_flow.py "
                        f"--method {method} --overwrite, or set data.flow_method: {made_with}")
    backward, visible = stored["backward"], stored["visible"]
    if picked[-1] > len(backward):
        raise DataError(f"{path}: {len(backward)} flow pairs, the clip needs frames up to {picked[-1]}; "
                        "recompute it with tools/precompute_flow.py --overwrite")
    pairs = picked[:-1]
    bw = torch.from_numpy(backward[pairs].astype(np.float32))
    vis = torch.from_numpy(visible[pairs].astype(np.float32))
    h, w = bw.shape[-2:]
    if (h, w) != size:
        bw = torch.nn.functional.interpolate(bw, size=size, mode="bilinear", align_corners=False)
        bw = bw * torch.tensor([size[1] / w, size[0] / h]).view(1, 2, 1, 1)
        vis = torch.nn.functional.interpolate(vis, size=size, mode="area")
    return {"flow_backward": bw, "flow_visible": vis}
