"""pdr.metrics follows OpenSTL's conventions (docs/metrics.md)."""
import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from pdr.metrics import METRICS, MetricAccumulator, evaluate, higher_is_better, load_lpips, networks


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


def test_unknown_metric_and_bad_shapes():
    with pytest.raises(ValueError, match="unknown metric 'psnrr'. Did you mean 'psnr'"):
        evaluate(np.zeros((1, 1, 1, 4, 4)), np.zeros((1, 1, 1, 4, 4)), metrics=("psnrr",))
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        evaluate(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 4)))


# ----------------------------------------------------------------------------- OpenSTL's formulas
# Written from OpenSTL's definitions (openstl/core/metrics.py), independently of pdr.metrics:
#   MSE  = mean over B, T of sum over C, H, W of err^2        (spatial_norm: that sum divided by C*H*W)
#   MAE  = the same with |err|;  RMSE = sqrt(MSE)
#   PSNR = per frame 20 log10(1 / sqrt(mean err^2)) on the clipped prediction, averaged
#   SNR  = per frame 10 log10(mean true^2 / mean (true - pred)^2) on the clipped prediction, averaged
#   channel_names: each metric per group of C / n channels (``mse_<name>``); the overall value is the mean over
#   the groups.


def openstl_mse(pred, true, spatial_norm=False, power=2):
    b, t, c, h, w = pred.shape
    total = 0.0
    for i in range(b):
        for j in range(t):
            frame = float((np.abs(pred[i, j] - true[i, j]) ** power).sum())
            total += frame / (c * h * w) if spatial_norm else frame
    return total / (b * t)


def test_spatial_norm_divides_by_c_h_w_as_openstl(pair):
    pred, true = pair
    res = evaluate(pred, true, metrics=("mse", "mae", "rmse"), spatial_norm=True)
    assert res["mse"] == pytest.approx(openstl_mse(pred, true, True), rel=1e-12)
    assert res["mae"] == pytest.approx(openstl_mse(pred, true, True, power=1), rel=1e-12)
    assert res["rmse"] == pytest.approx(math.sqrt(openstl_mse(pred, true, True)), rel=1e-12)
    summed = evaluate(pred, true, metrics=("mse",))
    assert summed["mse"] == pytest.approx(openstl_mse(pred, true, False), rel=1e-12)
    assert summed["mse"] / res["mse"] == pytest.approx(2 * 16 * 16)  # C x H x W


def test_per_variable_metrics_as_openstl_channel_names():
    rng = np.random.default_rng(3)
    true = rng.random((2, 3, 4, 8, 8))  # two variables of two channels each
    pred = true + rng.standard_normal(true.shape) * np.array([0.1, 0.1, 0.5, 0.5]).reshape(1, 1, 4, 1, 1)
    mean, std = np.array([270.0, 270.0, 0.5, 0.5]), np.array([10.0, 10.0, 0.2, 0.2])
    res = evaluate(pred, true, metrics=("mse", "mae", "rmse", "psnr"), mean=mean, std=std, spatial_norm=True,
                   channel_names=["t2m", "tcc"], per_frame=True)
    raw_p, raw_t = (x * std.reshape(1, 1, 4, 1, 1) + mean.reshape(1, 1, 4, 1, 1) for x in (pred, true))
    groups = {"t2m": slice(0, 2), "tcc": slice(2, 4)}
    for name, sl in groups.items():
        assert res[f"mse_{name}"] == pytest.approx(openstl_mse(raw_p[:, :, sl], raw_t[:, :, sl], True), rel=1e-12)
        assert res[f"mae_{name}"] == pytest.approx(openstl_mse(raw_p[:, :, sl], raw_t[:, :, sl], True, 1), rel=1e-12)
        assert res[f"rmse_{name}"] == pytest.approx(math.sqrt(res[f"mse_{name}"]), rel=1e-12)
        assert len(res[f"mse_{name}_per_frame"]) == 3
    for metric in ("mse", "mae", "rmse"):
        assert res[metric] == pytest.approx((res[f"{metric}_t2m"] + res[f"{metric}_tcc"]) / 2, rel=1e-12)
    assert res["mse_t2m"] > 1.0 > res["mse_tcc"]  # the units of each variable
    assert "psnr_t2m" not in res  # OpenSTL splits MSE, MAE and RMSE only
    with pytest.raises(ValueError, match="channel_names"):
        evaluate(pred, true, metrics=("mse",), channel_names=["a", "b", "c"])


