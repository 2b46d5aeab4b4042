"""tools/compare.py: train arms of one config the same way and compare them in one table.

    python tools/compare.py --config configs/demo/simvp_predgs.yaml --arms paper --work-dir runs/cmp \
        [--set train.max_steps=350 ...] [--arm NAME KEY=VALUE ... ] [--only mse l1_ssim] [--select best|last]

Arms: ``--arms paper`` (backbone + MSE, + L1/SSIM, + PredGS + L1/SSIM, + PredGS + MSE; PredGS settings from
the base config's adapter, else a default for its frame size, changed by ``--adapter KEY=VALUE ...``),
``--arms FILE.yaml`` (``{arm name: [KEY=VALUE, ...]}``) and/or ``--arm NAME KEY=VALUE ...`` (repeatable).
``--set`` applies to every arm. Each arm is a run folder <work-dir>/<arm>; rerunning the same command
skips finished arms and resumes an interrupted one (``--overwrite`` trains every arm again). Writes <work-dir>/comparison.{md,csv,json},
comparison_per_frame.png and comparison_predictions.png.

The fine-tune protocol (``pdr.compare.finetune``): with ``--base-steps N`` (a base trained once, the backbone with
MSE, kept in --bases and reused) or ``--base-from PATH`` (a trained run or an OpenSTL checkpoint), every arm starts
from that base for the budget of --set train.max_steps, with a fresh optimiser and the fine-tuning schedule;
``--arms finetune`` is its built-in arm set (MSE continued, the loss alone, the no-Gaussian control and PredGS,
frozen and trained), and the table starts with the base itself. ``--base-only`` trains the base and stops.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import friendly_errors, setup_logging

CONSOLE_SCRIPT = "pdr-compare"


def parser() -> argparse.ArgumentParser:
    from ..compare import SELECT_RULES

    prog = CONSOLE_SCRIPT if Path(sys.argv[0]).name == CONSOLE_SCRIPT else "tools/compare.py"
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="base YAML config of every arm")
    p.add_argument("--work-dir", required=True, help="folder of the comparison: one run folder per arm, the table")
    p.add_argument("--arms", help="a built-in arm set (paper, finetune) or a YAML file {arm name: [KEY=VALUE, ...]}")
    p.add_argument("--arm", dest="extra_arms", action="append", nargs="+", default=[], metavar=("NAME", "KEY=VALUE"),
                   help="one more arm: its name, then its overrides; repeat for several arms")
    p.add_argument("--only", nargs="+", metavar="NAME", help="compare only these arms (of --arms and --arm)")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override a config value of every arm, e.g. --set train.max_steps=350")
    p.add_argument("--adapter", nargs="+", default=[], metavar="KEY=VALUE",
                   help="PredGS settings of the paper arms, e.g. --adapter num_gaussians=256 pool=4")
    p.add_argument("--select", default="best", choices=SELECT_RULES,
                   help="checkpoint of every arm: best by --monitor (default) or last")
    p.add_argument("--monitor", help="validation value that picks every arm's best checkpoint, e.g. val/mse "
                                     "(default: train.monitor of the base config with --set)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--num-vis", type=int, help="test sequences in the prediction grid (default: eval.num_vis)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    base = p.add_argument_group("fine-tune protocol: every arm starts from one base model")
    base.add_argument("--base-steps", type=int, metavar="N",
                      help="train the base (the backbone with MSE) for N steps, once: it is kept in --bases and reused "
                           "by every comparison with the same base config")
    base.add_argument("--base-from", metavar="PATH",
                      help="the base is this trained model: a PDR run folder or checkpoint, or an OpenSTL checkpoint")
    base.add_argument("--base-set", dest="base_overrides", action="extend", nargs="+", default=[],
                      metavar="KEY=VALUE", help="override a config value of the base alone, e.g. --base-set loss=l1")
    base.add_argument("--bases", metavar="DIR", help="folder of trained bases (default: bases beside --work-dir)")
    base.add_argument("--base-only", action="store_true", help="train (or resume) the base and stop")
    p.add_argument("--offline", action="store_true",
                   help="download nothing (as PDR_OFFLINE=1): LPIPS is n/a when its AlexNet weights are not cached")
    p.add_argument("--overwrite", action="store_true",
                   help="train every arm again from the start, deleting its run folder (default: keep finished arms "
                        "and resume interrupted ones)")
    return p


def collect_arms(args) -> list:
    from ..compare import Arm, resolve_arms
    from ..errors import ConfigError

    if args.arms == "finetune" and not uses_base(args):
        raise ConfigError("--arms finetune starts every arm from a base: give --base-steps N or --base-from PATH")
    arms = resolve_arms(args.arms, args.config, args.overrides, args.adapter) if args.arms else []
    arms += [Arm(name, tuple(sets)) for name, *sets in args.extra_arms]
    if args.only:
        names = [a.name for a in arms]
        missing = [n for n in args.only if n not in names]
        if missing:
            raise ConfigError(f"--only: no arm named {', '.join(map(repr, missing))}; the arms are {', '.join(names)}")
        arms = [a for a in arms if a.name in args.only]
    return arms


def uses_base(args) -> bool:
    return args.base_steps is not None or args.base_from is not None


def run(args):
    """The comparison the arguments ask for: plain, or the fine-tune protocol; None after --base-only."""
    from ..compare import compare
    from ..compare.base import BaseSpec
    from ..compare.finetune import compare_finetune
    from ..errors import ConfigError

    options = {"select": args.select, "monitor": args.monitor, "device": args.device, "num_vis": args.num_vis,
               "show_progress": not args.no_progress, "overwrite": args.overwrite}
    if not uses_base(args):
        if args.base_overrides or args.bases or args.base_only:
            raise ConfigError("--base-set, --bases and --base-only belong to the fine-tune protocol: give --base-steps "
                              "N or --base-from PATH")
        return compare(args.config, collect_arms(args), args.work_dir, args.overrides, **options)
    spec = BaseSpec(args.base_steps, args.base_from, tuple(args.base_overrides), args.bases)
    arms = [] if args.base_only and not (args.arms or args.extra_arms) else collect_arms(args)
    return compare_finetune(args.config, arms, args.work_dir, spec, args.overrides, base_only=args.base_only,
                            **options)


@friendly_errors
def main(argv=None) -> int:
    args = parser().parse_args(argv)
    setup_logging(offline=args.offline)
    try:
        result = run(args)
    except KeyboardInterrupt:
        print("rerun the same command (without --overwrite) to resume: finished arms and bases are kept", file=sys.stderr)
        raise
    if result is None:
        return 0
    print(result.files[0].read_text().rstrip())
    for path in result.files[1:]:
        print(f"[pdr] wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
