"""The C++ CPU backend against the float64 torch backend and the definition's own loop, and the behaviour
every CPU backend shares: no Gaussians, non-finite means, double backward, backend selection."""
import os
import shutil
import warnings

import pytest
import torch
from render_reference import NAMES, flatten_frames, loop_render, random_gaussians, rel_err, render_with_grads

import pdr.render as render
from pdr.render import _cpu, _cuda, _extension, rasterize_gaussians

BUILDABLE = _cpu.why_unbuildable() is None
needs_cpu_extension = pytest.mark.skipif(not BUILDABLE, reason=f"needs a C++ compiler and ninja: {_cpu.why_unbuildable()}")
CPU_BACKENDS = ["torch", pytest.param("cpu", marks=needs_cpu_extension)]


# (leading dims, N, C, H, W, K): every K and C of the CUDA tests, partial 16-pixel tiles, windows larger than
# the image, Gaussians off the image (spread 1.4), leading dimensions, N = 0 and N = 2000.
CASES = [
    ((3,), 1, 1, 16, 16, 5),
    ((2,), 2000, 3, 32, 32, 15),
    ((4,), 50, 17, 20, 37, 9),
    ((2,), 40, 2, 24, 24, None),
    ((1,), 30, 1, 17, 13, 1),
    ((2,), 60, 5, 40, 33, 51),
    ((2, 3), 20, 3, 12, 9, 5),
    ((2,), 0, 3, 8, 8, 5),
]


@needs_cpu_extension
@pytest.mark.parametrize("case", CASES, ids=lambda c: "lead{}-N{}-C{}-{}x{}-K{}".format(*c))
def test_cpu_matches_float64_torch_values_and_gradients(case):
    lead, n, channels, h, w, k = case
    inputs = random_gaussians(lead, n, channels, seed=sum(lead) + n + channels + h)
    ref, ref_grads = render_with_grads(inputs, h, w, k, "torch")
    out, grads = render_with_grads(inputs, h, w, k, "cpu")
    assert out.shape == (*lead, channels, h, w) and out.dtype == torch.float64
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    for name, got, want in zip(NAMES, grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11, msg=name)
    out32, grads32 = render_with_grads([t.float() for t in inputs], h, w, k, "cpu")
    assert out32.dtype == torch.float32
    if n:
        assert rel_err(out32, ref) < 1e-5
        for name, got, want in zip(NAMES, grads32, ref_grads):
            assert rel_err(got, want) < 1e-5, name
    else:
        assert not out32.any() and not any(g.any() for g in grads32)


@needs_cpu_extension
@pytest.mark.parametrize("lead,n,channels,height,width,kernel_size", [
    ((2,), 5, 1, 9, 11, 5),
    ((1,), 4, 3, 8, 8, None),
    ((1,), 6, 17, 7, 10, 3),
    ((1,), 7, 2, 12, 9, 25),
])
def test_cpu_matches_the_definition(lead, n, channels, height, width, kernel_size):
    inputs = random_gaussians(lead, n, channels, seed=n * 5 + channels)
    out = rasterize_gaussians(*inputs, height, width, kernel_size, backend="cpu")
    ref = loop_render(*flatten_frames(lead, *inputs), height, width, kernel_size)
    torch.testing.assert_close(out, ref.reshape(out.shape), rtol=1e-10, atol=1e-12)


@needs_cpu_extension
def test_cpu_is_deterministic_for_any_number_of_threads():
    inputs = random_gaussians((3,), 300, 3, dtype=torch.float32, seed=4)
    threads = torch.get_num_threads()
    results = []
    try:
        for n_threads in (1, 2, 3):
            torch.set_num_threads(n_threads)
            results.append(render_with_grads(inputs, 40, 33, 15, "cpu"))
    finally:
        torch.set_num_threads(threads)
    first_out, first_grads = results[0]
    for out, grads in results[1:]:
        assert torch.equal(out, first_out)
        assert all(torch.equal(g, f) for g, f in zip(grads, first_grads))


