"""Precompute optical flows between consecutive frames, stored next to the data.

    python tools/precompute_flow.py data/clevrer/frames [more folders or videos] [--method auto|raft_large|farneback]
    python tools/precompute_flow.py data/clevrer --config configs/clevrer/latent_flow_temporal.yaml

Each frame folder ``<video>/`` gets ``<video>/flow.npz`` and each video file ``<name>.mp4`` gets
``<name>_flow.npz`` with ``forward``/``backward`` flows (T-1, 2, H, W), the forward-backward ``visible``
mask (T-1, 1, H, W) and the ``method`` used; see pdr/data/optical_flow.py. The method follows the same rule
as the config's ``data.flow_method`` (``--config`` reads it from there; default ``auto``): ``auto`` is RAFT
(torchvision, large) when its weights are in the torch hub cache (nothing is downloaded), otherwise OpenCV's
Farneback, so a cache made with the defaults is the one training with the defaults accepts.
"""
from __future__ import annotations

import argparse
import sys

from .common import ArgumentParser, friendly_errors, program, setup_logging


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog=program("precompute_flow"), description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("paths", nargs="+", help="frame folders, video files, or folders holding them")
    p.add_argument("--method", choices=["auto", "raft_large", "raft", "farneback"], default=None,
                   help="auto: RAFT large when its weights are cached, else Farneback (raft = raft_large);\n"
                        "default: data.flow_method of --config, else auto")
    p.add_argument("--config", help="take the method from this training config's data.flow_method")
    p.add_argument("--img-h", type=int, default=None, help="resize frames to this height first")
    p.add_argument("--img-w", type=int, default=None, help="resize frames to this width first")
    p.add_argument("--device", default="cpu")
    p.add_argument("--overwrite", action="store_true", help="recompute flows that already exist")
    return p


def chosen_method(args) -> str:
    """--method, else data.flow_method of --config (its dataset's default when the config leaves it), else auto."""
    if args.method is not None:
        return args.method
    if args.config:
        from ..config import load_config

        return load_config(args.config)["data"].get("flow_method") or "auto"
    return "auto"


@friendly_errors
def main(argv=None) -> int:
    args = parser().parse_args(argv)
    setup_logging()
    from ..data.flow_cache import cache_path, save_flows
    from ..data.optical_flow import (compute_flows, describe_flow_method, load_raft, raft_weights_path,
                                     resolve_flow_method)
    from ..data.videos import find_videos, read_any

    asked = chosen_method(args)
    method = resolve_flow_method(asked)
    raft = None
    if method == "raft_large":
        raft = load_raft(args.device)
        print(f"flow method: RAFT large ({raft_weights_path()}); asked: {describe_flow_method(asked)}"
              if raft is not None else "flow method: RAFT large", file=sys.stderr)
    else:
        print(f"flow method: OpenCV Farneback; asked: {describe_flow_method(asked)}", file=sys.stderr)
    size = (args.img_h, args.img_w) if args.img_h and args.img_w else None
    for video in find_videos(args.paths):
        if cache_path(video).exists() and not args.overwrite:
            print(f"{video}: flows exist, skipped (--overwrite recomputes)", file=sys.stderr)
            continue
        flows = compute_flows(read_any(video, size=size), method=method, device=args.device, raft=raft)
        path = save_flows(video, flows)
        print(f"{video}: {flows['forward'].shape[0]} flow pairs ({flows['method']}) -> {path}")
    return 0
