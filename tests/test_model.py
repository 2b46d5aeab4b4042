import logging

import pytest
import torch

import pdr
from pdr.backbones import Backbone
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
            return x + x.shape[1]  # frame k of the next chunk = frame k of this one + T_in

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
        "model": {"backbone": {**SMALL, "N_S": 10}},  # 16x16 cannot be halved 5 times
        "data": {"name": "advected_fields", "in_frames": 4, "out_frames": 4, "size": 16},
    })
    with pytest.raises(ConfigError, match=r"model.backbone \(simvp\): SimVP with N_S=10 needs H and W divisible by 32"):
        pdr.build_model(cfg)


def test_features_source_through_simvp():
    model = pdr.create_model(SMALL, (4, 1, 16, 16), 4,
                             adapter={"name": "predgs", "source": "features", "num_gaussians": 16, "pool": 2})
    x = torch.rand(2, 4, 1, 16, 16, requires_grad=True)
    model(x).sum().backward()
    assert model.adapter.reduce.weight.grad is not None
