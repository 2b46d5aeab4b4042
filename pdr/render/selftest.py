"""Self-test of a compiled rasterizer on a device, against the torch backend on the same device.

The ``cuda`` backend runs it on the first use of its module on each GPU (``_cuda.device_status``): a module
that cannot run there (e.g. built without the GPU's architecture) or that computes something else than the
torch backend is never used silently. It takes a few milliseconds on a GPU: a handful of small cases that
cover the kernels' paths (two channel chunks, two batches of Gaussians, partial tiles, no window, a window
of one pixel, windows at exact pixel boundaries, Gaussians off the image or with non-finite means, no
Gaussians, amplitudes without gradients), comparing values and all four gradients, checking that every output
element was written and that a repeated forward gives the same bits.

``verdict`` caches the result in a folder (beside the build), under a key that says what was tested where:
the module's sources and architectures, the device, and the versions of torch, CUDA and the driver.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ._torch import rasterize_torch

VALUE_TOLERANCE = 1e-4  # |got - want| / |want| over a whole tensor, float32 kernels against the torch backend
ELEMENT_TOLERANCE = 1e-3  # max |got - want| / max |want|: one wrong pixel or Gaussian in a large tensor
NAMES = ("means", "scales", "rotations", "amplitudes")


@dataclass(frozen=True)
class Case:
    name: str
    frames: int
    n: int
    channels: int
    height: int
    width: int
    kernel_size: int | None
    need_amplitudes: bool = True


CASES = (
    Case("two channel chunks (C=17), partial tiles", 2, 40, 17, 20, 37, 9),
    Case("two batches of Gaussians (N=300)", 1, 300, 3, 16, 16, 15),
    Case("no window (K=None)", 2, 20, 1, 24, 24, None),
    Case("a window of one pixel (K=1), partial tiles", 1, 30, 2, 17, 13, 1),
    Case("windows at exact pixel boundaries", 1, 24, 1, 12, 20, 3),
    Case("Gaussians off the image and with non-finite means", 2, 12, 3, 16, 16, 5),
    Case("no Gaussians", 2, 0, 3, 8, 8, 5),
    Case("amplitudes without gradients", 1, 20, 3, 16, 16, 7, need_amplitudes=False),
)


@dataclass
class SelfTest:
    """The outcome: passed, or what failed with its numbers."""

    passed: bool
    failures: list[str]
    seconds: float
    key: dict = field(default_factory=dict)
    cached: bool = False
    raised: bool = False  # the module raised (e.g. no kernel image for this device): not cached

    def summary(self) -> str:
        where = f" on {self.key['device']}" if "device" in self.key else ""
        if self.passed:
            return f"self-test passed{where}"
        return f"self-test failed{where}: " + "; ".join(self.failures)


def case_inputs(case: Case, device, seed: int = 0) -> list[Tensor]:
    """float32 means (F, N, 2), scales (F, N, 2), rotations (F, N), amplitudes (F, N, C) on ``device``."""
    g = torch.Generator().manual_seed(seed)
    f, n = case.frames, case.n
    means = (torch.rand(f, n, 2, generator=g) * 2 - 1) * 1.3  # some off the image
    scales = torch.rand(f, n, 2, generator=g) * 2.5 + 0.4
    rotations = (torch.rand(f, n, generator=g) * 2 - 1) * math.pi
    amplitudes = torch.randn(f, n, case.channels, generator=g)
    if case.name.startswith("windows at exact"):
        means[..., 0] = boundary_means(case.width, f * n, g).reshape(f, n)
        means[..., 1] = boundary_means(case.height, f * n, g).reshape(f, n)
    if case.name.startswith("Gaussians off"):
        means[0, 0] = torch.tensor([float("nan"), 0.0])
        means[0, 1] = torch.tensor([0.0, float("inf")])
        means[1, 2] = torch.tensor([-float("inf"), float("nan")])
        means[1, 3] = torch.tensor([1e30, -1e30])
        means[1, 4] = torch.tensor([3.0, -2.5])
    return [t.to(device) for t in (means, scales, rotations, amplitudes)]


def boundary_means(size: int, count: int, generator: torch.Generator) -> Tensor:
    """``count`` float32 normalized coordinates within three float steps of a window boundary of an image of
    ``size`` pixels (where ``px + 0.5`` is an integer): there the window depends on the last bits of ``px``."""
    boundaries = ((torch.arange(size + 1, dtype=torch.float64) - 0.5) / (size / 2) - 1).to(torch.float32)
    steps = torch.arange(-3, 4, dtype=torch.int32)
    near = (boundaries.view(torch.int32)[:, None] + steps).view(torch.float32).flatten()
    return near[torch.randint(0, near.numel(), (count,), generator=generator)]


def _compare(label: str, got: Tensor, want: Tensor) -> str | None:
    got, want = got.double(), want.double()
    if got.shape != want.shape:
        return f"{label}: shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    if not torch.isfinite(got).all():
        bad = int((~torch.isfinite(got)).sum())
        return f"{label}: {bad} of {got.numel()} values are not finite (not written, or wrong)"
    if want.numel() == 0:
        return None
    if not want.abs().max() > 0:
        return None if not got.abs().max() > 0 else f"{label}: max |value| {got.abs().max():.3g}, expected zeros"
    norm = ((got - want).norm() / want.norm()).item()
    element = ((got - want).abs().max() / want.abs().max()).item()
    if norm > VALUE_TOLERANCE or element > ELEMENT_TOLERANCE:
        return (f"{label}: relative error {norm:.2e} (tolerance {VALUE_TOLERANCE:.0e}), largest error "
                f"{element:.2e} of the largest value (tolerance {ELEMENT_TOLERANCE:.0e})")
    return None


def _poison(shape, device) -> None:
    """Fill a block of the allocator's memory of this size with NaN and free it: an output element a kernel
    does not write is likely to stay NaN."""
    torch.full((max(1, math.prod(shape)),), float("nan"), device=device)


def _run_case(kernels, case: Case, device) -> list[str]:
    inputs = case_inputs(case, device, seed=case.frames + case.n + case.channels)
    k = 0 if case.kernel_size is None else case.kernel_size
    out_shape = (case.frames, case.channels, case.height, case.width)
    _poison(out_shape, device)
    out = kernels.forward(*inputs, case.height, case.width, k)
    leaves = [t.clone().requires_grad_(i < 3 or case.need_amplitudes) for i, t in enumerate(inputs)]
    ref = rasterize_torch(*leaves, case.height, case.width, case.kernel_size)
    failures = [_compare(f"{case.name}: image", out, ref.detach())]
    if failures[0] is None and case.n:
        again = kernels.forward(*inputs, case.height, case.width, k)
        if not torch.equal(out, again):
            failures.append(f"{case.name}: a repeated forward differs in {int((out != again).sum())} values")
    grad_out = torch.randn(out_shape, generator=torch.Generator().manual_seed(1)).to(device)
    ref.backward(grad_out)
    for shape in (t.shape for t in inputs):
        _poison(shape, device)
    grads = kernels.backward(*inputs, grad_out, k, case.need_amplitudes)
    for name, got, leaf in zip(NAMES, grads, leaves):
        if leaf.requires_grad:
            failures.append(_compare(f"{case.name}: gradient of {name}", got, leaf.grad))
    return [f for f in failures if f is not None]


@contextlib.contextmanager
def _plain_mode(device):
    """No autocast, no inference mode, gradients on, torch.use_deterministic_algorithms off (the torch backend's
    index_add is not deterministic on a GPU), whatever the caller had; restored afterwards."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device.type, enabled=False):
            yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def run_self_test(kernels, device) -> SelfTest:
    """Every case of ``CASES`` through ``kernels`` (an ``_extension.Kernels``, or anything with its ``forward``
    and ``backward``) on ``device``, against the torch backend there."""
    device = torch.device(device)
    start = time.perf_counter()
    try:
        with _plain_mode(device):
            failures = [f for case in CASES for f in _run_case(kernels, case, device)]
            if device.type == "cuda":
                torch.cuda.synchronize(device)
    except Exception as exc:  # a module that cannot run here: that is the verdict
        return SelfTest(False, [f"it raised {type(exc).__name__}: {str(exc).strip().splitlines()[0]}"],
                        time.perf_counter() - start, raised=True)
    return SelfTest(not failures, failures, time.perf_counter() - start)


def verdict(kernels, device, key: dict, folder: Path) -> SelfTest:
    """The cached result for ``key`` in ``folder``, or the result of ``run_self_test``, cached there unless the
    module raised (that may not last: e.g. memory ran out)."""
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(folder) / f"{name}.json"
    if path.is_file():
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            saved = json.loads(path.read_text())
            if saved["key"] == key:
                return SelfTest(saved["passed"], saved["failures"], saved["seconds"], key, cached=True)
    result = run_self_test(kernels, device)
    result.key = key
    if not result.raised:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps({**asdict(result), "cached": False}, indent=1))
            os.replace(partial, path)
    return result


def cached_verdicts(folder: Path) -> list[SelfTest]:
    """Every result saved in ``folder``, oldest first."""
    results = []
    for path in sorted(Path(folder).glob("*.json"), key=lambda p: p.stat().st_mtime):
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            saved = json.loads(path.read_text())
            results.append(SelfTest(saved["passed"], saved["failures"], saved["seconds"], saved["key"], cached=True))
    return results
