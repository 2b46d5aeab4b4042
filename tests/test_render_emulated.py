"""The CUDA kernels of csrc/predgsplat_kernels.cuh and their launch sequence, executed on the CPU by the CUDA
emulator (backend="cuda_emulated"), against the float64 torch backend: values and all four gradients, with the
blocks and threads of every launch in shuffled order and shared memory filled with NaN at every block's start;
the same forward bits and close gradients in every order; the edge cases; what the backend tells torch."""
import warnings

import pytest
import torch
from render_reference import NAMES, random_gaussians, rel_err, render_with_grads

from pdr.render import _cpu, _emulated, rasterize_gaussians

pytestmark = pytest.mark.skipif(_emulated.why_unbuildable() is not None,
                                reason=f"cannot build the emulator here: {_emulated.why_unbuildable()}")
TOLERANCE = 1e-5  # float32 kernels against float64: about 1e-6 is typical
ELEMENT_TOLERANCE = 1e-4  # largest error over the largest value: one wrong pixel or Gaussian shows


def assert_matches(got, want, label):
    assert got.shape == want.shape, label
    assert torch.isfinite(got).all(), f"{label}: values not written (NaN) or wrong"
    if want.numel() == 0 or want.abs().max() == 0:
        assert not got.any(), label
        return
    assert rel_err(got, want) < TOLERANCE, f"{label}: relative error {rel_err(got, want):.2e}"
    element = ((got.double() - want).abs().max() / want.abs().max()).item()
    assert element < ELEMENT_TOLERANCE, f"{label}: largest error {element:.2e} of the largest value"


def emulated(inputs, height, width, kernel_size, order=("shuffled", "shuffled"), seed=0, warps="interleaved",
             **kwargs):
    with _emulated.schedule(*order, seed=seed, warps=warps):
        return render_with_grads([t.float() for t in inputs], height, width, kernel_size, "cuda_emulated", **kwargs)


# (leading dims, N, C, H, W, K), Gaussians spread over 1.4x the image (some off it): C = 1, 3, 5 (a chunk of 8),
# 16, 17 (two chunks); K = 1, 5, 9, 15, 51, None; N = 0, 1, 300 (two batches), 2000 (eight); partial 16-pixel tiles.
CASES = [
    ((3,), 1, 1, 16, 16, 5),
    ((2,), 2000, 3, 32, 32, 15),
    ((2,), 50, 17, 20, 37, 9),
    ((2,), 40, 16, 24, 24, None),
    ((1,), 30, 1, 17, 13, 1),
    ((1,), 300, 5, 40, 33, 51),
    ((2, 3), 20, 3, 12, 9, 5),
    ((2,), 0, 3, 8, 8, 5),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "lead{}-N{}-C{}-{}x{}-K{}".format(*c))
def test_emulated_kernels_match_float64_torch(case):
    lead, n, channels, h, w, k = case
    inputs = random_gaussians(lead, n, channels, seed=sum(lead) + n + channels + h)
    ref, ref_grads = render_with_grads(inputs, h, w, k, "torch")
    out, grads = emulated(inputs, h, w, k, seed=n + channels)
    assert out.dtype == torch.float32 and out.shape == (*lead, channels, h, w)
    assert_matches(out, ref, "image")
    for name, got, want in zip(NAMES, grads, ref_grads):
        assert_matches(got, want, f"gradient of {name}")


SCHEDULES = [("forward", "interleaved"), ("reversed", "interleaved"), ("shuffled", "interleaved"),
             ("reversed", "greedy"), ("shuffled", "greedy")]


@pytest.mark.parametrize("case", [((2,), 50, 17, 20, 37, 9), ((1,), 300, 5, 40, 33, 51)],
                         ids=["C17-two-chunks", "N300-two-batches-K51"])
