"""The CUDA backend: it compiles wherever nvcc is (CI) and records what it was built from and for, its build
covers Volta to Hopper by default, it matches the torch backend and passes its self-test wherever a GPU is, and
its backward formulas are checked on the CPU by a line-by-line mirror of the kernel's math. (The kernels
themselves run on the CPU through the emulator: tests/test_render_emulated.py.)"""
import json
import math
import os
import subprocess
import sys

import pytest
import torch

import pdr.render as render
from pdr.render import _cuda, _extension, rasterize_gaussians, selftest
from pdr.render._torch import conic

GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.skipif(_cuda.why_unbuildable() is not None, reason=f"cannot build here: {_cuda.why_unbuildable()}")
def test_extension_compiles_and_records_its_sources_and_architectures(monkeypatch):
    """CI has nvcc but no GPU: a kernel that does not compile fails here (built for one architecture, the oldest
    the toolkit supports, to keep CI short)."""
    monkeypatch.setattr(_cuda, "_raw_module", None)
    monkeypatch.setattr(_cuda, "_module", None)
    monkeypatch.setattr(_cuda, "_status", None)
    oldest = min(_cuda.toolkit_archs() or {"7.5"}, key=float)
    module = _cuda.load_module(archs=oldest)
    assert hasattr(module, "forward") and hasattr(module, "backward") and hasattr(module, "exp_throughput")
    assert _cuda.extension_status() == (True, "")
    described = _cuda.module_description()
    assert described["cuda_archs"] == oldest and described["built"] == "on first use"
    assert described["sources_digest"] == _extension.sources_digest(_cuda.FILES) and not described["stale"]


def test_the_default_architectures_are_volta_to_hopper_with_ptx(monkeypatch):
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    assert _cuda.arch_list(supported={"7.0", "7.5", "8.0", "8.6", "8.9", "9.0", "10.0"}) == "7.0;7.5;8.0;8.6;8.9;9.0+PTX"
    # a toolkit that dropped Volta (CUDA 13)
    assert _cuda.arch_list(supported={"7.5", "8.0", "8.6", "8.9", "9.0", "12.0"}) == "7.5;8.0;8.6;8.9;9.0+PTX"
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    assert _cuda.arch_list(supported={"7.5", "8.0", "9.0"}) == "8.0;9.0"  # the user's choice
    assert _cuda.arch_list("9.0", supported={"7.5", "8.0", "9.0"}) == "9.0"  # --arch


