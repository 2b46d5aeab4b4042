"""tools/prepare_data.py: check a benchmark download before training on it."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..config import dataset_kwargs, load_config
from ..data.inventory import BENCHMARKS, inventory
from ..resources import config_dir
from .common import ArgumentParser, friendly_errors, program


def parse_args(argv=None) -> argparse.Namespace:
    parser = ArgumentParser(
        prog=program("prepare_data"),
        description="Check a benchmark download: which files are present or missing and how many sequences each "
                    "split will have (with the settings of configs/_base_/data/<benchmark>.yaml, or --config).")
    parser.add_argument("benchmark", choices=BENCHMARKS)
    parser.add_argument("--root", help="the dataset folder (default: data.root of the config)")
    parser.add_argument("--config", help="a config whose data section to use (default: the benchmark's base config)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override data.* values")
    return parser.parse_args(argv)


@friendly_errors
def main(argv=None) -> int:
    args = parse_args(argv)
    config = Path(args.config) if args.config else config_dir() / "_base_" / "data" / f"{args.benchmark}.yaml"
    overrides = list(args.set) + ([f"data.root={args.root}"] if args.root else [])
    cfg = load_config(config, overrides, validate=False)
    data = cfg["data"]
    kwargs = {k: v for k, v in dataset_kwargs(cfg).items() if k != "root"}
    lines, ok = inventory(args.benchmark, data["root"], data["in_frames"], data["out_frames"], **kwargs)
    print("\n".join(lines))
    if not ok:
        print("\nnot ready: fix what the lines above say (missing files, where to get them).")
    return 0 if ok else 1