def test_every_order_gives_the_same_forward_bits_and_close_gradients(case):
    """Blocks and threads run forward, reversed and shuffled, all threads in rounds or one warp after the other:
    the forward has no atomics and must not change by a bit; the backward's atomics add in another order, which
    may change the last bits of a sum. Each schedule also matches the float64 torch backend."""
    lead, n, channels, h, w, k = case
    inputs = random_gaussians(lead, n, channels, seed=7)
    ref, ref_grads = render_with_grads(inputs, h, w, k, "torch")
    results = [emulated(inputs, h, w, k, order=(order, order), seed=5, warps=warps) for order, warps in SCHEDULES]
    for (out, grads), schedule in zip(results, SCHEDULES):
        assert_matches(out, ref, f"image, {schedule}")
        for name, got, want in zip(NAMES, grads, ref_grads):
            assert_matches(got, want, f"gradient of {name}, {schedule}")
    (out, grads), others = results[0], results[1:]
    for other_out, other_grads in others:
        assert torch.equal(other_out, out)
        for name, got, want in zip(NAMES, other_grads, grads):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6 * want.abs().max().item(), msg=name)


def test_non_finite_and_far_away_means_draw_nothing_and_get_zero_gradients():
    means, scales, rotations, amplitudes = random_gaussians((2,), 8, 2, spread=0.9, seed=8)
    bad = means.clone()
    bad[0, 1, 0] = float("nan")
    bad[1, 4, 1] = float("inf")
    bad[1, 2] = float("-inf")
    bad[0, 5] = torch.tensor([1e30, -1e30])  # far away: its window would overflow an int
    drawn = torch.ones(2, 8, 1, dtype=torch.float64)
    drawn[0, 1] = drawn[1, 4] = drawn[1, 2] = drawn[0, 5] = 0
    out, grads = emulated((bad, scales, rotations, amplitudes), 10, 9, 5)
    good = torch.where(drawn.bool(), means, torch.zeros_like(means))
    ref, ref_grads = render_with_grads((good, scales, rotations, amplitudes * drawn), 10, 9, 5, "torch")
    assert_matches(out, ref, "image")
    keep = drawn[..., 0].bool()
    for name, got, want in zip(NAMES, grads, ref_grads):
        assert torch.isfinite(got).all() and not got[~keep].any(), name
        assert_matches(got[keep], want[keep], f"gradient of {name}")


def test_amplitudes_without_gradients_and_non_contiguous_inputs():
    inputs = random_gaussians((2,), 30, 3, seed=3)
    needs = (True, True, True, False)
    ref, ref_grads = render_with_grads(inputs, 20, 18, 7, "torch", needs_grad=needs)
    out, grads = emulated(inputs, 20, 18, 7, needs_grad=needs)
    assert_matches(out, ref, "image")
    assert grads[3] is None
    for name, got, want in zip(NAMES[:3], grads, ref_grads):
        assert_matches(got, want, f"gradient of {name}")
    # the same Gaussians in tensors laid out otherwise: the same bits
    strided = [t.float().transpose(0, -1).contiguous().transpose(0, -1) for t in inputs]
    assert not strided[0].is_contiguous()
    again = rasterize_gaussians(*strided, 20, 18, 7, backend="cuda_emulated")
    assert torch.equal(again, out)


def test_the_backward_is_reported_to_torch_as_not_deterministic():
    """The CUDA backward adds with atomics: torch.use_deterministic_algorithms(True) raises (warn_only: warns)
    as for torch's own such operations; the forward, and the CPU backend's backward, are deterministic."""
    inputs = [t.float().requires_grad_() for t in random_gaussians((1,), 4, 1, seed=1)]
    was, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        torch.use_deterministic_algorithms(True)
        out = rasterize_gaussians(*inputs, 8, 8, 5, backend="cuda_emulated")
        with pytest.raises(RuntimeError, match="does not have a deterministic implementation"):
            out.sum().backward()
        if _cpu.why_unbuildable() is None:
            rasterize_gaussians(*inputs, 8, 8, 5, backend="cpu").sum().backward()
        torch.use_deterministic_algorithms(True, warn_only=True)
        with pytest.warns(UserWarning, match="does not have a deterministic implementation"):
            rasterize_gaussians(*inputs, 8, 8, 5, backend="cuda_emulated").sum().backward()
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn_only)


