"""The torch backend of rasterize_gaussians against a slow, obviously-correct loop."""
import math
import weakref

import pytest
import torch
from render_reference import flatten_frames, loop_render, random_gaussians
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from pdr.render import rasterize_gaussians


@pytest.mark.parametrize(
    "lead,n,channels,height,width,kernel_size",
    [
        ((2,), 5, 1, 9, 11, 5),
        ((2,), 4, 3, 8, 8, None),
        ((1,), 6, 17, 7, 10, 3),
        ((2, 2), 3, 2, 6, 5, 1),
        ((1,), 7, 3, 12, 9, 25),  # window larger than the image
    ],
)
def test_matches_loop_reference(lead, n, channels, height, width, kernel_size):
    means, scales, rotations, amplitudes = random_gaussians(lead, n, channels, seed=n * 7 + channels)
    out = rasterize_gaussians(means, scales, rotations, amplitudes, height, width, kernel_size, backend="torch")
    assert out.shape == (*lead, channels, height, width)
    ref = loop_render(*flatten_frames(lead, means, scales, rotations, amplitudes), height, width, kernel_size)
    torch.testing.assert_close(out, ref.reshape(out.shape), rtol=1e-10, atol=1e-12)


def test_border_and_off_image_gaussians():
    """A Gaussian centred just outside the image still lights its window's pixels that are inside."""
    means = torch.tensor([[[-1.05, 0.0], [1.6, 1.6], [0.999, -0.999]]], dtype=torch.float64)
    scales = torch.full((1, 3, 2), 1.5, dtype=torch.float64)
    rotations = torch.zeros(1, 3, dtype=torch.float64)
    amplitudes = torch.ones(1, 3, 1, dtype=torch.float64)
    out = rasterize_gaussians(means, scales, rotations, amplitudes, 8, 8, kernel_size=5, backend="torch")
    ref = loop_render(means, scales, rotations, amplitudes, 8, 8, 5)
    torch.testing.assert_close(out, ref)
    assert out[0, 0, 4, 0] > 0.5  # left edge lit by the Gaussian just off the left border
    assert out[0, 0, 7, 7] == 0  # the one at (1.6, 1.6): center pixel (10, 10), window starts at 8


def test_kernel_size_one_is_a_single_pixel():
    means = torch.tensor([[[0.0, 0.0]]])
    out = rasterize_gaussians(means, torch.ones(1, 1, 2), torch.zeros(1, 1), torch.ones(1, 1, 1), 4, 4, kernel_size=1,
                              backend="torch")
    # px = py = 1.5: the center rounds to pixel (2, 2), which is sqrt(0.5) away from the mean.
    assert torch.count_nonzero(out) == 1
    assert out[0, 0, 2, 2].item() == pytest.approx(math.exp(-0.25), rel=1e-6)


def test_anisotropic_rotation_axis():
    """A Gaussian long along x, rotated by 90 degrees, is long along y."""
    means = torch.zeros(1, 1, 2, dtype=torch.float64)
    scales = torch.tensor([[[4.0, 1.0]]], dtype=torch.float64)
    amps = torch.ones(1, 1, 1, dtype=torch.float64)
    flat = rasterize_gaussians(means, scales, torch.zeros(1, 1, dtype=torch.float64), amps, 17, 17, backend="torch")
    turned = rasterize_gaussians(means, scales, torch.full((1, 1), math.pi / 2, dtype=torch.float64), amps, 17, 17,
                                 backend="torch")
    torch.testing.assert_close(turned[0, 0], flat[0, 0].T)
    assert flat[0, 0, 8, 12] > flat[0, 0, 12, 8]


def test_chunking_gives_the_same_image():
    from pdr.render._torch import rasterize_torch

    means, scales, rotations, amplitudes = random_gaussians((6,), 50, 3, seed=3)
    whole = rasterize_torch(means, scales, rotations, amplitudes, 16, 16, 7)
    for budget in (1, 500, 20000):  # one Gaussian at a time, partial frames, several frames
        chunked = rasterize_torch(means, scales, rotations, amplitudes, 16, 16, 7, chunk_elements=budget)
        torch.testing.assert_close(chunked, whole)
    dense = rasterize_torch(means, scales, rotations, amplitudes, 16, 16, None)
    torch.testing.assert_close(rasterize_torch(means, scales, rotations, amplitudes, 16, 16, None, chunk_elements=300), dense)


def test_chunked_backward_gives_the_same_gradients():
    from pdr.render._torch import rasterize_torch

    inputs = random_gaussians((3,), 8, 2, seed=4)
    grad_out = torch.randn(3, 2, 12, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for kernel_size in (7, None):
        grads = []
        for budget in (None, 1, 1000):  # whole, one Gaussian at a time, a few Gaussians of one frame
            leaves = [t.clone().requires_grad_() for t in inputs]
            rasterize_torch(*leaves, 12, 12, kernel_size, chunk_elements=budget).backward(grad_out)
            grads.append([t.grad for t in leaves])
        for other in grads[1:]:
            for name, got, want in zip(("means", "scales", "rotations", "amplitudes"), other, grads[0]):
                torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14, msg=name)


