"""pdr.load_run and PDRModel.predict: a finished run from Python; tools/eval.py --set on other data."""
import numpy as np
import pytest
import torch

import pdr
from pdr.config import load_config
from pdr.engine import Trainer
from pdr.engine.checkpoint import load_checkpoint
from pdr.errors import ConfigError
from pdr.results.evaluation import evaluate_run

TINY = ["model.backbone.hid_S=8", "model.backbone.hid_T=16", "model.backbone.N_T=2", "data.num_train=8",
        "data.num_val=4", "data.num_test=4", "data.batch_size=4", "train.max_steps=2",
        "model.adapter.num_gaussians=16", "model.adapter.hidden=8"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from conftest import REPO

    work = tmp_path_factory.mktemp("load_run") / "simvp_predgs"
    Trainer(load_config(REPO / "configs/advected_fields/simvp_predgs.yaml", TINY), work, show_progress=False).fit()
    return work


def test_load_run_gives_the_trained_model_in_eval_mode(run):
    model = pdr.load_run(run)
    assert isinstance(model, pdr.PDRModel) and not model.training
    assert model.config["model"]["backbone"]["name"] == "simvp" and model.config["data"]["num_train"] == 8
    state = load_checkpoint(run / "checkpoints" / "best.pt")["model"]
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, state[name], rtol=0, atol=0, msg=name)
    last = pdr.load_run(run, checkpoint="last")
    assert last.checkpoint_path.name == "last.pt"
    file = pdr.load_run(run / "checkpoints" / "best.pt")  # a checkpoint file alone (its stored config)
    assert file.config["model"]["adapter"]["name"] == "predgs"


def test_checkpoints_store_the_normalisation_that_predict_applies(run):
    stored = load_checkpoint(run / "checkpoints" / "best.pt")["data_stats"]
    assert stored == {"mean": None, "std": None}  # advected_fields is used as it is
    model = pdr.load_run(run)
    x = torch.rand(3, 4, 2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.predict(x), model(x), rtol=0, atol=0)
    # a normalised data set: raw = normalised * std + mean, per channel
    model.data_mean, model.data_std = [0.5, -1.0], [2.0, 4.0]
    mean = torch.tensor([0.5, -1.0]).view(1, 1, 2, 1, 1)
    std = torch.tensor([2.0, 4.0]).view(1, 1, 2, 1, 1)
    raw = x * 10 - 3
    with torch.no_grad():
        expected = model((raw - mean) / std) * std + mean
    torch.testing.assert_close(model.predict(raw), expected)
    torch.testing.assert_close(model.predict((raw - mean) / std, normalised=True), (expected - mean) / std)


def test_predict_takes_one_sequence_as_an_array_and_keeps_the_mode(run):
    model = pdr.load_run(run)
    sequence = np.random.default_rng(0).random((4, 2, 32, 32), dtype=np.float32)
    model.train()
    out = model.predict(sequence)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32  # an array in, an array out
    assert out.shape == (4, 2, 32, 32) and model.training
    model.eval()
    with torch.no_grad():
        np.testing.assert_array_equal(out, model(torch.from_numpy(sequence)[None])[0].numpy())
    tensor = model.predict(torch.from_numpy(sequence).double()[None])
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float64 and not tensor.requires_grad
    with pytest.raises(ValueError, match=r"model input must have shape \(B, 4, 2, 32, 32\)"):
        model.predict(np.zeros((4, 3, 32, 32), dtype=np.float32))


def test_load_run_applies_overrides_with_the_config_checks(run):
    model = pdr.load_run(run, overrides=["data.num_test=2"])
    assert model.config["data"]["num_test"] == 2 and model.config.origin("data.num_test") == "--set"
    with pytest.raises(ConfigError, match="data.num_tset"):
        pdr.load_run(run, overrides=["data.num_tset=2"])


def test_eval_on_other_data_with_set(run):
    res = evaluate_run(run, overrides=["data.num_test=2"], metrics=["mse"], num_vis=4, save_images=False)
    assert res.shown[0].shape[0] == 2  # only two test sequences exist now
    res = evaluate_run(run, metrics=["mse"], num_vis=4, save_images=False)
    assert res.shown[0].shape[0] == 4


