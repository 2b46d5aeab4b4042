#!/usr/bin/env python
"""Time and peak memory of rasterize_gaussians: torch vs compiled backend (cpu or cuda).

    python tools/bench_render.py [--cases A B C] [--device cuda|cpu] [--repeats N] [--cpu-frames F ...]
                                 [--json results.json]

Cases: A 256x256, N=400, K=51, C=3, 64 frames (Human3.6M-like); B 128x128, N=400, K=51, C=1,
64 frames (KTH-like); C 32x32, N=300, K=15, C=2, 1024 frames (TaxiBJ-like); float32 inputs.

Every (case, frames, backend, forward or forward+backward) runs in a fresh process, which reports
the median time and its peak memory above what it held before the first call: on a GPU
torch.cuda.max_memory_allocated, on the CPU the growth of the process's peak resident set
(ru_maxrss). On a GPU it also measures copy bandwidth and exp throughput and prints each case's
floor: max(bytes that must move / bandwidth, Gaussian-pixel evaluations / exp rate), and
measured time over that floor. On the CPU the cases run with fewer frames per call
(--cpu-frames; several values show whether memory grows with the frames).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from pdr.render import rasterize_gaussians


@dataclass(frozen=True)
class Case:
    name: str
    size: int
    n: int
    k: int | None
    channels: int
    frames: int


CASES = {
    "A": Case("A (Human3.6M-like)", 256, 400, 51, 3, 64),
    "B": Case("B (KTH-like)", 128, 400, 51, 1, 64),
    "C": Case("C (TaxiBJ-like)", 32, 300, 15, 2, 1024),
}


def make_inputs(case: Case, frames: int, device, seed: int):
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(frames, case.n, 2, generator=g) * 2 - 1
    scales = torch.rand(frames, case.n, 2, generator=g) * 4 + 0.5
    rotations = (torch.rand(frames, case.n, generator=g) * 2 - 1) * 3.14159
    amplitudes = torch.rand(frames, case.n, case.channels, generator=g)
    return [t.to(device).requires_grad_() for t in (means, scales, rotations, amplitudes)]


def timed(fn, device, repeats: int, warmup: int) -> float:
    """Median seconds of ``fn`` (CUDA events on a GPU)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def rss_bytes() -> int:
    """Current resident set of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def measure(case: Case, frames: int, backend: str, mode: str, device, repeats: int, warmup: int, sets: int = 3):
    """(median seconds, peak bytes above the inputs) of one mode, "forward" or "forward_backward"."""
    inputs = [make_inputs(case, frames, device, seed) for seed in range(sets)]  # rotate: no cache-resident replay
    grad = torch.rand(frames, case.channels, case.size, case.size, device=device)
    state = {"i": 0}

    def run():
        args = inputs[state["i"] % sets]
        state["i"] += 1
        if mode == "forward":
            with torch.no_grad():
                rasterize_gaussians(*args, case.size, case.size, case.k, backend=backend)
        else:
            out = rasterize_gaussians(*args, case.size, case.size, case.k, backend=backend)
            torch.autograd.grad(out, args, grad)

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        seconds = timed(run, device, repeats, warmup)
        return seconds, torch.cuda.max_memory_allocated(device) - before
    before = rss_bytes()
    seconds = timed(run, device, repeats, warmup)
    return seconds, peak_rss_bytes() - before


def measure_in_subprocess(case_key: str, frames: int, backend: str, mode: str, device: str, repeats: int,
                          warmup: int, threads: int) -> tuple[float, int]:
    """``measure`` in a fresh interpreter, so that its peak memory is its own."""
    cmd = [sys.executable, __file__, "--worker", case_key, str(frames), backend, mode, "--device", device,
           "--repeats", str(repeats), "--warmup", str(warmup), "--threads", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    seconds, peak = json.loads(done.stdout.strip().splitlines()[-1])
    return seconds, peak


def bench_gsplat(case: Case, frames: int, device, repeats: int, warmup: int):
    """gsplat's 2D rasterization of the same Gaussians, or None when gsplat is not installed."""
    try:
        import gsplat  # noqa: F401
    except ImportError:
        return None
    return "installed, not wired: gsplat renders alpha-composited 3DGS-style splats, not PredGS sums"


def floors(case: Case, frames: int, bandwidth: float, exp_rate: float) -> tuple[float, float]:
    """(forward, forward+backward) lower bounds in seconds."""
    pixels = case.size * case.size
    per_gaussian = 5 + case.channels
    window = pixels if case.k is None else min(case.k * case.k, pixels)
    evals = frames * case.n * window
    fwd_bytes = 4 * frames * (case.n * per_gaussian + case.channels * pixels)
    bwd_bytes = 4 * frames * (case.n * per_gaussian * 2 + case.channels * pixels)  # inputs + grads, grad_out
    forward = max(fwd_bytes / bandwidth, evals / exp_rate)
    return forward, forward + max(bwd_bytes / bandwidth, evals / exp_rate)


# case A on a GPU (paper-size Human3.6M frames): frames per second, and the compiled backend over torch
GOALS = {"A": {"forward_frames_per_s": 300_000, "forward_backward_frames_per_s": 100_000, "speedup_over_torch": 20}}