@pytest.mark.parametrize("given", [None, "8.0;9.0+PTX"])
def test_setup_builds_pdr_C_for_the_architecture_list_and_records_it(repo, given):
    """PDR_BUILD_CUDA=1 pip install: without TORCH_CUDA_ARCH_LIST (and without a GPU) torch's build helper has no
    architectures to build for; setup.py gives it the default list and records it in the module with the digest
    of the sources (the build itself is not run here)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_CUDA_ARCH_LIST", "PDR_BUILD_EXTENSIONS")}
    env.update(PDR_BUILD_CUDA="1", **({"TORCH_CUDA_ARCH_LIST": given} if given else {}))
    script = ("import json, os, runpy, setuptools\n"
              "setuptools.setup = lambda **kw: print(json.dumps({'archs': os.environ['TORCH_CUDA_ARCH_LIST'], "
              "'modules': {e.name: dict(e.define_macros) for e in kw['ext_modules']}}))\n"
              "runpy.run_path('setup.py')\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    declared = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = given or _cuda.arch_list()
    assert declared["archs"] == expected
    assert declared["modules"]["pdr._C"] == {"PREDGSPLAT_SOURCES_DIGEST": f'"{_extension.sources_digest(_cuda.FILES)}"',
                                            "PREDGSPLAT_CUDA_ARCHS": f'"{expected}"'}


def kernel_backward_mirror(means, scales, rotations, amplitudes, grad_out, kernel_size):
    """The kernel's backward, written with torch ops in float64: per-pixel shares of d(px, py, a, b, c)
    and d(amplitudes), summed per Gaussian, then the chain rule of geometry_chain_kernel."""
    frames, n, channels = amplitudes.shape
    height, width = grad_out.shape[-2:]
    px = (means[..., 0] + 1) * (width / 2) - 0.5
    py = (means[..., 1] + 1) * (height / 2) - 0.5
    a, b, c = conic(scales, rotations)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=means.dtype), torch.arange(width, dtype=means.dtype),
                            indexing="ij")
    dx = xs - px[..., None, None]  # (F, N, H, W)
    dy = ys - py[..., None, None]
    if kernel_size is None:
        inside = torch.ones_like(dx, dtype=torch.bool)
    else:
        r = kernel_size // 2
        cx, cy = torch.floor(px + 0.5), torch.floor(py + 0.5)
        inside = ((xs - cx[..., None, None]).abs() <= r) & ((ys - cy[..., None, None]).abs() <= r)
    q = a[..., None, None] * dx * dx + 2 * b[..., None, None] * dx * dy + c[..., None, None] * dy * dy
    w = torch.exp(-0.5 * q) * inside
    d_w = torch.einsum("fchw,fnc->fnhw", grad_out, amplitudes)
    d_q = -0.5 * w * d_w
    d_a, d_b, d_c = (d_q * dx * dx).sum((-2, -1)), (d_q * 2 * dx * dy).sum((-2, -1)), (d_q * dy * dy).sum((-2, -1))
    d_px = (-d_q * 2 * (a[..., None, None] * dx + b[..., None, None] * dy)).sum((-2, -1))
    d_py = (-d_q * 2 * (b[..., None, None] * dx + c[..., None, None] * dy)).sum((-2, -1))
    d_amp = torch.einsum("fnhw,fchw->fnc", w, grad_out)
    # geometry_chain_kernel
    s, co = torch.sin(rotations), torch.cos(rotations)
    ix, iy = scales[..., 0] ** -2, scales[..., 1] ** -2
    d_ix = d_a * co * co + d_b * co * s + d_c * s * s
    d_iy = d_a * s * s - d_b * co * s + d_c * co * co
    d_means = torch.stack([d_px * width / 2, d_py * height / 2], -1)
    d_scales = torch.stack([d_ix * (-2 * ix / scales[..., 0]), d_iy * (-2 * iy / scales[..., 1])], -1)
    d_rot = d_a * 2 * co * s * (iy - ix) + d_b * (co * co - s * s) * (ix - iy) + d_c * 2 * co * s * (ix - iy)
    return d_means, d_scales, d_rot, d_amp


@pytest.mark.parametrize("kernel_size", [7, None])
def test_kernel_backward_formulas_match_autograd(kernel_size):
    g = torch.Generator().manual_seed(4)
    f, n, ch, h, w = 2, 6, 3, 12, 10
    means = (torch.rand(f, n, 2, generator=g, dtype=torch.float64) * 2 - 1) * 1.2
    scales = torch.rand(f, n, 2, generator=g, dtype=torch.float64) * 2 + 0.4
    rotations = (torch.rand(f, n, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    amplitudes = torch.randn(f, n, ch, generator=g, dtype=torch.float64)
    grad_out = torch.randn(f, ch, h, w, generator=g, dtype=torch.float64)
    inputs = [t.clone().requires_grad_() for t in (means, scales, rotations, amplitudes)]
    rasterize_gaussians(*inputs, h, w, kernel_size, backend="torch").backward(grad_out)
    mirror = kernel_backward_mirror(means, scales, rotations, amplitudes, grad_out, kernel_size)
    for name, got, ref in zip(("means", "scales", "rotations", "amplitudes"), mirror, inputs):
        torch.testing.assert_close(got, ref.grad, rtol=1e-9, atol=1e-10, msg=name)


# ----------------------------------------------------------------------------------- on a GPU

CASES = [
    # (frames, N, C, H, W, K)
    (3, 1, 1, 16, 16, 5),
    (2, 2000, 3, 32, 32, 15),
    (4, 50, 17, 20, 37, 9),
    (2, 40, 2, 24, 24, None),
    (1, 30, 1, 17, 13, 1),
    (5, 400, 3, 64, 64, 51),
]


def random_inputs(frames, n, channels, device, seed):
    g = torch.Generator(device="cpu").manual_seed(seed)
    means = (torch.rand(frames, n, 2, generator=g) * 2 - 1) * 1.3  # some off the image
    scales = torch.rand(frames, n, 2, generator=g) * 3 + 0.3
    rotations = (torch.rand(frames, n, generator=g) * 2 - 1) * math.pi
    amplitudes = torch.randn(frames, n, channels, generator=g)
    return [t.to(device) for t in (means, scales, rotations, amplitudes)]


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


@GPU
@pytest.mark.parametrize("case", CASES)
def test_cuda_matches_torch_values_and_gradients(case):
    frames, n, channels, h, w, k = case
    inputs = random_inputs(frames, n, channels, "cuda", seed=sum(case[:5]))
    ref_inputs = [t.detach().cpu().double().requires_grad_() for t in inputs]
    cuda_inputs = [t.detach().clone().requires_grad_() for t in inputs]
    torch.empty(frames * channels * h * w * 4, device="cuda").fill_(float("nan"))  # poison the allocator's blocks
    out = rasterize_gaussians(*cuda_inputs, h, w, k, backend="cuda")
    ref = rasterize_gaussians(*ref_inputs, h, w, k, backend="torch")
    assert torch.isfinite(out).all(), "an output pixel was not written"
    assert rel_err(out.cpu(), ref) < 1e-4
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out)
    out.backward(grad_out)
    ref.backward(grad_out.cpu().double())
    for name, got, want in zip(("means", "scales", "rotations", "amplitudes"), cuda_inputs, ref_inputs):
        assert rel_err(got.grad.cpu(), want.grad) < 1e-4, name


@GPU
def test_cuda_leading_dims_half_inputs_and_repeatability():
    means, scales, rotations, amplitudes = random_inputs(6, 100, 3, "cuda", seed=9)
    lead = [t.reshape(2, 3, *t.shape[1:]) for t in (means, scales, rotations, amplitudes)]
    out = rasterize_gaussians(*lead, 32, 32, 15, backend="cuda")
    assert out.shape == (2, 3, 3, 32, 32)
    again = rasterize_gaussians(*lead, 32, 32, 15, backend="cuda")
    assert torch.equal(out, again)  # the forward has no atomics: bitwise repeatable
    for dtype in (torch.float16, torch.bfloat16):
        half = rasterize_gaussians(*lead[:3], lead[3].to(dtype), 32, 32, 15, backend="cuda")
        assert half.dtype == dtype
        assert rel_err(half.float(), out) < 1e-2


@GPU
def test_the_self_test_passes_on_this_gpu_and_is_kept():
    device = torch.device("cuda", torch.cuda.current_device())
    ok, reason, wrong = _cuda.device_status(device)
    assert ok and not wrong, reason
    key = _cuda.self_test_key(device)
    assert any(v.key == key and v.passed for v in selftest.cached_verdicts(_cuda.self_test_folder()))


@GPU
def test_auto_picks_cuda_for_cuda_tensors():
    inputs = random_inputs(2, 10, 1, "cuda", seed=3)
    ok, reason = _cuda.extension_status()
    assert ok, reason
    assert render._resolve_backend("auto", inputs[0].device) == "cuda"
