"""The contrast metric and the validation warning when predictions collapse toward the background."""
import logging

import numpy as np
import pytest
import torch
from torch import nn

from pdr.backbones import Backbone, BackboneOutput
from pdr.config import load_config
from pdr.engine import Trainer
from pdr.engine.collapse import COLLAPSE_CONTRAST, collapse_warning
from pdr.metrics import evaluate
from pdr.registry import BACKBONES


@BACKBONES.register("test_flat", force=True)
class FlatFrames(Backbone):
    """Predicts every pixel as one learnt value: a model collapsed to a flat background."""

    def __init__(self, in_shape, out_frames):
        super().__init__(in_shape, out_frames)
        self.value = nn.Parameter(torch.zeros(()))

    def forward(self, x, return_features=False):
        return BackboneOutput(self.value.expand_as(x).clone())


def test_contrast_is_the_ratio_of_mean_pixel_standard_deviations():
    rng = np.random.default_rng(0)
    true = rng.random((3, 4, 2, 8, 8))
    pred = 0.3 * true + rng.random((3, 4, 2, 8, 8)) * 0.05
    expected = pred.std(axis=(2, 3, 4)).mean() / true.std(axis=(2, 3, 4)).mean()
    assert evaluate(pred, true, metrics=("contrast",))["contrast"] == pytest.approx(expected, rel=1e-9)
    assert evaluate(true, true, metrics=("contrast",))["contrast"] == pytest.approx(1.0)


def test_the_warning_comes_once_at_the_first_collapsed_validation():
    history = [{"step": 10, "val/contrast": 0.9}, {"step": 20, "val/contrast": 0.2}]
    message = collapse_warning(history, "my_arm")
    assert "run my_arm" in message and "step 20" in message and "0.20 of the truth's" in message
    assert "loss.mse_weight" in message and "loss.warmup" in message and "model.init_from" in message
    assert collapse_warning(history + [{"step": 30, "val/contrast": 0.1}], "my_arm") is None
    assert collapse_warning([{"step": 10, "val/contrast": COLLAPSE_CONTRAST}], "x") is None
    assert collapse_warning([{"step": 10, "val/mse": 3.0}], "x") is None


def test_a_collapsed_run_is_warned_once_even_when_resumed(repo, tmp_path, caplog):
    overrides = ["model.backbone={name: test_flat}", "data.num_train=8", "data.num_val=4", "data.batch_size=4",
                 "train.max_steps=4", "train.tensorboard=false"]
    cfg = load_config(repo / "configs/advected_fields/simvp.yaml", overrides)
    with caplog.at_level(logging.WARNING, logger="pdr"):
        Trainer(cfg, tmp_path / "flat", show_progress=False).fit()  # two validations, both flat
        more = load_config(repo / "configs/advected_fields/simvp.yaml", [*overrides, "train.max_steps=6"])
        Trainer(more, tmp_path / "flat", resume=True, show_progress=False).fit()
    warnings = [r.getMessage() for r in caplog.records if "collapse toward the background" in r.getMessage()]
    assert len(warnings) == 1 and "run flat" in warnings[0] and "step 2" in warnings[0]
    assert "collapse toward the background" in (tmp_path / "flat" / "log.txt").read_text()