def goal_lines(rows: list[dict], compiled: str) -> list[str]:
    """One line per goal of ``GOALS``: the measured value, the goal, met or not."""
    lines = []
    for key, goals in GOALS.items():
        mine = {r["backend"]: r for r in rows if r["case"] == key}
        if compiled not in mine:
            continue
        row = mine[compiled]
        for field in ("forward_frames_per_s", "forward_backward_frames_per_s"):
            met = "met" if row[field] >= goals[field] else "NOT met"
            lines.append(f"goal case {key} {compiled} {field.replace('_', ' ')}: {row[field]:,.0f} (goal >= "
                         f"{goals[field]:,}): {met}")
        if "torch" in mine:
            for mode in ("forward_s", "forward_backward_s"):
                speedup = mine["torch"][mode] / row[mode]
                met = "met" if speedup >= goals["speedup_over_torch"] else "NOT met"
                lines.append(f"goal case {key} {compiled} over torch, {mode[:-2].replace('_', '+')}: {speedup:.1f}x "
                             f"(goal >= {goals['speedup_over_torch']}x): {met}")
    return lines


def measure_bandwidth(device) -> float:
    x = torch.empty(256 * 1024 * 1024 // 4, device=device)
    y = torch.empty_like(x)
    seconds = timed(lambda: y.copy_(x), device, repeats=20, warmup=3)
    return 2 * x.numel() * 4 / seconds  # read + write


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cuda", "cpu"))
    p.add_argument("--backends", nargs="+", choices=("torch", "cpu", "cuda"),
                   help="default: torch and the device's compiled backend")
    p.add_argument("--repeats", type=int, help="timed calls per measurement (default 20 on a GPU, 3 on the CPU)")
    p.add_argument("--warmup", type=int, help="untimed calls first (default 3 on a GPU, 1 on the CPU)")
    p.add_argument("--cpu-frames", type=int, nargs="+", default=[4, 16],
                   help="frames per call on the CPU (the full cases take minutes with the torch backend)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    p.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    p.add_argument("--worker", nargs=4, metavar=("CASE", "FRAMES", "BACKEND", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    repeats = args.repeats or (20 if on_gpu else 3)
    warmup = args.warmup if args.warmup is not None else (3 if on_gpu else 1)
    if on_gpu and not torch.cuda.is_available():
        print("error: --device cuda, but torch sees no GPU", file=sys.stderr)
        return 2
    if args.worker:
        key, frames, backend, mode = args.worker
        print(json.dumps(measure(CASES[key], int(frames), backend, mode, device, repeats, warmup)))
        return 0
    backends = args.backends or ["torch", args.device]

    bandwidth = exp_rate = None
    report = {"device": torch.cuda.get_device_name(device) if on_gpu else "cpu", "threads": args.threads,
              "repeats": repeats, "warmup": warmup, "goals": GOALS, "rows": []}
    if on_gpu:
        from pdr.render import _cuda

        ext = _cuda.load_module()
        bandwidth = measure_bandwidth(device)
        exp_rate = ext.exp_throughput(4 * torch.cuda.get_device_properties(device).multi_processor_count * 8, 4096)
        report.update(bandwidth_bytes_per_s=bandwidth, evaluations_per_s=exp_rate)
        print(f"device: {torch.cuda.get_device_name(device)}; copy bandwidth {bandwidth / 1e9:.0f} GB/s; "
              f"Gaussian-pixel evaluations {exp_rate / 1e9:.0f} G/s; peak memory: torch.cuda.max_memory_allocated")
    else:
        print(f"device: CPU, {args.threads} threads; {', '.join(map(str, args.cpu_frames))} frames per call instead of "
              f"the case's; median of {repeats} calls after {warmup}; peak memory: growth of the peak resident set")

    print("\n| case | frames/call | backend | forward ms | forward frames/s | forward peak MB | fwd+bwd ms "
          "| fwd+bwd frames/s | fwd+bwd peak MB | floor fwd / fwd+bwd (ms) | time / floor (fwd, fwd+bwd) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for key in args.cases:
        case = CASES[key]
        for frames in [case.frames] if on_gpu else args.cpu_frames:
            results = {}
            for backend in backends:
                results[backend] = [measure_in_subprocess(key, frames, backend, mode, args.device, repeats, warmup,
                                                          args.threads) for mode in ("forward", "forward_backward")]
            floor = floors(case, frames, bandwidth, exp_rate) if bandwidth else None
            label = f"{case.name} N={case.n} K={case.k} C={case.channels}"
            for backend, ((fwd, fwd_peak), (both, both_peak)) in results.items():
                report["rows"].append({
                    "case": key, "frames": frames, "backend": backend, "forward_s": fwd, "forward_peak_bytes": fwd_peak,
                    "forward_backward_s": both, "forward_backward_peak_bytes": both_peak,
                    "forward_frames_per_s": frames / fwd, "forward_backward_frames_per_s": frames / both,
                    "floor_s": list(floor) if floor else None})
                floor_cells = ("n/a", "n/a")
                if floor:
                    floor_cells = (f"{floor[0] * 1e3:.3f} / {floor[1] * 1e3:.3f}",
                                   f"{fwd / floor[0]:.1f}, {both / floor[1]:.1f}")
                print(f"| {label} | {frames} | {backend} | {fwd * 1e3:.1f} | {frames / fwd:,.0f} | {fwd_peak / 2**20:.0f} | "
                      f"{both * 1e3:.1f} | {frames / both:,.0f} | {both_peak / 2**20:.0f} | {floor_cells[0]} | "
                      f"{floor_cells[1]} |")
            compiled = [b for b in results if b != "torch"]
            if "torch" in results and compiled:
                (t_fwd, _), (t_both, _) = results["torch"]
                (c_fwd, _), (c_both, _) = results[compiled[0]]
                print(f"| {label} | {frames} | {compiled[0]} speed-up | {t_fwd / c_fwd:.1f}x | | | {t_both / c_both:.1f}x "
                      "| | | | |")
        note = bench_gsplat(case, case.frames, device, repeats, warmup)
        if note:
            print(f"| {case.name} | | gsplat | {note} | | | | | | | |")
    if on_gpu:
        print()
        for line in goal_lines(report["rows"], args.device):
            print(line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
