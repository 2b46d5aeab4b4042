"""Time per training step and parameter count of a backbone alone and wrapped with PredGS.

    python tools/bench_train_step.py [--config configs/demo/simvp_predgs.yaml] [--steps 10] [--device cpu]

The config names the wrapped model; the same config without its adapter is the baseline.
Both train on the same random batch of the config's shape with the config's loss and AdamW.
"""
from __future__ import annotations

import copy
import statistics
import sys
import time

import torch

from ..config import load_config, validate_config
from ..losses import build_loss
from ..model import build_model, data_shape
from ..runtime import resolve_device
from .common import ArgumentParser, friendly_errors, program


def time_steps(cfg, device, steps: int, warmup: int) -> tuple[float, float, int, int]:
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    loss_fn = build_loss(cfg["loss"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    c, h, w = data_shape(cfg)
    d = cfg["data"]
    x = torch.rand(d["batch_size"], d["in_frames"], c, h, w, device=device)
    y = torch.rand(d["batch_size"], d["out_frames"], c, h, w, device=device)
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = loss_fn(model(x), y)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    counts = model.parameter_summary()
    return statistics.median(times), statistics.pstdev(times), counts["backbone"], counts["adapter"]


@friendly_errors
def main(argv=None) -> int:
    p = ArgumentParser(prog=program("bench_train_step"), description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/demo/simvp_predgs.yaml")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    wrapped = load_config(args.config, args.overrides)
    if wrapped["model"].get("adapter") is None:
        print(f"error: {args.config} has no model.adapter to compare against", file=sys.stderr)
        return 2
    plain = copy.deepcopy(dict(wrapped))
    plain["model"]["adapter"] = None
    plain = validate_config(type(wrapped)(plain, filename=wrapped.filename, origins=wrapped.origins))

    d = wrapped["data"]
    print(f"config: {args.config}; batch {d['batch_size']}, {d['in_frames']} -> {d['out_frames']} frames of "
          f"{data_shape(wrapped)}, loss {wrapped['loss']['name']}; device {device}, torch threads "
          f"{torch.get_num_threads()}; median of {args.steps} steps after {args.warmup} warm-up")
    rows = []
    for label, cfg in ((f"{wrapped['model']['backbone']['name']} alone", plain),
                       (f"{wrapped['model']['backbone']['name']} + {wrapped['model']['adapter']['name']}", wrapped)):
        med, spread, n_backbone, n_adapter = time_steps(cfg, device, args.steps, args.warmup)
        rows.append((label, med, spread, n_backbone + n_adapter))
    base = rows[0]
    print("\n| model | time per step (ms) | spread (ms) | parameters | time ratio | parameter ratio |")
    print("|---|---|---|---|---|---|")
    for label, med, spread, params in rows:
        print(f"| {label} | {med * 1e3:.1f} | {spread * 1e3:.1f} | {params:,} | {med / base[1]:.2f} | "
              f"{params / base[3]:.2f} |")
    return 0
