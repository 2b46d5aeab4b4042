"""pdr.metrics follows OpenSTL's conventions (docs/pdr-method.md, section 4)."""
import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from pdr.metrics import MetricAccumulator, evaluate, load_lpips


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    true = rng.random((3, 4, 2, 16, 16))
    pred = np.clip(true + 0.1 * rng.standard_normal(true.shape), -0.2, 1.2)
    return pred, true


def test_mse_mae_rmse_sum_over_pixels_mean_over_frames(pair):
    pred, true = pair
    res = evaluate(pred, true, metrics=("mse", "mae", "rmse"))
    assert res["mse"] == pytest.approx(((pred - true) ** 2).sum(axis=(2, 3, 4)).mean())
    assert res["mae"] == pytest.approx(np.abs(pred - true).sum(axis=(2, 3, 4)).mean())
    assert res["rmse"] == pytest.approx(math.sqrt(res["mse"]))


def test_psnr_clips_the_prediction_per_frame(pair):
    pred, true = pair
    res = evaluate(pred, true, metrics=("psnr",))
    clipped = np.clip(pred, 0, 1)
    per_frame = [20 * np.log10(1 / np.sqrt(((clipped[b, t] - true[b, t]) ** 2).mean()))
                 for b in range(3) for t in range(4)]
    assert res["psnr"] == pytest.approx(np.mean(per_frame))


def test_ssim_uses_openstl_settings(pair):
    pred, true = pair
    res = evaluate(pred, true, metrics=("ssim",))
    clipped = np.clip(pred, 0, 1)
    values = [structural_similarity(clipped[b, t].swapaxes(0, 2), true[b, t].swapaxes(0, 2), win_size=7,
                                    channel_axis=-1, data_range=2.0) for b in range(3) for t in range(4)]
    assert res["ssim"] == pytest.approx(np.mean(values))
    # data_range 2.0, not the data's range 1.0: the published numbers depend on this choice
    other = np.mean([structural_similarity(clipped[0, 0].swapaxes(0, 2), true[0, 0].swapaxes(0, 2),
                                           channel_axis=-1, data_range=1.0)])
    assert other != pytest.approx(values[0])


def test_normalisation_is_undone_before_errors(pair):
    pred, true = pair
    mean, std = np.array([0.5, 2.0]), np.array([2.0, 3.0])
    res = evaluate(pred, true, metrics=("mse",), mean=mean, std=std)
    raw_err = (pred - true) * std.reshape(1, 1, 2, 1, 1)
    assert res["mse"] == pytest.approx((raw_err**2).sum(axis=(2, 3, 4)).mean())


def test_tensors_and_arrays_agree(pair):
    pred, true = pair
    a = evaluate(pred, true, metrics=("mse", "ssim"))
    b = evaluate(torch.from_numpy(pred), torch.from_numpy(true), metrics=("mse", "ssim"))
    assert a == pytest.approx(b)


def test_accumulator_over_batches_equals_one_call(pair):
    pred, true = pair
    names = ("mse", "mae", "rmse", "psnr", "ssim", "sharpness")
    whole = evaluate(pred, true, metrics=names, per_frame=True)
    acc = MetricAccumulator(names)
    for b in range(3):
        acc.update(pred[b : b + 1], true[b : b + 1])
    batched = acc.compute(per_frame=True)
    assert batched.keys() == whole.keys()
    for key, value in whole.items():
        assert np.allclose(batched[key], value, rtol=1e-12), key
    assert len(whole["psnr_per_frame"]) == 4


def test_sharpness_ratio_scores_blur_below_one():
    rng = np.random.default_rng(1)
    true = rng.random((2, 3, 1, 16, 16))
    blurred = (true + np.roll(true, 1, axis=-1) + np.roll(true, 1, axis=-2) + np.roll(true, (1, 1), axis=(-2, -1))) / 4
    assert evaluate(true, true, metrics=("sharpness",))["sharpness"] == pytest.approx(1.0)
    assert evaluate(blurred, true, metrics=("sharpness",))["sharpness"] < 0.8


def test_lpips_with_a_random_network():
    import lpips

    net = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()
    rng = np.random.default_rng(2)
    true = rng.random((2, 2, 3, 32, 32)).astype(np.float32)
    same = evaluate(true, true, metrics=("lpips",), lpips_model=net)
    noisy = evaluate(np.clip(true + 0.3 * rng.standard_normal(true.shape), 0, 1), true, metrics=("lpips",),
                     lpips_model=net)
    assert same["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert noisy["lpips"] > same["lpips"]
    grey = evaluate(true[:, :, :1], true[:, :, :1], metrics=("lpips",), lpips_model=net)
    assert grey["lpips"] == pytest.approx(0.0, abs=1e-6)


def test_lpips_without_weights_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model, note = load_lpips()
    assert model is None and "AlexNet weights not found" in note and str(tmp_path) in note
    res = evaluate(np.zeros((1, 1, 1, 8, 8)), np.zeros((1, 1, 1, 8, 8)), metrics=("mse", "lpips"))
    assert res["lpips"] is None and "LPIPS skipped" in res["notes"]["lpips"]


def test_unknown_metric_and_bad_shapes():
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(np.zeros((1, 1, 1, 4, 4)), np.zeros((1, 1, 1, 4, 4)), metrics=("fvd",))
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        evaluate(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 4)))
