"""conv_refiner: the control adapter without Gaussians (pdr.adapters.refiner)."""
import pytest
import torch
import torch.nn.functional as F

import pdr
from pdr.adapters.refiner import ConvRefiner, matching_hidden, refiner_parameters
from pdr.config import load_config
from pdr.errors import ConfigError
from pdr.model import build_model


@pytest.mark.parametrize("channels,pool,hidden", [(1, 4, 64), (3, 4, 62), (2, 2, 8), (3, 1, 5)])
def test_parameter_count_formula_matches_the_module(channels, pool, hidden):
    module = ConvRefiner((channels, 16, 16), pool=pool, hidden=hidden)
    assert refiner_parameters(channels, pool, hidden) == sum(p.numel() for p in module.parameters())


def test_matching_hidden_is_the_closest_width():
    for target, channels, pool in [(65160, 3, 4), (46598, 1, 4), (17434, 2, 2)]:
        best = min(range(1, 100), key=lambda h: abs(sum(p.numel() for p in ConvRefiner(
            (channels, 16, 16), pool=pool, hidden=h).parameters()) - target))
        assert matching_hidden(target, channels, pool) == best


def test_starts_as_the_backbone_and_is_registered():
    model = pdr.create_model({"name": "simvp", "hid_S": 8, "hid_T": 16, "N_S": 2, "N_T": 2}, (4, 2, 32, 32), 4,
                             adapter={"name": "conv_refiner", "pool": 4, "hidden": 8}).eval()
    x = torch.rand(2, 4, 2, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model.backbone(x).frames)


def test_learns_to_sharpen_a_blurred_frame():
    torch.manual_seed(0)
    target = (torch.rand(8, 1, 1, 16, 16) > 0.7).float()
    kernel = torch.full((1, 1, 3, 3), 1.0 / 9)
    coarse = F.conv2d(target.flatten(0, 1), kernel, padding=1).view_as(target)
    refiner = ConvRefiner((1, 16, 16), pool=2, hidden=8)
    opt = torch.optim.Adam(refiner.parameters(), lr=1e-2)
    for _ in range(80):
        opt.zero_grad()
        loss = F.mse_loss(refiner(coarse), target)
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert F.mse_loss(refiner(coarse), target) < 0.6 * F.mse_loss(coarse, target)


def test_bad_pool_names_the_key(repo):
    cfg = load_config(repo / "configs/advected_fields/simvp.yaml",
                      ["model.adapter={name: conv_refiner, pool: 5}"])
    with pytest.raises(ConfigError, match=r"model.adapter \(conv_refiner\): pool must be >= 1 and divide"):
        build_model(cfg)
