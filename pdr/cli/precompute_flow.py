"""Precompute optical flows between consecutive frames, stored next to the data.

    python tools/precompute_flow.py data/clevrer/frames [more folders or videos] [--method auto|raft|farneback]

Each frame folder ``<video>/`` gets ``<video>/flow.npz`` and each video file ``<name>.mp4`` gets
``<name>_flow.npz`` with ``forward``/``backward`` flows (T-1, 2, H, W) and the forward-backward ``visible``
mask (T-1, 1, H, W); see pdr/data/optical_flow.py. RAFT (torchvision, large) is used when its
weights are in the torch hub cache (nothing is downloaded), otherwise OpenCV's Farneback.
"""
from __future__ import annotations

import argparse
import sys

from .common import ArgumentParser, friendly_errors, program, setup_logging


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog=program("precompute_flow"), description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("paths", nargs="+", help="frame folders, video files, or folders holding them")
    p.add_argument("--method", choices=["auto", "raft", "farneback"], default="auto",
                   help="auto: RAFT large when its weights are cached, else Farneback")
    p.add_argument("--img-h", type=int, default=None, help="resize frames to this height first")
    p.add_argument("--img-w", type=int, default=None, help="resize frames to this width first")
    p.add_argument("--device", default="cpu")
    p.add_argument("--overwrite", action="store_true", help="recompute flows that already exist")
    return p


@friendly_errors
def main(argv=None) -> int:
    args = parser().parse_args(argv)
    setup_logging()
    from ..data.flow_cache import cache_path, save_flows
    from ..data.optical_flow import compute_flows, load_raft, raft_weights_path
    from ..data.videos import find_videos, read_any

    raft = None
    if args.method in ("auto", "raft"):
        raft = load_raft(args.device)
        where = raft_weights_path()
        print(f"flow method: RAFT large ({where})" if raft is not None else
              "flow method: OpenCV Farneback (no raft_large_*.pth in the torch hub cache; nothing is downloaded)",
              file=sys.stderr)
    else:
        print("flow method: OpenCV Farneback", file=sys.stderr)
    size = (args.img_h, args.img_w) if args.img_h and args.img_w else None
    for video in find_videos(args.paths):
        if cache_path(video).exists() and not args.overwrite:
            print(f"{video}: flows exist, skipped (--overwrite recomputes)", file=sys.stderr)
            continue
        flows = compute_flows(read_any(video, size=size), method=args.method, device=args.device, raft=raft)
        path = save_flows(video, flows)
        print(f"{video}: {flows['forward'].shape[0]} flow pairs ({flows['method']}) -> {path}")
    return 0