def test_snr_and_psnr_by_openstl_formula(pair):
    pred, true = pair
    res = evaluate(pred, true, metrics=("snr", "psnr"))
    clipped = np.clip(pred, 0, 1)
    snr = [10 * np.log10((true[b, t] ** 2).mean() / ((true[b, t] - clipped[b, t]) ** 2).mean())
           for b in range(3) for t in range(4)]
    psnr = [-10 * np.log10(((clipped[b, t] - true[b, t]) ** 2).mean()) for b in range(3) for t in range(4)]
    assert res["snr"] == pytest.approx(np.mean(snr), rel=1e-12)
    assert res["psnr"] == pytest.approx(np.mean(psnr), rel=1e-12)


def test_psnr_uint8_is_the_8bit_psnr_of_e3d_lstm_and_predrnn():
    """E3D-LSTM's and PredRNN's test loops: clip the prediction to [0, 1], np.uint8(x * 255) both frames (truncating),
    per frame 20 log10(255) - 10 log10(mean squared difference), averaged over the batch, then over the frames."""
    rng = np.random.default_rng(1)
    true = (rng.integers(0, 256, (4, 3, 1, 12, 10)) / 255).astype(np.float32)  # an 8-bit video in [0, 1]
    pred = (true + 0.05 * rng.standard_normal(true.shape)).astype(np.float32)
    per_frame = []
    for t in range(3):
        x = np.uint8(true[:, t].transpose(0, 2, 3, 1) * 255)  # as their code: (B, H, W, C) frames
        gx = np.uint8(np.minimum(np.maximum(pred[:, t].transpose(0, 2, 3, 1), 0), 1) * 255)
        mse = np.sum((np.int32(gx) - np.int32(x)) ** 2, axis=(1, 2, 3), dtype=np.float32) / float(np.size(gx[0]))
        per_frame.append(np.mean(20 * np.log10(255) - 10 * np.log10(mse)))
    res = evaluate(pred, true, metrics=("psnr", "psnr_uint8"))
    assert res["psnr_uint8"] == pytest.approx(np.mean(per_frame), rel=1e-6)
    close = (true + 0.003 * rng.standard_normal(true.shape)).astype(np.float32)
    both = evaluate(close, true, metrics=("psnr", "psnr_uint8"))
    assert both["psnr"] - both["psnr_uint8"] > 1.0  # near the truth, 8-bit truncation dominates: distinct names
    acc = MetricAccumulator(["psnr_uint8"])
    acc.update(pred, true)
    assert acc.compute(per_frame=True)["psnr_uint8_per_frame"] == pytest.approx(per_frame, rel=1e-6)


@pytest.mark.parametrize("size,window", [((16, 16), 7), ((6, 9), 5), ((5, 5), 5), ((4, 30), 3), ((3, 3), 3)])
def test_ssim_of_frames_smaller_than_the_window_uses_the_largest_odd_window_that_fits(size, window):
    rng = np.random.default_rng(2)
    true = rng.random((2, 2, 2, *size))
    pred = np.clip(true + 0.1 * rng.standard_normal(true.shape), 0, 1)
    res = evaluate(pred, true, metrics=("ssim",))
    expected = [structural_similarity(pred[b, t].swapaxes(0, 2), true[b, t].swapaxes(0, 2), win_size=window,
                                      channel_axis=-1, data_range=2.0) for b in range(2) for t in range(2)]
    assert res["ssim"] == pytest.approx(np.mean(expected))
    if window == 7:
        assert "notes" not in res
    else:
        assert res["notes"]["ssim"] == (f"SSIM of {size[0]}x{size[1]} frames uses a {window}x{window} window (the "
                                        "standard 7x7 does not fit): not comparable with SSIM values of larger frames")


def test_ssim_of_frames_under_3_pixels_is_na_with_a_note():
    frames = np.random.default_rng(3).random((1, 2, 1, 2, 20))
    res = evaluate(frames, frames, metrics=("mse", "ssim"))
    assert res["ssim"] is None and res["mse"] == 0
    assert res["notes"]["ssim"] == "SSIM n/a: 2x20 frames are smaller than its smallest window (3x3)"