def test_float64_inputs_are_computed_in_float32_with_one_warning(monkeypatch):
    import pdr.render as render

    monkeypatch.setattr(render, "_warned_float64", set())
    inputs = random_gaussians((1,), 5, 2, seed=2)
    with pytest.warns(RuntimeWarning, match="computes in float32: float64 inputs are rendered with float32"):
        out = rasterize_gaussians(*inputs, 8, 8, 5, backend="cuda_emulated")
    assert out.dtype == torch.float64
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rasterize_gaussians(*inputs, 8, 8, 5, backend="cuda_emulated")


def test_the_entry_points_check_grad_out_and_the_image_size():
    kernels = _emulated.load_extension()
    means, scales, rotations, amplitudes = [t.float() for t in random_gaussians((2,), 3, 4, seed=0)]
    with pytest.raises(RuntimeError, match=r"grad_out must be \(F, C, H, W\) for amplitudes \(F, N, C\)"):
        kernels.backward(means, scales, rotations, amplitudes, torch.zeros(2, 3, 8, 8), 5, True)
    with pytest.raises(RuntimeError, match=r"grad_out must be \(F, C, H, W\)"):
        kernels.backward(means, scales, rotations, amplitudes, torch.zeros(1, 4, 8, 8), 5, True)
    with pytest.raises(RuntimeError, match=r"height and width must be in \[1, 2\^30\)"):
        kernels.forward(means, scales, rotations, amplitudes, 2**30, 4, 0)  # before allocating 2^30 rows
    with pytest.raises(RuntimeError, match=r"height and width must be in \[1, 2\^30\)"):
        kernels.backward(means, scales, rotations, amplitudes, torch.zeros(2, 4, 8, 0), 5, True)


@pytest.mark.parametrize("channels, shuffles", [(1, 9), (4, 16), (16, 31)])
def test_counted_operations_of_one_gaussian(channels, shuffles):
    """One Gaussian in the middle of one 16x16 tile, K = 5: what each kernel does, counted by the emulator (the
    basis of the counted-operation estimates in docs/renderer-tuning.md)."""
    means = torch.zeros(1, 1, 2)  # pixel centre (7.5, 7.5): window centre (8, 8), rows and columns 6..10
    inputs = [means, torch.full((1, 1, 2), 1.5), torch.zeros(1, 1), torch.ones(1, 1, channels)]
    leaves = [t.clone().requires_grad_() for t in inputs]
    _emulated.reset_counters()
    out = rasterize_gaussians(*leaves, 16, 16, 5, backend="cuda_emulated")
    forward = _emulated.counters()
    # the preprocessing (one block of 256 threads, one with a Gaussian: reads its 5 floats, writes its window of
    # 4 ints and conic of 5 floats), then one tile block: one batch, 2 barriers (in gather_batch);
    # one ballot per warp; thread 0 reads the window, conic and amplitudes; an exp per window pixel; every thread
    # writes its pixel's channels
    assert forward == dict(launches=2, blocks=2, threads=512, barriers=2, warp_shuffles=0, warp_votes=8, atomics=0,
                           expf=25, global_load_bytes=4 * (5 + 4 + 5 + channels),
                           global_store_bytes=4 * (9 + 256 * channels))
    _emulated.reset_counters()
    out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(0)))
    backward = _emulated.counters()
    # the preprocessing again, the tile block, the chain rule's block. One warp takes the Gaussian over its 25
    # pixels and sums its 5 + C values (padded to P = 8, 16, 32) with a butterfly of (P - 1) + (5 - log2 P)
    # shuffles; 5 + C lanes add the sums with an atomic each. Bytes: every thread stages its pixel's grad_out;
    # the chain rule reads 5 sums, 2 scales and the rotation and writes 5 gradients
    assert backward == dict(launches=3, blocks=3, threads=768, barriers=2, warp_shuffles=shuffles, warp_votes=8,
                            atomics=5 + channels, expf=25,
                            global_load_bytes=4 * (5 + 256 * channels + 4 + 5 + channels + 8),
                            global_store_bytes=4 * (9 + 5))
