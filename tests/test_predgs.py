import math

import pytest
import torch

from pdr.adapters import PredGS, base_grid
from pdr.errors import ConfigError
from pdr.model import PDRModel
from pdr.registry import BACKBONES


def fit_l1(adapter: PredGS, coarse: torch.Tensor, target: torch.Tensor, steps: int) -> float:
    """Adam at lr 1e-2 on the L1 error of ``adapter(coarse)``; the last step's loss."""
    opt = torch.optim.Adam(adapter.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = (adapter(coarse) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


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
    loss = fit_l1(adapter, coarse, target, steps=40)
    assert loss < 0.3 * fusion_alone
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


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"head": "attention"}, "head must be one of"),
        ({"head": "conv", "num_gaussians": 20}, "multiple of 16"),
        ({"coarse_loss_weight": -1.0}, "coarse_loss_weight must be >= 0"),
        ({"detach_coarse": True}, "detach_coarse: true needs coarse_loss_weight"),
        ({"amplitude_init_std": -1e-3}, "amplitude_init_std must be >= 0"),
    ],
)
def test_bad_head_and_coarse_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PredGS((1, 8, 8), **{"pool": 2, **kwargs})


def test_conv_head_places_gaussians_in_their_cells():
    adapter = PredGS((3, 16, 8), num_gaussians=64, kernel_size=7, pool=2, hidden=8, head="conv",
                     scale_range=(0.5, 2.0))
    g = adapter.gaussians(torch.rand(5, 3, 16, 8))
    assert g["means"].shape == (5, 64, 2) and g["amplitudes"].shape == (5, 64, 3)
    # 8 x 4 cells of 2 x 2 pixels, two Gaussians per cell, row-major; normalised cell size 2/4 in x, 2/8 in y
    centres = torch.tensor([[(2 * j + 1) / 4 - 1, (2 * i + 1) / 8 - 1] for i in range(8) for j in range(4)])
    centres = centres.repeat_interleave(2, dim=0)
    offset = (g["means"] - centres).abs()
    assert (offset[..., 0] <= 0.5).all() and (offset[..., 1] <= 0.25).all()
    torch.testing.assert_close(g["means"], centres.expand(5, -1, -1), atol=0.01, rtol=0)  # near zero output at start
    assert g["scales"].min() >= 0.5 and g["scales"].max() <= 2.0


def test_zero_amplitude_init_starts_as_the_backbone():
    coarse = torch.rand(2, 3, 1, 16, 16)
    for head in ("mlp", "conv"):
        adapter = PredGS((1, 16, 16), num_gaussians=64, kernel_size=7, pool=2, hidden=8, head=head,
                         amplitude_activation="tanh", amplitude_range=(0.0, 0.5), fusion="add", amplitude_init_std=0.0)
        torch.testing.assert_close(adapter(coarse), coarse)
    conv = PredGS((1, 8, 8), num_gaussians=16, kernel_size=5, pool=2, hidden=8, render_init=0.25)
    assert conv.fuse.weight[0, 1, 0, 0].item() == 0.25 and conv.fuse.weight[0, 0, 0, 0].item() == 1.0


