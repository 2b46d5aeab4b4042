"""The renderer's definition (docs/renderer.md) as a slow, obviously-correct loop, and random test Gaussians.

Written from the definition alone, independently of every backend: one Gaussian and one pixel at a time.
"""
import math

import torch

NAMES = ("means", "scales", "rotations", "amplitudes")


def loop_render(means, scales, rotations, amplitudes, height, width, kernel_size):
    """Inputs (F, N, ...) -> (F, C, height, width) in float64."""
    frames, n, channels = amplitudes.shape
    out = torch.zeros(frames, channels, height, width, dtype=torch.float64)
    for f in range(frames):
        for g in range(n):
            mx, my = means[f, g].tolist()
            if not (math.isfinite(mx) and math.isfinite(my)):
                continue  # a Gaussian whose mean is not finite draws nothing
            sx, sy = scales[f, g].tolist()
            t = float(rotations[f, g])
            px = (mx + 1) * width / 2 - 0.5
            py = (my + 1) * height / 2 - 0.5
            cx, cy = math.floor(px + 0.5), math.floor(py + 0.5)
            cos, sin = math.cos(t), math.sin(t)
            for i in range(height):
                for j in range(width):
                    if kernel_size is not None and (abs(j - cx) > kernel_size // 2 or abs(i - cy) > kernel_size // 2):
                        continue
                    dx, dy = j - px, i - py
                    u = cos * dx + sin * dy  # coordinates along the Gaussian's own axes: R^T d
                    v = -sin * dx + cos * dy
                    weight = math.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
                    out[f, :, i, j] += amplitudes[f, g].double() * weight
    return out


def random_gaussians(lead, n, channels, spread=1.4, dtype=torch.float64, seed=0):
    """means (*lead, n, 2) with some off the image, scales, rotations, amplitudes (*lead, n, channels)."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(*lead, n, 2, generator=g, dtype=dtype) * 2 - 1) * spread
    scales = torch.rand(*lead, n, 2, generator=g, dtype=dtype) * 2.5 + 0.3
    rotations = (torch.rand(*lead, n, generator=g, dtype=dtype) * 2 - 1) * math.pi
    amplitudes = torch.randn(*lead, n, channels, generator=g, dtype=dtype)
    return means, scales, rotations, amplitudes


def flatten_frames(lead, *tensors):
    """(*lead, N, ...) -> (F, N, ...) with F = prod(lead)."""
    frames = math.prod(lead)
    return [t.reshape(frames, *t.shape[len(lead):]) for t in tensors]


def rel_err(a, b):
    """|a - b| / |b| over whole tensors, in float64."""
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def render_with_grads(inputs, height, width, kernel_size, backend, grad_seed=1, needs_grad=(True,) * 4):
    """Image and the gradients (None where not needed) of <image, random weights> through rasterize_gaussians."""
    from pdr.render import rasterize_gaussians

    leaves = [t.detach().clone().requires_grad_(need) for t, need in zip(inputs, needs_grad)]
    out = rasterize_gaussians(*leaves, height, width, kernel_size, backend=backend)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=torch.float64)
    out.backward(weights.to(out.dtype))
    return out.detach(), [t.grad for t in leaves]
