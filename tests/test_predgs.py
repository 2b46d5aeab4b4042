import math

import pytest
import torch

from pdr.adapters import PredGS, base_grid


def test_base_grid_is_uniform_and_inside():
    grid = base_grid(300, 32, 32)
    assert grid.shape == (300, 2)
    assert grid.abs().max() < 1
    cols = int((grid[:, 1] == grid[0, 1]).sum())
    assert cols == 17  # round(sqrt(300)); 17 full rows and a last row of 11, spread evenly
    torch.testing.assert_close(grid[cols : 2 * cols, 0], grid[:cols, 0])
    last = grid[17 * cols :, 0]
    assert len(last) == 11 and last.min() > -1 and torch.allclose(last + last.flip(0), torch.zeros(11), atol=1e-6)
    wide = base_grid(200, 32, 64)  # aspect ratio 2: twice as many columns as rows
    cols = (wide[:, 1] == wide[0, 1]).sum().item()
    rows = len(torch.unique(wide[:, 1]))
    assert cols / rows == pytest.approx(2, rel=0.25)


def test_output_shapes_and_parameter_ranges():
    adapter = PredGS((3, 16, 16), num_gaussians=20, kernel_size=7, pool=4, hidden=16, scale_range=(0.5, 2.0))
    coarse = torch.rand(2, 5, 3, 16, 16)
    g = adapter.gaussians(coarse.flatten(0, 1))
    assert g["means"].shape == (10, 20, 2) and g["amplitudes"].shape == (10, 20, 3)
    assert g["means"].abs().max() <= 1
    assert g["scales"].min() >= 0.5 and g["scales"].max() <= 2.0
    assert g["rotations"].abs().max() <= math.pi / 2
    assert g["amplitudes"].min() >= 0
    assert adapter(coarse).shape == coarse.shape


def test_grid_init_places_gaussians_on_the_grid_at_start():
    adapter = PredGS((1, 16, 16), num_gaussians=16, kernel_size=5, pool=2, hidden=8)
    means = adapter.gaussians(torch.rand(3, 1, 16, 16))["means"]
    torch.testing.assert_close(means, base_grid(16, 16, 16).expand(3, -1, -1), atol=0.05, rtol=0)


def test_random_init_is_seeded():
    a = PredGS((1, 8, 8), num_gaussians=10, kernel_size=5, pool=2, hidden=8, position_init="random", seed=1)
    b = PredGS((1, 8, 8), num_gaussians=10, kernel_size=5, pool=2, hidden=8, position_init="random", seed=1)
    torch.testing.assert_close(a.base_logits, b.base_logits)
    assert not torch.allclose(a.base_logits, PredGS((1, 8, 8), num_gaussians=10, pool=2, position_init="grid").base_logits)


def test_conv_fusion_starts_as_the_backbone_and_the_gaussians_learn_what_fusion_cannot():
    """Target: the coarse frames plus two fixed blobs. The 1x1 fusion alone (any per-channel affine map of
    the coarse frame, solved in closed form below) cannot place blobs; only the rendered branch can."""
    torch.manual_seed(0)
    adapter = PredGS((1, 16, 16), num_gaussians=16, kernel_size=7, pool=2, hidden=16, scale_range=(0.5, 3.0),
                     backend="torch")
    coarse = torch.rand(4, 2, 1, 16, 16) * 0.2
    torch.testing.assert_close(adapter(coarse), coarse)  # starts as the backbone alone
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    blobs = (0.8 * torch.exp(-((xx - 4) ** 2 + (yy - 5) ** 2) / (2 * 1.5**2))
             + 0.6 * torch.exp(-((xx - 11) ** 2 + (yy - 10) ** 2) / (2 * 2.0**2)))
    target = coarse + blobs
    design = torch.stack([coarse.flatten(), torch.ones(coarse.numel())], 1).double()
    best_affine = design @ torch.linalg.lstsq(design, target.flatten().double()[:, None]).solution
    fusion_alone = (best_affine.view_as(target).float() - target).abs().mean().item()
    opt = torch.optim.Adam(adapter.parameters(), lr=1e-2)
    for _ in range(40):
        loss = (adapter(coarse) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * fusion_alone
    with torch.no_grad():
        rendered = adapter.render(coarse)[0, 0, 0]
    # the rendered frame carries the blobs: brighter at their centres than at a corner far from both
    assert min(rendered[5, 4], rendered[10, 11]) > 2 * rendered[15, 0] + 0.1


def test_add_fusion_and_negative_amplitudes():
    adapter = PredGS((1, 8, 8), num_gaussians=9, kernel_size=5, pool=2, hidden=8, fusion="add",
                     amplitude_range=(-1.0, 1.0))
    coarse = torch.zeros(1, 2, 1, 8, 8)
    rendered = adapter.render(coarse)
    torch.testing.assert_close(adapter(coarse), coarse + rendered)
    tanh = PredGS((1, 8, 8), num_gaussians=9, kernel_size=5, pool=2, hidden=8, amplitude_activation="tanh",
                  amplitude_range=(-2.0, 2.0))
    with torch.no_grad():
        tanh.amplitude_head.net[-1].bias.fill_(-3.0)
    assert tanh.gaussians(torch.rand(1, 1, 8, 8))["amplitudes"].max() < 0


def test_switch_off_at_inference():
    adapter = PredGS((1, 8, 8), num_gaussians=9, kernel_size=5, pool=2, hidden=8, fusion="add",
                     enabled_at_inference=False)
    coarse = torch.rand(1, 2, 1, 8, 8)
    assert not torch.equal(adapter(coarse), coarse)  # training mode: adapter on
    adapter.eval()
    assert torch.equal(adapter(coarse), coarse)


def test_source_features():
    adapter = PredGS((1, 8, 8), feature_channels=6, num_gaussians=9, kernel_size=5, pool=2, hidden=8,
                     source="features", fusion="add")
    coarse, feats = torch.rand(2, 3, 1, 8, 8), torch.rand(2, 3, 6, 4, 4)
    assert adapter(coarse, feats).shape == coarse.shape
    with pytest.raises(ValueError, match="feature_channels"):
        PredGS((1, 8, 8), source="features", pool=2)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"pool": 3}, "pool must be >= 1 and divide"),
        ({"kernel_size": 4}, "kernel_size must be odd"),
        ({"fusion": "mul"}, "fusion must be one of"),
        ({"position_init": "harris"}, "position_init must be one of"),
        ({"scale_range": (2.0, 1.0)}, "scale_range must satisfy"),
        ({"num_gaussians": 0}, "num_gaussians must be >= 1"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PredGS((1, 8, 8), **{"pool": 2, **kwargs})