def _dot_frames(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A single bright pixel at a random place per frame, and the Gaussian blob (std 1.5 px) centred on it."""
    gen = torch.Generator().manual_seed(seed)
    ys, xs = torch.randint(2, size - 2, (n,), generator=gen), torch.randint(2, size - 2, (n,), generator=gen)
    dots = torch.zeros(n, 1, 1, size, size)
    dots[torch.arange(n), 0, 0, ys, xs] = 1.0
    yy, xx = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    blobs = 0.5 * torch.exp(-((xx - xs[:, None, None]) ** 2 + (yy - ys[:, None, None]) ** 2) / (2 * 1.5**2))
    return dots, dots + blobs[:, None, None]


def test_conv_head_learns_a_blob_wherever_the_input_has_one():
    """Pixel-aligned heads see each cell's neighbourhood, so "a blob around the dot" is one local rule that holds
    everywhere; on dots at places never seen in training the learned rendering removes most of the error."""
    torch.manual_seed(0)
    adapter = PredGS((1, 16, 16), num_gaussians=64, kernel_size=9, pool=2, hidden=16, head="conv",
                     amplitude_activation="tanh", amplitude_range=(0.0, 1.0), fusion="add", backend="torch")
    dots, target = _dot_frames(64, 16, seed=1)
    fit_l1(adapter, dots, target, steps=150)
    test_dots, test_target = _dot_frames(32, 16, seed=2)
    with torch.no_grad():
        error = (adapter(test_dots) - test_target).abs().mean().item()
    assert error < 0.4 * (test_dots - test_target).abs().mean().item()


def test_coarse_loss_and_detached_backbone():
    torch.manual_seed(0)
    backbone = BACKBONES.build("simvp", in_shape=(3, 1, 16, 16), out_frames=2, hid_S=4, hid_T=8, N_S=2, N_T=2)
    adapter = PredGS((1, 16, 16), num_gaussians=16, kernel_size=5, pool=4, hidden=8, fusion="add",
                     amplitude_activation="tanh", amplitude_range=(0.0, 0.5), coarse_loss_weight=3.0,
                     detach_coarse=True)
    model = PDRModel(backbone, adapter, in_frames=3, out_frames=2).train()
    x, y = torch.rand(2, 3, 1, 16, 16), torch.rand(2, 2, 1, 16, 16)
    out = model(x, targets=y, return_output=True)
    with torch.no_grad():
        coarse = backbone(x).frames[:, :2]  # SimVP predicts T_in = 3 frames per call; the model keeps 2
    torch.testing.assert_close(out.aux_losses["coarse_mse"], 3.0 * ((coarse - y) ** 2).mean())
    (out.frames - y).abs().mean().backward()  # the refined frames' loss alone
    assert all(p.grad is None for p in backbone.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in adapter.parameters())
    model.zero_grad()
    out = model(x, targets=y, return_output=True)
    out.aux_losses["coarse_mse"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in backbone.parameters())
    model.eval()
    assert model(x, targets=y, return_output=True).aux_losses == {}
    with pytest.raises(ConfigError, match="coarse_loss_weight > 0"):
        model.freeze_backbone()


def test_detached_coarse_in_a_rollout():
    """Two backbone calls (3 frames each, 5 asked for): the refined frames are fed back, but the coarse loss still
    trains only the backbone (through both calls) and the output's loss only the adapter."""
    torch.manual_seed(0)
    backbone = BACKBONES.build("simvp", in_shape=(3, 1, 16, 16), out_frames=3, hid_S=4, hid_T=8, N_S=2, N_T=2)
    adapter = PredGS((1, 16, 16), num_gaussians=16, kernel_size=5, pool=4, hidden=8, fusion="add",
                     amplitude_activation="tanh", amplitude_range=(0.0, 0.5), amplitude_init_std=0.1,
                     coarse_loss_weight=1.0, detach_coarse=True)
    model = PDRModel(backbone, adapter, in_frames=3, out_frames=5).train()
    x, y = torch.rand(2, 3, 1, 16, 16), torch.rand(2, 5, 1, 16, 16)
    out = model(x, targets=y, return_output=True)
    out.aux_losses["coarse_mse"].backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in adapter.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in backbone.parameters())
    model.zero_grad(set_to_none=True)
    out = model(x, targets=y, return_output=True)
    (out.frames - y).abs().mean().backward()
    assert all(p.grad is None for p in backbone.parameters())
    with torch.no_grad():  # the second call saw the refined frames: its coarse frames differ from feeding coarse ones
        first = backbone(x).frames
        refined_window = torch.cat([x, adapter(first)], dim=1)[:, -3:]
        torch.testing.assert_close(model(x), torch.cat([adapter(first), adapter(backbone(refined_window).frames)],
                                                       dim=1)[:, :5])


@pytest.mark.parametrize("side", [32, 64, 128, 256])
def test_conv_recipe_fits_every_resolution_base(repo, side):
    """configs/_base_/predgs/conv_heads.yaml after each resolution base: one Gaussian per pooled cell."""
    import yaml

    base = yaml.safe_load((repo / f"configs/_base_/predgs/{side}x{side}.yaml").read_text())["model"]["adapter"]
    recipe = yaml.safe_load((repo / "configs/_base_/predgs/conv_heads.yaml").read_text())["model"]["adapter"]
    kwargs = {k: v for k, v in {**base, **recipe}.items() if k != "name"}
    adapter = PredGS((3, side, side), **kwargs)
    assert adapter.num_gaussians == (side // kwargs["pool"]) ** 2 and adapter.head == "conv"
    if side <= 64:
        coarse = torch.rand(1, 2, 3, side, side)
        torch.testing.assert_close(adapter(coarse), coarse, atol=0.02, rtol=0)  # near-zero amplitudes at start