def test_eval_cli_set(run, capsys):
    from pdr.cli.eval import main

    assert main([str(run), "--set", "data.num_test=2", "--metrics", "mse", "--no-images", "--format", "json"]) == 0
    assert '"run": "simvp_predgs"' in capsys.readouterr().out
    assert main([str(run), "--set", "data.num_test=two", "--no-images"]) == 2
    assert "data.num_test" in capsys.readouterr().err
    assert main([str(run), "--set", "train.precison=bf16", "--no-images"]) == 2
    err = capsys.readouterr().err
    assert "train.precison: unknown key" in err and "precision" in err
    assert main([str(run), "--set", "novalue", "--no-images"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_eval_set_data_root_scores_the_other_data(repo, tmp_path, capsys):
    """A Moving MNIST run evaluated with ``--set data.root=<other digits>``: the table's MSE and MAE are the run's
    model on the test sequences made of the other digits (OpenSTL's: summed over pixels, averaged over frames and
    sequences), computed here."""
    import json

    from test_benchmark_data import fake_digits, write_idx

    from pdr.cli.eval import main
    from pdr.data import build_dataset
    from pdr.model import build_model

    for name, seed in (("digits_a", 0), ("digits_b", 1)):
        (tmp_path / name).mkdir()
        write_idx(tmp_path / name / "t10k-images-idx3-ubyte.gz", fake_digits(30, seed=seed))
    small = ["model.backbone.hid_S=8", "model.backbone.hid_T=16", "model.backbone.N_S=2", "model.backbone.N_T=2",
             "data.image_size=32", "data.in_frames=4", "data.out_frames=4", "data.seq_len=8", "data.num_train=4",
             "data.num_val=2", "data.num_test=4", "data.val_digits=10", "data.test_digits=10", "data.batch_size=2",
             "data.num_workers=0", "train.max_steps=2", "train.tensorboard=false", "eval.metrics=[mse, mae]"]
    config = repo / "configs" / "moving_mnist" / "simvp.yaml"
    cfg = load_config(config, [*small, f"data.root={tmp_path / 'digits_a'}"])
    Trainer(cfg, tmp_path / "run", show_progress=False).fit()

    assert main([str(tmp_path / "run"), "--set", f"data.root={tmp_path / 'digits_b'}", "--no-images",
                 "--format", "json", "--device", "cpu"]) == 0
    reported = json.loads(capsys.readouterr().out)[0]
    model = build_model(cfg).eval()
    model.load_state_dict(load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["model"])
    expected = {}
    for root in ("digits_a", "digits_b"):
        test = build_dataset(load_config(config, [*small, f"data.root={tmp_path / root}"]), "test")
        x, y = (torch.stack(parts).double() for parts in zip(*(test[i] for i in range(len(test)))))
        with torch.no_grad():
            err = model(x.float()).double() - y
        expected[root] = {"mse": (err**2).sum(dim=(2, 3, 4)).mean().item(),
                          "mae": err.abs().sum(dim=(2, 3, 4)).mean().item()}
    for metric in ("mse", "mae"):
        assert reported[metric] == pytest.approx(expected["digits_b"][metric], rel=1e-5), metric
        assert reported[metric] != pytest.approx(expected["digits_a"][metric], rel=1e-3), metric


def test_predict_rolls_out_past_the_trained_horizon(run):
    model = pdr.load_run(run)  # trained for 4 -> 4 frames; SimVP predicts 4 per call
    x = torch.rand(2, 4, 2, 32, 32)
    with torch.no_grad():
        first = model(x)
        second = model(first)  # the rollout feeds the model's own predictions back
    long = model.predict(x, num_frames=10)
    assert long.shape == (2, 10, 2, 32, 32)
    torch.testing.assert_close(long[:, :4], first, rtol=0, atol=0)
    torch.testing.assert_close(long[:, 4:8], second, rtol=0, atol=0)
    assert model.predict(x, num_frames=3).shape == (2, 3, 2, 32, 32)
    # a longer clip: the future of its last T_in frames
    clip = torch.cat([torch.rand(2, 3, 2, 32, 32), x], dim=1)
    torch.testing.assert_close(model.predict(clip), first, rtol=0, atol=0)
    with pytest.raises(ValueError, match="predict: 3 observed frames, the model predicts from 4"):
        model.predict(x[:, :3])


def test_predict_takes_uint8_frames_with_the_data_scaling_or_refuses_them(run):
    model = pdr.load_run(run)
    assert model.data_uint8_scale is None  # advected_fields are not 8-bit images
    frames = np.random.default_rng(0).integers(0, 256, (4, 2, 32, 32), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"uint8 frames \(0..255\), but this run's data \(advected_fields\) are not "
                                         r"8-bit images"):
        model.predict(frames)
    model.data_uint8_scale = 1 / 255  # as for a data set of 8-bit images scaled to [0, 1]
    out = model.predict(frames)
    expected = model.predict(frames.astype(np.float32) / 255)
    assert out.dtype == np.uint8 and out.shape == (4, 2, 32, 32)
    np.testing.assert_array_equal(out, np.clip(np.round(expected * 255), 0, 255).astype(np.uint8))
    with pytest.raises(ValueError, match=r"float frames range over \[0, 255\], but this run's data \(advected_fields\) "
                                         r"are 8-bit images scaled to \[0, 1\]: pass them as uint8"):
        model.predict(frames.astype(np.float32) * 0 + np.linspace(0, 255, 32, dtype=np.float32))
    with pytest.raises(ValueError, match="frames of type int64; expected float frames"):
        model.predict(frames.astype(np.int64))
