#!/usr/bin/env python
"""Operations the CUDA kernels perform per frame, counted by the CUDA emulator (docs/renderer-emulator.md).

    python tools/count_kernel_ops.py [--cases A B C] [--channels 16 17]

Runs one frame of each case of tools/bench_render.py (the counts grow in proportion to the frames) through
backend="cuda_emulated" and prints, for the forward and for the backward (all of their kernels): blocks,
completed barriers, warp shuffles and votes (per warp instruction), atomics and exps (per thread), and the bytes
the threads read from and write to global memory (through __ldg and __stwb; not DRAM traffic: what many blocks
read, the Gaussians, is served mostly by the L2 cache). --channels replaces each case's C, to show what a
channel count costs (C > 16 takes a second chunk of channels). The counts say what a change of the kernels
saves before a GPU measures it; the emulator's time says nothing.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from bench_render import CASES, make_inputs

from pdr.render import _emulated, rasterize_gaussians

COLUMNS = ("blocks", "barriers", "warp_shuffles", "warp_votes", "atomics", "expf", "global_load_bytes",
           "global_store_bytes")


def count(case, seed: int = 0) -> tuple[dict, dict, float]:
    """(forward counts, backward counts, seconds of emulation) of one frame of ``case``."""
    inputs = make_inputs(case, 1, "cpu", seed)
    start = time.perf_counter()
    _emulated.reset_counters()
    out = rasterize_gaussians(*inputs, case.size, case.size, case.k, backend="cuda_emulated")
    forward = _emulated.counters()
    _emulated.reset_counters()
    out.backward(torch.rand(out.shape, generator=torch.Generator().manual_seed(seed)))
    return forward, _emulated.counters(), time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--channels", nargs="+", type=int, help="run each case with these channel counts instead")
    args = p.parse_args(argv)
    reason = _emulated.why_unbuildable()
    if reason:
        print(f"cannot build the emulated kernels: {reason}")
        return 1
    print("| case | C | pass | " + " | ".join(COLUMNS) + " |")
    print("|---|---|---|" + "---|" * len(COLUMNS))
    for key in args.cases:
        for channels in args.channels or [CASES[key].channels]:
            case = dataclasses.replace(CASES[key], channels=channels)
            forward, backward, seconds = count(case)
            for name, counts in (("forward", forward), ("backward", backward)):
                print(f"| {key} {case.size}x{case.size} N={case.n} K={case.k} | {channels} | {name} | "
                      + " | ".join(f"{counts[c]:,}" for c in COLUMNS) + " |")
            print(f"<!-- case {key}, C={channels}: {seconds:.1f} s of emulation -->")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