def test_autograd_keeps_only_the_inputs():
    """No chunk's (frames, N, K, K, C) tensors are kept for the backward: memory does not grow with frames."""
    inputs = [t.clone().requires_grad_() for t in random_gaussians((16,), 50, 3, dtype=torch.float32, seed=1)]
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = rasterize_gaussians(*inputs, 32, 32, kernel_size=15, backend="torch")
    assert sum(saved) <= sum(t.numel() for t in inputs)
    out.sum().backward()
    assert all(t.grad is not None for t in inputs)


class PeakMemory(TorchDispatchMode):
    """The most bytes held at once by the storages of tensors created inside the ``with`` block (a storage counts
    from the op that creates it until it is freed)."""

    def __init__(self):
        super().__init__()
        self.live, self.current, self.peak = {}, 0, 0

    def _free(self, key):
        self.current -= self.live.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and id(t.untyped_storage()) not in self.live:
                storage = t.untyped_storage()
                self.live[id(storage)] = storage.nbytes()
                self.current += storage.nbytes()
                self.peak = max(self.peak, self.current)
                weakref.finalize(storage, self._free, id(storage))
        return out


def test_large_n_and_frames_stay_bounded():
    """2000 Gaussians on 64 frames with the default budget (86M Gaussian-pixel-channel values, five budgets):
    the forward keeps only the inputs for the backward, and at no time do the forward and backward together hold more than
    four budgets of float32 values (all at once would be about 15)."""
    from pdr.render._checks import default_chunk_elements

    inputs = [t.clone().requires_grad_() for t in random_gaussians((64,), 2000, 2, dtype=torch.float32, seed=1)]
    saved, memory = [], PeakMemory()
    with memory:
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            out = rasterize_gaussians(*inputs, 32, 32, kernel_size=15, backend="torch")
        out.sum().backward()
    assert out.shape == (64, 2, 32, 32) and torch.isfinite(out).all()
    assert sum(saved) <= sum(t.numel() for t in inputs)
    assert all(torch.isfinite(t.grad).all() for t in inputs)
    assert memory.peak < 4 * 4 * default_chunk_elements(), f"peak {memory.peak / 2**20:.0f} MiB"


def test_float32_matches_float64():
    means, scales, rotations, amplitudes = random_gaussians((3,), 40, 3, seed=5)
    ref = rasterize_gaussians(means, scales, rotations, amplitudes, 20, 24, 9, backend="torch")
    out = rasterize_gaussians(*(t.float() for t in (means, scales, rotations, amplitudes)), 20, 24, 9, backend="torch")
    assert out.dtype == torch.float32
    assert ((out.double() - ref).norm() / ref.norm()).item() < 1e-6


def test_every_input_receives_gradient():
    means, scales, rotations, amplitudes = random_gaussians((2,), 4, 3, spread=0.5, seed=2)
    inputs = [t.clone().requires_grad_() for t in (means, scales, rotations, amplitudes)]
    rasterize_gaussians(*inputs, 10, 10, 7, backend="torch").square().sum().backward()
    for name, t in zip(("means", "scales", "rotations", "amplitudes"), inputs):
        assert t.grad is not None and t.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda a: {**a, "means": a["means"][..., :1]}, "means must have shape"),
        (lambda a: {**a, "scales": a["scales"][:, :2]}, "scales must have shape"),
        (lambda a: {**a, "rotations": a["rotations"][..., None]}, "rotations must have shape"),
        (lambda a: {**a, "amplitudes": a["amplitudes"][..., :0]}, "amplitudes must have shape"),
        (lambda a: {**a, "scales": -a["scales"]}, "scales must be finite and > 0"),
        (lambda a: {**a, "scales": a["scales"].clone().fill_(float("nan"))}, "scales must be finite and > 0"),
        (lambda a: {**a, "kernel_size": 4}, "kernel_size must be an odd positive int"),
        (lambda a: {**a, "kernel_size": 0}, "kernel_size must be an odd positive int"),
        (lambda a: {**a, "kernel_size": 19}, r"kernel_size must be at most 2 \* max\(height, width\) \+ 1 = 17"),
        (lambda a: {**a, "height": 0}, "height must be a positive int"),
        (lambda a: {**a, "backend": "triton"}, "backend must be one of"),
        (lambda a: {**a, "backend": "cuda"}, "backend='cuda' needs tensors on a CUDA device"),
    ],
)
def test_bad_arguments_name_what_was_expected(change, message):
    means, scales, rotations, amplitudes = random_gaussians((2,), 3, 2, seed=0)
    args = dict(means=means, scales=scales, rotations=rotations, amplitudes=amplitudes, height=8, width=8,
                kernel_size=5, backend="torch")
    with pytest.raises(ValueError, match=message):
        rasterize_gaussians(**change(args))
