"""Any frame size: 59x59 and 100x140 frames train and evaluate for every backbone family, with and without PredGS.

The model pads the frames to the multiple its backbone and adapter declare and crops the prediction back; losses
and metrics see the original pixels only. The checks pad by hand with NumPy, call the backbone and adapter
themselves, crop at the expected offsets, and score the crop with NumPy and scikit-image.
"""
import logging

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

import pdr
from pdr.errors import ConfigError
from pdr.losses import build_loss
from pdr.metrics import MetricAccumulator
from pdr.model.padding import FramePadding, plan_padding
from sized_data import BACKBONES, PREDGS, sized_config

# padded size of each frame size (by hand: the next multiple of 8, of 16 for SRVP's four halvings)
PADDED = {("simvp", 59, 59): (64, 64), ("simvp", 100, 140): (104, 144), ("srvp", 59, 59): (64, 64),
          ("srvp", 100, 140): (112, 144)}


def test_padding_splits_the_border_and_crops_back_exactly():
    pad = plan_padding(59, 59, lambda h, w: 8)
    assert (pad.top, pad.bottom, pad.left, pad.right) == (2, 3, 2, 3) and pad.padded_size(59, 59) == (64, 64)
    x = torch.rand(2, 3, 1, 59, 59)
    for mode, np_mode in (("replicate", "edge"), ("reflect", "reflect")):
        padded = FramePadding(2, 3, 2, 3, mode).pad(x)
        expected = np.pad(x.numpy(), [(0, 0)] * 3 + [(2, 3), (2, 3)], mode=np_mode)
        np.testing.assert_array_equal(padded.numpy(), expected)
        assert torch.equal(FramePadding(2, 3, 2, 3, mode).crop(padded), x)
    assert not plan_padding(64, 48, lambda h, w: 16)  # already a fitting size: no padding
    # SRVP's multiple depends on the size: 59 -> 3 halvings (8) -> 64 -> 4 halvings (16), which 64 already is
    assert plan_padding(59, 59, lambda h, w: 8 if min(h, w) < 64 else 16).padded_size(59, 59) == (64, 64)
    with pytest.raises(ValueError, match="reflect cannot pad 5x5 frames to 16x16"):
        plan_padding(5, 5, lambda h, w: 16, mode="reflect")


def _by_hand(model, x: torch.Tensor, padded: tuple[int, int]) -> torch.Tensor:
    """Edge-pad x with NumPy, run the backbone and the adapter on it, crop at the expected offsets."""
    h, w = x.shape[-2:]
    top, left = (padded[0] - h) // 2, (padded[1] - w) // 2
    xp = np.pad(x.numpy(), [(0, 0)] * 3 + [(top, padded[0] - h - top), (left, padded[1] - w - left)], mode="edge")
    out = model.backbone(torch.from_numpy(xp), return_features=model.adapter is not None
                         and model.adapter.needs_features)
    frames = out.frames if model.adapter is None else model.adapter(out.frames, out.features)
    return frames[..., top: top + h, left: left + w]


def _independent_scores(pred: np.ndarray, true: np.ndarray) -> dict:
    """OpenSTL's MSE, MAE, PSNR and SSIM of (B, T, C, H, W) arrays with NumPy and scikit-image alone."""
    clipped = np.clip(pred, 0, 1)
    frame_mse = ((clipped - true) ** 2).mean(axis=(2, 3, 4))
    ssim = [structural_similarity(clipped[b, t].transpose(2, 1, 0), true[b, t].transpose(2, 1, 0), channel_axis=-1,
                                  data_range=2.0) for b in range(len(pred)) for t in range(pred.shape[1])]
    return {"mse": ((pred - true) ** 2).sum(axis=(2, 3, 4)).mean(), "mae": np.abs(pred - true).sum(axis=(2, 3, 4)).mean(),
            "psnr": (-10 * np.log10(frame_mse)).mean(), "ssim": float(np.mean(ssim))}


