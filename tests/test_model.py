import logging

import pytest
import torch

import pdr
from pdr.backbones import Backbone, BackboneOutput
from pdr.config import config_from_dict
from pdr.errors import ConfigError

SMALL = {"name": "simvp", "hid_S": 8, "hid_T": 16, "N_S": 2, "N_T": 2}


@pytest.mark.parametrize("t_in,t_out", [(4, 4), (4, 2), (3, 7), (2, 9)])
def test_contract_and_rollout(t_in, t_out):
    model = pdr.create_model(SMALL, (t_in, 2, 16, 16), t_out)
    x = torch.rand(2, t_in, 2, 16, 16)
    assert model(x).shape == (2, t_out, 2, 16, 16)


def test_rollout_feeds_predictions_back():
    """OpenSTL's SimVP rollout: each call sees the last T_in frames, predictions included."""

    class Shift(Backbone):
        def __init__(self, in_shape, out_frames):
            super().__init__(in_shape, out_frames)
            self.calls = []

        def forward(self, x, return_features=False):
            self.calls.append(x[:, :, 0, 0, 0].clone())
            return BackboneOutput(x + x.shape[1])  # frame k of the next chunk = frame k of this one + T_in

    backbone = Shift((2, 1, 4, 4), 5)
    model = pdr.PDRModel(backbone, None, in_frames=2, out_frames=5)
    x = torch.arange(2.0).view(1, 2, 1, 1, 1).expand(1, 2, 1, 4, 4)
    out = model(x)[0, :, 0, 0, 0]
    torch.testing.assert_close(out, torch.arange(2.0, 7.0))
    assert len(backbone.calls) == 3
    torch.testing.assert_close(backbone.calls[1][0], torch.tensor([2.0, 3.0]))


def test_one_config_line_wraps_the_backbone(tmp_path):
    base = {
        "model": {"backbone": SMALL},
        "data": {"name": "advected_fields", "in_frames": 4, "out_frames": 4, "num_train": 4},
    }
    plain = pdr.build_model(config_from_dict(base))
    wrapped = pdr.build_model(config_from_dict({**base, "model": {**base["model"], "adapter": "predgs"}}))
    assert plain.adapter is None and isinstance(wrapped.adapter, pdr.adapters.PredGS)
    x = torch.rand(2, 4, 2, 32, 32)
    assert wrapped(x).shape == plain(x).shape == (2, 4, 2, 32, 32)


def test_parameter_count_is_logged(caplog):
    with caplog.at_level(logging.INFO, logger="pdr"):
        pdr.create_model(SMALL, (4, 2, 16, 16), 4, adapter={"name": "predgs", "num_gaussians": 16, "pool": 2})
    assert any("adapter predgs" in r.message and "parameters" in r.message for r in caplog.records)


def test_wrong_input_shape_is_named():
    model = pdr.create_model(SMALL, (4, 2, 16, 16), 4)
    with pytest.raises(ValueError, match=r"model input must have shape \(B, 4, 2, 16, 16\)"):
        model(torch.rand(2, 5, 2, 16, 16))


def test_bad_backbone_argument_value_is_a_config_error():
    cfg = config_from_dict({
        "model": {"backbone": {**SMALL, "hid_S": 7}},  # the encoder's GroupNorm has 2 groups
        "data": {"name": "advected_fields", "in_frames": 4, "out_frames": 4, "image_size": 16},
    })
    with pytest.raises(ConfigError, match=r"model.backbone \(simvp\): hid_S must be even"):
        pdr.build_model(cfg)
    # a frame size the backbone does not divide is padded (tests/test_any_size.py), or refused with model.pad: none
    cfg = config_from_dict({
        "model": {"backbone": {**SMALL, "N_S": 10}, "pad": "none"},  # 16x16 cannot be halved 5 times
        "data": {"name": "advected_fields", "in_frames": 4, "out_frames": 4, "image_size": 16},
    })
    with pytest.raises(ConfigError, match=r"model.pad: none: simvp needs H and W multiples of 32, the frames are 16x16"):
        pdr.build_model(cfg)


def test_features_source_through_simvp_has_the_gradient_of_finite_differences():
    """The loss reaches the features' 1x1 reduction through the heads and the renderer: its autograd gradient
    matches central finite differences (float64)."""
    torch.manual_seed(0)
    model = pdr.create_model(SMALL, (4, 1, 16, 16), 4, adapter={"name": "predgs", "source": "features",
                                                               "num_gaussians": 16, "pool": 2, "backend": "torch"})
    model = model.double().eval()
    with torch.no_grad():
        model.adapter.fuse.weight[:, 1:] = 0.5  # let the rendered frame count (it starts at weight 0)
    x = torch.rand(2, 4, 1, 16, 16, dtype=torch.float64)
    target = torch.rand(2, 4, 1, 16, 16, dtype=torch.float64)

    def loss():
        return ((model(x) - target) ** 2).mean()

    loss().backward()
    weight = model.adapter.reduce.weight
    grad = weight.grad.clone()
    assert grad.abs().max() > 1e-6
    eps = 1e-6
    for index in [(0, 0, 0, 0), (0, 3, 0, 0), (0, weight.shape[1] - 1, 0, 0)]:
        with torch.no_grad():
            weight[index] += eps
            up = loss().item()
            weight[index] -= 2 * eps
            down = loss().item()
            weight[index] += eps
        assert grad[index].item() == pytest.approx((up - down) / (2 * eps), rel=1e-4, abs=1e-9), index


def test_rollout_with_the_adapter_feeds_refined_frames_back():
    """When the backbone predicts fewer frames per call than asked for, the next call sees the adapter's
    refined frames, not the backbone's coarse ones, and every chunk is refined."""

    class Shift(Backbone):
        def __init__(self, in_shape, out_frames):
            super().__init__(in_shape, out_frames)
            self.calls = []

        def forward(self, x, return_features=False):
            self.calls.append(x.clone())
            return BackboneOutput(x + 1.0)

    backbone = Shift((2, 1, 8, 8), 5)
    adapter = pdr.adapters.PredGS((1, 8, 8), num_gaussians=9, kernel_size=5, pool=2, hidden=8, fusion="add",
                                  backend="torch")
    model = pdr.PDRModel(backbone, adapter, in_frames=2, out_frames=5).eval()
    x = torch.rand(1, 2, 1, 8, 8)
    with torch.no_grad():
        out = model(x)
        first = x + 1.0
        first = first + adapter.render(first)  # the refined first chunk, computed here step by step
    assert out.shape == (1, 5, 1, 8, 8) and len(backbone.calls) == 3
    torch.testing.assert_close(out[:, :2], first)
    torch.testing.assert_close(backbone.calls[1], first)  # fed back refined
    assert (first - (x + 1.0)).abs().max() > 1e-3  # refined differs from coarse, so the check means something
    with torch.no_grad():
        second = backbone.calls[1] + 1.0
        torch.testing.assert_close(out[:, 2:4], second + adapter.render(second))