# ------------------------------------------------------------------- every CPU backend alike


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_half_precision_inputs_are_computed_in_float32(backend):
    means, scales, rotations, amplitudes = random_gaussians((2,), 10, 3, dtype=torch.float32, seed=6)
    out = rasterize_gaussians(means, scales, rotations, amplitudes.to(torch.bfloat16), 8, 8, 5, backend=backend)
    assert out.dtype == torch.bfloat16
    ref = rasterize_gaussians(means, scales, rotations, amplitudes.to(torch.bfloat16).float(), 8, 8, 5, backend="torch")
    torch.testing.assert_close(out.float(), ref, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("lead", [(2,), (2, 0), ()])
def test_no_gaussians_render_zeros(backend, lead):
    means, scales, rotations, amplitudes = random_gaussians(lead, 0, 3, seed=0)
    out, grads = render_with_grads((means, scales, rotations, amplitudes), 6, 7, 5, backend)
    assert out.shape == (*lead, 3, 6, 7) and not out.any()
    assert [g.shape for g in grads] == [t.shape for t in (means, scales, rotations, amplitudes)]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("kernel_size", [5, None])
def test_a_gaussian_with_a_non_finite_mean_draws_nothing(backend, kernel_size):
    means, scales, rotations, amplitudes = random_gaussians((2,), 6, 2, spread=0.9, seed=8)
    bad = means.clone()
    bad[0, 1, 0] = float("nan")
    bad[1, 4, 1] = float("inf")
    bad[1, 2] = float("-inf")
    drawn = torch.ones(2, 6, 1, dtype=torch.float64)
    drawn[0, 1] = drawn[1, 4] = drawn[1, 2] = 0
    out, grads = render_with_grads((bad, scales, rotations, amplitudes), 10, 9, kernel_size, backend)
    # the same image and gradients as with those Gaussians' amplitudes set to zero (and finite means)
    ref, ref_grads = render_with_grads((means, scales, rotations, amplitudes * drawn), 10, 9, kernel_size, "torch")
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    assert torch.isfinite(out).all()
    for name, got, want in zip(NAMES, grads, ref_grads):
        assert torch.isfinite(got).all(), name
        keep = drawn[..., 0].bool()
        torch.testing.assert_close(got[keep], want[keep], rtol=1e-9, atol=1e-11, msg=name)
        assert not got[~keep].any(), name


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("kernel_size", [5, None])
def test_gradcheck_all_inputs(backend, kernel_size):
    inputs = [t.clone().requires_grad_() for t in random_gaussians((2,), 3, 2, spread=0.8, seed=11)]
    assert torch.autograd.gradcheck(lambda m, s, r, a: rasterize_gaussians(m, s, r, a, 7, 6, kernel_size, backend=backend),
                                    inputs, eps=1e-6, atol=1e-6, fast_mode=True)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_double_backward_is_refused(backend):
    inputs = [t.clone().requires_grad_() for t in random_gaussians((1,), 3, 1, seed=2)]
    out = rasterize_gaussians(*inputs, 6, 6, 5, backend=backend)
    (grad_means,) = torch.autograd.grad(out.square().sum(), inputs[0], create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad_means.sum().backward()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_kernel_size_is_bounded_by_twice_the_frame(backend):
    inputs = random_gaussians((1,), 3, 1, seed=2)
    rasterize_gaussians(*inputs, 6, 8, 17, backend=backend)  # 2 * 8 + 1: the largest that means something
    with pytest.raises(ValueError, match=r"kernel_size must be at most 2 \* max\(height, width\) \+ 1 = 17"):
        rasterize_gaussians(*inputs, 6, 8, 19, backend=backend)
    with pytest.raises(ValueError, match="kernel_size must be at most"):
        rasterize_gaussians(*inputs, 6, 8, 2**33 + 1, backend=backend)


def test_scales_on_a_gpu_are_checked_without_reading_them_back(monkeypatch):
    """Tensors that say they are on a GPU: any read of a value back to the host fails this test."""
    from pdr.render import _checks

    inputs = random_gaussians((2,), 3, 1, seed=0)
    queued = []
    monkeypatch.delenv("PDR_RENDER_DEBUG", raising=False)
    monkeypatch.setattr(torch, "_assert_async", lambda cond, message: queued.append((cond.clone(), message)))
    monkeypatch.setattr(torch.Tensor, "device", property(lambda self: torch.device("cuda", 0)))
    for read_back in ("__bool__", "item", "tolist"):
        monkeypatch.setattr(torch.Tensor, read_back, lambda self, *a, name=read_back: pytest.fail(f"{name}: host sync"))
    assert _checks.check_gaussians(*inputs) == (2,)
    inputs[1][0, 0, 0] = -1.0
    _checks.check_gaussians(*inputs)
    monkeypatch.undo()
    assert [(bool(c), m) for c, m in queued] == [(True, f"pdr.render: {_checks.SCALES_MESSAGE}"),
                                                 (False, f"pdr.render: {_checks.SCALES_MESSAGE}")]
    monkeypatch.setenv("PDR_RENDER_DEBUG", "1")  # the full check, with a clear error
    monkeypatch.setattr(torch.Tensor, "device", property(lambda self: torch.device("cuda", 0)))
    with pytest.raises(ValueError, match="scales must be finite and > 0"):
        _checks.check_gaussians(*inputs)


# ------------------------------------------------------------------- building and choosing


def test_auto_picks_the_cpu_backend_for_cpu_tensors(monkeypatch):
    monkeypatch.setattr(render, "_warned_fallback", set())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert render._resolve_backend("auto", torch.device("cpu")) == ("cpu" if BUILDABLE else "torch")


@pytest.mark.parametrize("kind", ["cpu", "cuda"])
def test_without_an_extension_auto_falls_back_once_and_explicit_choice_fails(monkeypatch, kind):
    device = torch.device(kind)  # only the device's kind matters here: no GPU needed
    monkeypatch.setattr(_cpu if kind == "cpu" else _cuda, "extension_status", lambda: (False, "simulated failure"))
    monkeypatch.setattr(render, "_warned_fallback", set())
    with pytest.raises(RuntimeError, match=f"backend='{kind}' is not available: simulated failure"):
        render._resolve_backend(kind, device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert render._resolve_backend("auto", device) == "torch"
        assert render._resolve_backend("auto", device) == "torch"
    fallbacks = [w for w in caught if "falling back to the torch backend" in str(w.message)]
    assert len(fallbacks) == 1 and f"{kind.upper()} rasterizer" in str(fallbacks[0].message)
    with pytest.raises(ValueError, match=f"backend='{kind}' needs tensors on a {kind.upper()} device"):
        render._resolve_backend(kind, torch.device("meta"))


def test_an_ahead_of_time_module_older_than_its_sources_is_reported(monkeypatch, tmp_path):
    built = tmp_path / "_C_cpu.so"
    built.write_bytes(b"")
    os.utime(built, (0, 0))
    fake = type("Module", (), {"__file__": str(built)})
    monkeypatch.setattr(_extension.importlib, "import_module", lambda name: fake)
    with pytest.warns(RuntimeWarning, match=r"pdr\._C_cpu .* is older than predgsplat_cpu\.cpp"):
        assert _extension.import_ahead_of_time("pdr._C_cpu", _cpu.FILES) is fake
    os.utime(built, None)  # now newer than every source: silent
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _extension.import_ahead_of_time("pdr._C_cpu", _cpu.FILES) is fake


@pytest.mark.parametrize("module", [_cpu, _cuda], ids=["cpu", "cuda"])
def test_extension_status_never_raises(monkeypatch, module):
    monkeypatch.setattr(module, "_status", None)
    monkeypatch.setattr(module, "load_extension", lambda: (_ for _ in ()).throw(RuntimeError("build failed: boom")))
    assert module.extension_status() == (False, "build failed: boom")


@needs_cpu_extension
def test_one_build_serves_every_copy_of_the_same_sources(monkeypatch, tmp_path):
    """A copy of csrc/ elsewhere (an installed package, another checkout) loads the library built from this one
    without building; a changed source gets a build of its own."""
    def load():
        return _extension.load_library(_cpu.EXTENSION_NAME, _cpu.SOURCES, _cpu.FILES, False, "CPU rasterizer",
                                       _cpu.why_unbuildable, extra_cflags=_cpu.compile_flags())

    built = load()
    copy = tmp_path / "csrc"
    shutil.copytree(_extension.source_directory(), copy)
    monkeypatch.setattr(_extension, "source_directory", lambda: copy)
    monkeypatch.setattr(_extension, "build", lambda *args, **kwargs: pytest.fail("built again"))
    assert load() == built
    key = _extension.content_key(_cpu.FILES, sorted({"extra_cflags": _cpu.compile_flags()}.items()))
    assert built.parent.name == key
    (copy / "predgsplat_math.h").write_text((copy / "predgsplat_math.h").read_text() + "\n// changed\n")
    assert _extension.content_key(_cpu.FILES, sorted({"extra_cflags": _cpu.compile_flags()}.items())) != key


def test_an_ahead_of_time_module_that_records_its_sources_is_checked_by_content(monkeypatch, tmp_path):
    built = tmp_path / "_C_cpu.so"
    built.write_bytes(b"")
    os.utime(built, (0, 0))  # older than the sources, as after a wheel's install: not a reason to warn
    fake = type("Module", (), {"__file__": str(built), "sources_digest": _extension.sources_digest(_cpu.FILES)})
    monkeypatch.setattr(_extension.importlib, "import_module", lambda name: fake)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _extension.import_ahead_of_time("pdr._C_cpu", _cpu.FILES) is fake
    fake.sources_digest = "0" * 16
    with pytest.warns(RuntimeWarning, match=r"pdr\._C_cpu .* was built from other sources than predgsplat_cpu\.cpp"):
        assert _extension.import_ahead_of_time("pdr._C_cpu", _cpu.FILES) is fake
