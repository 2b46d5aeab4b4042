"""tools/train.py: train the model a config describes.

    python tools/train.py --config configs/bouncing_sprites/simvp_predgs.yaml \
        [--set train.epochs=5 ...] [--work-dir runs/x] [--device cpu] [--seed 1] [--resume | --overwrite]

Several processes or machines: the same command under torchrun, e.g.
    torchrun --nproc_per_node 4 tools/train.py --config ...
(data.batch_size is the global batch, split between the processes).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import load_config
from .common import ArgumentParser, friendly_errors, program, setup_logging


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog=program("train"), description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="YAML config file")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override a config value by its dotted key, e.g. --set model.adapter.num_gaussians=300")
    p.add_argument("--work-dir", help="run folder (default: runs/<config folder>/<config name>)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default: train.device of the config (auto)")
    p.add_argument("--seed", type=int, help="overrides train.seed")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), help="overrides train.precision")
    p.add_argument("--init-from", metavar="PATH",
                   help="start the backbone from trained weights (overrides model.init_from): a run folder or "
                        "checkpoint of tools/train.py, or an OpenSTL .pth/.ckpt")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue the run in --work-dir from checkpoints/last.pt")
    g.add_argument("--overwrite", action="store_true", help="delete an existing run in --work-dir and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.add_argument("--offline", action="store_true", help="download nothing (as PDR_OFFLINE=1)")
    return p


def default_work_dir(config_path: str) -> Path:
    path = Path(config_path)
    return Path("runs") / path.parent.name / path.stem


@friendly_errors
def main(argv=None) -> int:
    args = parser().parse_args(argv)
    setup_logging(offline=args.offline)
    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    if args.precision is not None:
        overrides.append(f"train.precision={args.precision}")
    if args.init_from is not None:
        overrides.append(f"model.init_from={json.dumps(args.init_from)}")  # quoted: the path stays a string
    cfg = load_config(args.config, overrides)
    from ..engine import Trainer  # after the config is known good: keeps bad-input errors fast
    from ..engine.distributed import shutdown

    work_dir = Path(args.work_dir) if args.work_dir else default_work_dir(args.config)
    try:
        trainer = Trainer(cfg, work_dir, device=args.device, resume=args.resume, overwrite=args.overwrite,
                          show_progress=not args.no_progress)
        result = trainer.fit()
    except KeyboardInterrupt:
        if (work_dir / "checkpoints" / "last.pt").is_file():
            print("to continue the run: the same command with --resume (instead of --overwrite)", file=sys.stderr)
        raise
    finally:
        shutdown()
    if trainer.is_main:
        print(json.dumps({"work_dir": str(work_dir), "trainable_parameters": trainer.trainable_parameters, **result},
                         default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