@pytest.mark.parametrize("adapter", [None, PREDGS], ids=["alone", "predgs"])
@pytest.mark.parametrize("size", [(59, 59), (100, 140)], ids=["59x59", "100x140"])
@pytest.mark.parametrize("name", list(BACKBONES))
def test_odd_frame_sizes_train_and_evaluate(name, size, adapter):
    from pdr.data import build_dataset

    cfg = sized_config(BACKBONES[name], adapter, *size)
    torch.manual_seed(0)
    model = pdr.build_model(cfg)
    padded = PADDED.get(("srvp" if name == "srvp" else "simvp", *size))
    assert model.in_shape == (2, 1, *size) and model.padding.padded_size(*size) == padded
    assert model.backbone.in_shape[2:] == padded

    # one training step: the configured loss sees the cropped frames
    x, y = (torch.stack(t) for t in zip(*[build_dataset(cfg, "train")[i] for i in range(2)]))
    model.train()
    out = model(x, targets=y, step=0, return_output=True)
    assert out.frames.shape == y.shape
    loss = build_loss(cfg["loss"])(out.frames, y)["loss"] + sum(out.aux_losses.values())
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))

    # evaluation: the prediction is the crop of the padded prediction, scored on the original pixels
    model.eval()
    xt, yt = (torch.stack(t) for t in zip(*[build_dataset(cfg, "test")[i] for i in range(2)]))
    with torch.no_grad():
        torch.manual_seed(1)
        pred = model(xt)
        torch.manual_seed(1)
        torch.testing.assert_close(pred, _by_hand(model, xt, padded), rtol=1e-5, atol=1e-6)
    acc = MetricAccumulator(["mse", "mae", "psnr", "ssim"])
    acc.update(pred, yt)
    got = acc.compute()
    expected = _independent_scores(pred.double().numpy(), yt.double().numpy())
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6), key


def test_a_padded_run_trains_evaluates_and_says_so_once(tmp_path, caplog):
    from pdr.engine import Trainer
    from pdr.results.evaluation import evaluate_run

    cfg = sized_config(BACKBONES["simvp"], PREDGS, 59, 59)
    with caplog.at_level(logging.INFO, logger="pdr"):
        Trainer(cfg, tmp_path / "run", show_progress=False).fit()
    said = [r.message for r in caplog.records if r.message.startswith("model: 59x59")]
    assert said == ["model: 59x59 frames are padded to 64x64 (replicate: 2 top, 3 bottom, 2 left, 3 right) and "
                    "predictions cropped back to 59x59 (simvp + predgs needs multiples of 8)"]
    result = evaluate_run(tmp_path / "run", save_images=False)
    model = pdr.load_run(tmp_path / "run")
    from pdr.data import build_dataset

    xt, yt = (torch.stack(t) for t in zip(*[build_dataset(cfg, "test")[i] for i in range(2)]))
    with torch.no_grad():
        pred = model(xt)
    expected = _independent_scores(pred.double().numpy(), yt.double().numpy())
    for key, value in expected.items():
        assert result.metrics[key] == pytest.approx(value, rel=1e-6), key
    assert result.shown[2].shape[-2:] == (59, 59)


def test_pad_none_refuses_with_the_multiple_and_reflect_pads_by_mirroring():
    cfg = sized_config(BACKBONES["convlstm"], None, 59, 59)
    cfg["model"]["pad"] = "none"
    with pytest.raises(ConfigError, match=r"model.pad: none: convlstm needs H and W multiples of 8, the frames are "
                                          r"59x59; set pad: auto"):
        pdr.build_model(cfg)
    model = pdr.create_model(BACKBONES["convlstm"], (2, 1, 59, 59), 2, pad_mode="reflect")
    assert model.padding == FramePadding(2, 3, 2, 3, "reflect")
    fits = pdr.create_model(BACKBONES["convlstm"], (2, 1, 64, 64), 2)
    assert not fits.padding and fits.backbone.in_shape == (2, 1, 64, 64)


def test_rollouts_past_the_trained_horizon_and_samples_are_cropped():
    torch.manual_seed(0)
    model = pdr.create_model(BACKBONES["srvp"], (2, 1, 59, 59), 2, adapter=PREDGS).eval()
    x = torch.rand(1, 2, 1, 59, 59)
    with torch.no_grad():
        assert model(x, num_frames=5).shape == (1, 5, 1, 59, 59)
        assert model.sample(x, 3).shape == (1, 3, 2, 1, 59, 59)
