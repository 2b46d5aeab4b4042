"""Time per training step, peak memory and parameter count of a backbone alone and wrapped with PredGS.

    python tools/bench_train_step.py [--config CONFIG ...] [--precision fp32 bf16] [--steps 10] [--device cuda]
                                     [--set KEY=VALUE ...] [--json results.json]

Each config names a wrapped model; the same config without its adapter is the baseline. Both train on
the same random batch of the config's shape with the config's loss and AdamW, under each precision
asked for (autocast as in training). Peak memory is torch.cuda.max_memory_allocated during the timed
steps on a GPU; on the CPU it is not measured (n/a). The ratios are the wrapped model's over the
backbone's; the project's goal is at most 1.10 for both time and memory.
"""
from __future__ import annotations

import copy
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..config import load_config, validate_config
from ..engine.optim import MixedPrecision
from ..losses import build_loss
from ..model import build_model, data_shape
from ..runtime import resolve_device
from .common import ArgumentParser, friendly_errors, program

GOAL_RATIO = 1.10


@dataclass
class StepTiming:
    """One model under one precision: median and spread of the step time, peak memory, parameters."""

    config: str
    model: str
    precision: str
    ms_per_step: float
    spread_ms: float
    peak_mb: float | None
    parameters: int


def time_steps(cfg, device, steps: int, warmup: int, precision: str) -> tuple[float, float, float | None, int]:
    """(median seconds, spread seconds, peak MB or None, parameters) of ``steps`` training steps."""
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    loss_fn = build_loss(cfg["loss"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    amp = MixedPrecision(precision, device)
    c, h, w = data_shape(cfg)
    d = cfg["data"]
    x = torch.rand(d["batch_size"], d["in_frames"], c, h, w, device=device)
    y = torch.rand(d["batch_size"], d["out_frames"], c, h, w, device=device)
    on_gpu = device.type == "cuda"
    times = []
    for i in range(warmup + steps):
        if on_gpu:
            torch.cuda.synchronize(device)
            if i == warmup:
                torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        with amp.autocast():
            out = model(x)
        loss = loss_fn(out, y)["loss"]
        opt.zero_grad(set_to_none=True)
        amp.scaler.scale(loss).backward()
        amp.scaler.step(opt)
        amp.scaler.update()
        if on_gpu:
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if on_gpu else None
    counts = model.parameter_summary()
    del model, opt
    if on_gpu:
        torch.cuda.empty_cache()
    return statistics.median(times), statistics.pstdev(times), peak, counts["backbone"] + counts["adapter"]


def without_adapter(wrapped):
    plain = copy.deepcopy(dict(wrapped))
    plain["model"]["adapter"] = None
    return validate_config(type(wrapped)(plain, filename=wrapped.filename, origins=wrapped.origins))


def ratio(value, base) -> str:
    if value is None or base is None or base == 0:
        return "n/a"
    return f"{value / base:.2f}"


def format_rows(rows: list[StepTiming]) -> list[str]:
    """Markdown table lines. Rows come in pairs (the backbone alone, then wrapped); the ratios of the wrapped
    row are over its pair's first row."""
    lines = ["| config | model | precision | time per step (ms) | spread (ms) | peak memory (MB) | parameters "
             f"| time ratio (goal <= {GOAL_RATIO:.2f}) | memory ratio (goal <= {GOAL_RATIO:.2f}) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for i, row in enumerate(rows):
        base = rows[i - 1] if i % 2 == 1 else row
        peak = "n/a" if row.peak_mb is None else f"{row.peak_mb:.0f}"
        lines.append(f"| {row.config} | {row.model} | {row.precision} | {row.ms_per_step:.1f} | {row.spread_ms:.1f} "
                     f"| {peak} | {row.parameters:,} | {ratio(row.ms_per_step, base.ms_per_step)} "
                     f"| {ratio(row.peak_mb, base.peak_mb)} |")
    return lines


@friendly_errors
def main(argv=None) -> int:
    p = ArgumentParser(prog=program("bench_train_step"), description=__doc__.split("\n")[0])
    p.add_argument("--config", nargs="+", default=["configs/demo/simvp_predgs.yaml"],
                   help="one or more configs with a model.adapter")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="applied to every config")
    p.add_argument("--precision", nargs="+", choices=("fp32", "bf16", "fp16"),
                   help="default: each config's train.precision")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    configs = []
    for path in args.config:
        wrapped = load_config(path, args.overrides)
        if wrapped["model"].get("adapter") is None:
            print(f"error: {path} has no model.adapter to compare against", file=sys.stderr)
            return 2
        configs.append((path, wrapped))

    print(f"device {device}, torch threads {torch.get_num_threads()}; median of {args.steps} steps after "
          f"{args.warmup} warm-up")
    rows: list[StepTiming] = []
    for path, wrapped in configs:
        d = wrapped["data"]
        backbone = wrapped["model"]["backbone"]["name"]
        adapter = wrapped["model"]["adapter"]["name"]
        print(f"{path}: batch {d['batch_size']}, {d['in_frames']} -> {d['out_frames']} frames of "
              f"{data_shape(wrapped)}, loss {wrapped['loss']['name']}")
        for precision in args.precision or [wrapped["train"].get("precision", "fp32")]:
            for label, cfg in ((f"{backbone} alone", without_adapter(wrapped)),
                               (f"{backbone} + {adapter}", wrapped)):
                med, spread, peak, params = time_steps(cfg, device, args.steps, args.warmup, precision)
                rows.append(StepTiming(path, label, precision, med * 1e3, spread * 1e3, peak, params))
    print()
    print("\n".join(format_rows(rows)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"device": str(device), "steps": args.steps, "warmup": args.warmup,
                                         "rows": [asdict(r) for r in rows]}, indent=1))
    return 0