def test_weatherbench_declares_openstl_conventions():
    from pdr.data.base import VideoDataset
    from pdr.data.weatherbench import WeatherBench

    assert WeatherBench.spatial_norm is True and VideoDataset.spatial_norm is False
    assert WeatherBench.variable_names("t2m") is None  # one variable: no per-variable columns, as OpenSTL
    assert WeatherBench.variable_names(["t2m", "tcc"]) == ["t2m", "tcc"]


# ----------------------------------------------------------------------------- the registry


def test_every_metric_is_registered_once_with_a_direction():
    for name, metric in METRICS.items():
        assert metric.name == name and metric.family in ("pixel", "perceptual", "video", "collision")
        assert metric.definition
    assert higher_is_better("psnr") and not higher_is_better("mse") and not higher_is_better("loss")
    assert higher_is_better("sharpness") is None  # 1 is best: no order
    assert not higher_is_better("mse_t2m") and higher_is_better("collision_f1")
    assert not higher_is_better("collision_timing_error") and not higher_is_better("fvd")
    with pytest.raises(KeyError, match="Did you mean 'ssim'"):
        higher_is_better("sssim")


# ----------------------------------------------------------------------------- LPIPS weights on first use


def test_lpips_downloads_the_weights_on_first_use(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("PDR_OFFLINE", raising=False)
    calls = []

    def fake_download(url, path):
        calls.append((url, path))
        import torchvision

        torch.save(torchvision.models.alexnet().state_dict(), path)  # random weights, in torchvision's format

    monkeypatch.setattr(networks, "download_file", fake_download)
    model, note = load_lpips()
    assert note == "" and model is not None
    assert calls == [(networks.ALEXNET_URL, tmp_path / "hub" / "checkpoints" / networks.ALEXNET_FILE)]
    load_lpips()
    assert len(calls) == 1  # cached: fetched once


def test_lpips_download_failure_is_na_with_a_note(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("PDR_OFFLINE", raising=False)

    def no_network(url, path):
        raise OSError("Name or service not known")

    monkeypatch.setattr(networks, "download_file", no_network)
    res = evaluate(np.zeros((1, 2, 1, 8, 8)), np.zeros((1, 2, 1, 8, 8)), metrics=("mse", "lpips", "tlpips"))
    assert res["lpips"] is None and res["tlpips"] is None and res["mse"] == 0.0
    note = res["notes"]["lpips"]
    assert "downloading the AlexNet weights failed" in note and "Name or service not known" in note
    assert networks.ALEXNET_FILE in note and str(tmp_path) in note and "TORCH_HOME" in note


@pytest.mark.parametrize("how", ["env", "set_offline"])
def test_offline_never_touches_the_network(monkeypatch, tmp_path, how):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("PDR_OFFLINE", raising=False)
    if how == "env":
        monkeypatch.setenv("PDR_OFFLINE", "1")
    else:
        networks.set_offline(True)
    attempted = []
    monkeypatch.setattr(networks, "download_file", lambda url, path: attempted.append(url))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: attempted.append(a))
    model, note = load_lpips()
    assert model is None and attempted == []
    assert "downloads are off" in note and "PDR_OFFLINE" in note and networks.ALEXNET_FILE in note


def test_lpips_na_note_names_the_reason(monkeypatch, tmp_path):
    """n/a for frames LPIPS cannot take (2 channels), whether or not the network is there, and for missing weights
    with downloads off (``PDR_OFFLINE=1``, set for every test)."""
    import lpips

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # nothing cached
    grey, two = np.zeros((1, 3, 1, 8, 8)), np.zeros((1, 3, 2, 8, 8))
    offline = evaluate(grey, grey, metrics=("mse", "lpips", "tlpips"))
    for name in ("lpips", "tlpips"):
        assert offline[name] is None and "not in the torch cache and downloads are off" in offline["notes"][name]
    net = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()
    for given in (None, net):
        res = evaluate(two, two, metrics=("mse", "lpips", "tlpips"), lpips_model=given)
        assert res["mse"] == 0.0 and res["lpips"] is None and res["tlpips"] is None  # n/a, as without weights
        assert res["notes"] == {"lpips": "LPIPS n/a: it needs 1 or 3 channels, the data has 2",
                                "tlpips": "tlpips n/a: it needs 1 or 3 channels, the data has 2"}


# ----------------------------------------------------------------------------- model selection


def documented_monitors(repo) -> dict[str, str]:
    """benchmark -> monitor, from the table of docs/datasets.md's "Model selection" section."""
    text = (repo / "docs" / "datasets.md").read_text().split("## Model selection", 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[1].startswith("`val/"):
            for name in cells[0].split(","):
                out[name.strip().strip("`")] = cells[1].strip("`")
    return out


def test_each_benchmark_selects_checkpoints_by_one_monitor(repo):
    from pdr.config import SCHEMA, load_config

    documented = documented_monitors(repo)
    folders = sorted(p for p in (repo / "configs").iterdir() if p.is_dir() and not p.name.startswith("_"))
    assert {p.name for p in folders} == set(documented)
    for folder in folders:
        for path in sorted(folder.glob("*.yaml")):
            monitor = load_config(path, validate=False).get_path("train.monitor", SCHEMA["train"]["monitor"].default)
            assert monitor == documented[folder.name], f"{path}: train.monitor {monitor}"


def test_monitor_and_eval_metrics_are_checked_when_the_config_loads(repo):
    from pdr.config import load_config
    from pdr.errors import ConfigError

    config = repo / "configs" / "demo" / "simvp.yaml"
    with pytest.raises(ConfigError, match=r"train\.monitor: 'val/msee' is not a value that validation logs\. "
                                          r"Did you mean 'val/mse'\? Valid: val/loss, val/mse"):
        load_config(config, ["train.monitor=val/msee"])
    with pytest.raises(ConfigError, match=r"--set: eval\.metrics: unknown metric 'lpip'\. Did you mean 'lpips'\? "
                                          r"Available: mse, mae"):
        load_config(config, ["eval.metrics=[mse, lpip]"])
    assert load_config(config, ["train.monitor=val/psnr", "eval.metrics=[snr, tlpips, fvd]"])["train"]["monitor"]


def test_latent_flow_vae_phase_is_selected_on_reconstructions(repo, tmp_path):
    """Validation of the VAE phase scores decode(encode(targets)), not the repeated last frame."""
    from pdr.config import load_config
    from pdr.engine import Trainer

    cfg = load_config(repo / "configs" / "bouncing_sprites" / "latent_flow_vae.yaml", [
        "data.num_train=4", "data.num_val=4", "data.num_test=4", "data.batch_size=4", "train.max_steps=1",
        "model.backbone.perceptual=random", "train.tensorboard=false"])
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    res = trainer.evaluate_split(trainer.val_loader)
    model = trainer.model.eval()
    recon_err, repeat_err = [], []
    with torch.no_grad():
        for x, y in trainer.val_loader:
            mean, _ = model.backbone.vae.encode(y.flatten(0, 1))  # the VAE's own pieces, not reconstruct()
            recon = model.backbone.vae.decode(mean).view_as(y)
            recon_err.append(((recon - y) ** 2).sum(dim=(2, 3, 4)))
            repeat_err.append(((model(x) - y) ** 2).sum(dim=(2, 3, 4)))
    assert res["mse"] == pytest.approx(float(torch.cat(recon_err).mean()), rel=1e-5)
    assert res["mse"] != pytest.approx(float(torch.cat(repeat_err).mean()), rel=1e-3)


def test_eval_notes_when_validation_used_the_test_persons(repo, tmp_path, tiny_overrides):
    from test_benchmark_data import write_kth

    from pdr.results.table import format_table
    from pdr.config import load_config
    from pdr.engine import Trainer
    from pdr.results.evaluation import evaluate_run

    write_kth(tmp_path / "kth", persons=(1, 2, 17), frames=12)
    small = [*tiny_overrides, f"data.root={tmp_path / 'kth'}", "data.image_size=16", "data.in_frames=2",
             "data.out_frames=2", "data.clip_stride=4", "data.eval_clip_stride=4", "data.num_workers=0",
             "train.max_steps=1", "train.tensorboard=false", "eval.metrics=[mse]"]
    small = [o for o in small if not o.startswith(("data.num_", "data.batch_size"))] + ["data.batch_size=2",
                                                                                          "data.num_workers=0"]
    runs = {}
    for name, extra in (("on_test", []), ("held_out", ["data.train_persons=[1]", "data.val_persons=[2]"])):
        cfg = load_config(repo / "configs" / "kth" / "simvp.yaml", [*small, *extra])
        Trainer(cfg, tmp_path / name, show_progress=False).fit()
        runs[name] = evaluate_run(tmp_path / name, save_images=False)
    assert "selected on the test data" in runs["on_test"].notes["validation"]
    assert "validation" not in runs["held_out"].notes
    assert "selected on the test data" in format_table([runs["on_test"]])
    last = evaluate_run(tmp_path / "on_test", checkpoint="last", save_images=False)
    assert "validation" not in last.notes  # the last checkpoint was not selected


def write_weather(root, variables=("2m_temperature", "total_cloud_cover"), years=(2010, 2011, 2012), hours=12):
    import xarray as xr

    for v, folder in enumerate(variables):
        (root / folder).mkdir(parents=True)
        for year in years:
            time = np.datetime64(f"{year}-01-01T00") + np.arange(hours).astype("timedelta64[h]")
            values = (250 * (1 - v) + 0.5 * v + np.random.default_rng(year + v).standard_normal((hours, 32, 64)))
            xr.Dataset({"x": (("time", "lat", "lon"), values.astype(np.float32))}, coords={"time": time}).to_netcdf(
                root / folder / f"{folder}_{year}_5.625deg.nc")


def test_weatherbench_runs_are_evaluated_per_pixel_and_per_variable(repo, tmp_path, tiny_overrides):
    from pdr.config import load_config
    from pdr.data import build_dataset
    from pdr.engine import Trainer
    from pdr.engine.checkpoint import load_checkpoint
    from pdr.results.evaluation import evaluate_run
    from pdr.model import build_model

    write_weather(tmp_path / "wb")
    overrides = [o for o in tiny_overrides if not o.startswith("data.num_")] + [
        f"data.root={tmp_path / 'wb'}", "data.variable=[t2m, tcc]", "data.in_frames=2", "data.out_frames=2",
        "data.train_years=[2010,2010]", "data.val_years=[2011,2011]", "data.test_years=[2012,2012]", "data.stride=3",
        "data.num_workers=0", "train.max_steps=1", "train.tensorboard=false", "eval.metrics=[mse, mae, rmse]"]
    cfg = load_config(repo / "configs" / "weatherbench" / "simvp.yaml", overrides)
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    trainer.fit()
    assert {"val/mse_t2m", "val/mse_tcc"} <= set(trainer.history[-1])
    res = evaluate_run(tmp_path / "run", save_images=False).metrics

    model = build_model(cfg).eval()
    model.load_state_dict(load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["model"])
    test = build_dataset(cfg, "test")
    pairs = [test[i] for i in range(len(test))]
    with torch.no_grad():
        pred = model(torch.stack([x for x, _ in pairs])).numpy()
    true = torch.stack([y for _, y in pairs]).numpy()
    std, mean = (np.asarray(s).reshape(1, 1, 2, 1, 1) for s in (test.std, test.mean))
    pred, true = pred * std + mean, true * std + mean
    for c, name in enumerate(("t2m", "tcc")):
        part = (pred[:, :, c:c + 1], true[:, :, c:c + 1])
        assert res[f"mse_{name}"] == pytest.approx(openstl_mse(*part, spatial_norm=True), rel=1e-5)
        assert res[f"mae_{name}"] == pytest.approx(openstl_mse(*part, spatial_norm=True, power=1), rel=1e-5)
    assert res["mse"] == pytest.approx((res["mse_t2m"] + res["mse_tcc"]) / 2, rel=1e-9)


@pytest.mark.parametrize("tool", ["train", "eval"])
def test_offline_flag_of_the_tools_forbids_downloads(monkeypatch, tmp_path, tool):
    import importlib

    monkeypatch.delenv("PDR_OFFLINE", raising=False)
    main = importlib.import_module(f"pdr.cli.{tool}").main
    argv = ["--config", str(tmp_path / "missing.yaml")] if tool == "train" else [str(tmp_path / "missing")]
    assert main([*argv, "--offline"]) != 0  # fails on the missing file, after the flag took effect
    assert networks.offline()
