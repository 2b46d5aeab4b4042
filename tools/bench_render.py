#!/usr/bin/env python
"""Frames per second of rasterize_gaussians: torch vs CUDA backend (and gsplat where installed).

    python tools/bench_render.py [--cases A B C] [--device cuda|cpu] [--repeats 20]

Cases (the issue's): A 256x256, N=400, K=51, C=3, 64 frames (Human3.6M-like);
B 128x128, N=400, K=51, C=1, 64 frames (KTH-like); C 32x32, N=300, K=15, C=2, 1024 frames
(TaxiBJ-like). On a GPU it also measures copy bandwidth and exp throughput and prints each
case's floor: max(bytes that must move / bandwidth, Gaussian-pixel evaluations / exp rate),
and measured time over that floor. Without a GPU it times the torch backend on the CPU for a
reduced number of frames (--cpu-frames) and says that the CUDA columns need a GPU.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass

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


def bench_backend(case: Case, frames: int, backend: str, device, repeats: int, warmup: int, sets: int = 3):
    inputs = [make_inputs(case, frames, device, seed) for seed in range(sets)]  # rotate: no cache-resident replay
    grad = torch.rand(frames, case.channels, case.size, case.size, device=device)
    state = {"i": 0}

    def forward():
        args = inputs[state["i"] % sets]
        state["i"] += 1
        with torch.no_grad():
            return rasterize_gaussians(*args, case.size, case.size, case.k, backend=backend)

    def forward_backward():
        args = inputs[state["i"] % sets]
        state["i"] += 1
        out = rasterize_gaussians(*args, case.size, case.size, case.k, backend=backend)
        torch.autograd.grad(out, args, grad)

    return timed(forward, device, repeats, warmup), timed(forward_backward, device, repeats, warmup)


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


def measure_bandwidth(device) -> float:
    x = torch.empty(256 * 1024 * 1024 // 4, device=device)
    y = torch.empty_like(x)
    seconds = timed(lambda: y.copy_(x), device, repeats=20, warmup=3)
    return 2 * x.numel() * 4 / seconds  # read + write


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cuda", "cpu"))
    p.add_argument("--backends", nargs="+", default=["torch", "cuda"], choices=("torch", "cuda"))
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--cpu-frames", type=int, default=4, help="frames per call on the CPU (the full cases take minutes)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda, but torch sees no GPU", file=sys.stderr)
        return 2

    bandwidth = exp_rate = None
    if device.type == "cuda":
        from pdr.render import _cuda

        ext = _cuda.load_extension()
        bandwidth = measure_bandwidth(device)
        exp_rate = ext.exp_throughput(4 * torch.cuda.get_device_properties(device).multi_processor_count * 8, 4096)
        print(f"device: {torch.cuda.get_device_name(device)}; copy bandwidth {bandwidth / 1e9:.0f} GB/s; "
              f"Gaussian-pixel evaluations {exp_rate / 1e9:.0f} G/s")
    else:
        print(f"device: CPU ({torch.get_num_threads()} threads); the CUDA backend needs a GPU: torch backend only, "
              f"{args.cpu_frames} frames per call instead of the case's")

    rows = []
    for key in args.cases:
        case = CASES[key]
        frames = case.frames if device.type == "cuda" else args.cpu_frames
        results = {}
        for backend in args.backends:
            if backend == "cuda" and device.type != "cuda":
                continue
            results[backend] = bench_backend(case, frames, backend, device, args.repeats, args.warmup)
        note = bench_gsplat(case, frames, device, args.repeats, args.warmup)
        floor = floors(case, frames, bandwidth, exp_rate) if bandwidth else None
        rows.append((case, frames, results, floor, note))

    print("\n| case | frames/call | backend | forward ms | forward frames/s | fwd+bwd ms | fwd+bwd frames/s "
          "| floor fwd / fwd+bwd (ms) | time / floor (fwd, fwd+bwd) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case, frames, results, floor, note in rows:
        for backend, (fwd, both) in results.items():
            floor_cells = ("n/a", "n/a")
            if floor:
                floor_cells = (f"{floor[0] * 1e3:.3f} / {floor[1] * 1e3:.3f}", f"{fwd / floor[0]:.1f}, {both / floor[1]:.1f}")
            print(f"| {case.name} N={case.n} K={case.k} C={case.channels} | {frames} | {backend} | {fwd * 1e3:.3f} | "
                  f"{frames / fwd:,.0f} | {both * 1e3:.3f} | {frames / both:,.0f} | {floor_cells[0]} | {floor_cells[1]} |")
        if "torch" in results and "cuda" in results:
            print(f"| {case.name} | | cuda speed-up | {results['torch'][0] / results['cuda'][0]:.1f}x | | "
                  f"{results['torch'][1] / results['cuda'][1]:.1f}x | | | |")
        if note:
            print(f"| {case.name} | | gsplat | {note} | | | | | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
