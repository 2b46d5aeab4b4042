"""SRVP backbone (backbones/srvp.py) and the stochastic evaluation protocol (best of K / mean of K)."""
import numpy as np
import pytest
import torch
from torch import nn

import pdr
from pdr.backbones.srvp import gaussian_kl
from pdr.config import load_config
from pdr.engine.checkpoint import load_checkpoint, save_checkpoint
from pdr.errors import PDRError
from pdr.results.evaluation import SampleMetrics, evaluate_run, sample_predictions
from pdr.metrics import MetricAccumulator

SMALL = {"name": "srvp", "nf": 4, "g_dim": 16, "y_dim": 6, "z_dim": 4, "hidden": 16, "lstm_hidden": 16,
         "content_dim": 8, "num_init_frames": 2, "num_content_frames": 2}
METRICS = ["mse", "mae", "rmse", "psnr", "ssim", "sharpness"]
TINY_RUN = [
    "model.backbone.nf=4", "model.backbone.g_dim=16", "model.backbone.y_dim=6", "model.backbone.z_dim=4",
    "model.backbone.hidden=16", "model.backbone.lstm_hidden=16", "model.backbone.content_dim=8",
    "data.image_size=16", "data.in_frames=3", "data.out_frames=4", "data.seq_len=7", "data.sprite_size=[4.0, 8.0]", "data.num_train=4", "data.num_val=2",
    "data.num_test=4", "data.batch_size=2", "train.max_steps=1", "train.tensorboard=false",
    f"eval.metrics=[{', '.join(METRICS)}]",
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """SRVP runs many tiny matrix products (the latent rollout): on a shared CPU, OpenMP threads waiting
    for each other make them far slower than one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make(stochastic=True, in_shape=(3, 1, 16, 16), out_frames=4, adapter=None, **changes) -> pdr.PDRModel:
    torch.manual_seed(0)
    return pdr.create_model({**SMALL, "stochastic": stochastic, **changes}, in_shape, out_frames, adapter=adapter)


class ScaledState(nn.Module):
    """f(y, z) = a * y: the Euler solution after n steps of size h is (1 + a h)^n y_1."""

    def __init__(self, a: float):
        super().__init__()
        self.a = a

    def forward(self, y, z=None):
        return self.a * y


class Zero(nn.Module):
    def forward(self, y, z=None):
        return torch.zeros_like(y)


@pytest.mark.parametrize("stochastic", [True, False])
@pytest.mark.parametrize("frame", [(1, 16, 16), (3, 32, 32), (2, 16, 32)])
def test_shapes_in_training_eval_and_sampling(stochastic, frame):
    model = make(stochastic, in_shape=(3, *frame), out_frames=5)
    x, y = torch.rand(2, 3, *frame), torch.rand(2, 5, *frame)
    model.train()
    out = model(x, targets=y, step=0, return_output=True)
    assert out.frames.shape == (2, 5, *frame)
    losses = out.aux_losses
    assert set(losses) == ({"recon_obs", "kl_z", "kl_y"} if stochastic else {"recon_obs"})
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        out = model(x, return_output=True)
        assert out.frames.shape == (2, 5, *frame)
        assert out.aux_losses == {}
        assert model.backbone.sample(x, 3).frames.shape == (2, 3, 5, *frame)
        assert model.backbone.sample(x, 2, frame_rate=3).frames.shape == (2, 2, 15, *frame)
        features = model.backbone(x, return_features=True).features
        assert features.shape == (2, 5, model.backbone.feature_channels, *frame[1:])


def test_clear_errors_name_the_argument():
    # the backbone alone refuses sizes its levels do not divide (a model pads them: tests/test_any_size.py)
    args = {k: v for k, v in SMALL.items() if k != "name"}
    with pytest.raises(ValueError, match=r"levels=2 needs H and W divisible by 2\^2 = 4, got 30x30"):
        pdr.BACKBONES.build("srvp", in_shape=(3, 1, 30, 30), out_frames=4, **args)
    with pytest.raises(ValueError, match="divisible by 2\\^4 = 16, got 24x24"):
        pdr.BACKBONES.build("srvp", in_shape=(3, 1, 24, 24), out_frames=4, **args, levels=4)
    with pytest.raises(ValueError, match="num_init_frames"):
        pdr.create_model({**SMALL, "num_init_frames": 4}, (3, 1, 16, 16), 4)
    with pytest.raises(ValueError, match="num_content_frames"):
        pdr.create_model({**SMALL, "num_content_frames": 0}, (3, 1, 16, 16), 4)
    with pytest.raises(ValueError, match="dt"):
        pdr.create_model({**SMALL, "dt": 1.5}, (3, 1, 16, 16), 4)
    model = make()
    with pytest.raises(ValueError, match="frame_rate"):
        model.backbone.sample(torch.rand(1, 3, 1, 16, 16), 2, frame_rate=0)
    with pytest.raises(ValueError, match="num_samples"):
        model.backbone.sample(torch.rand(1, 3, 1, 16, 16), 0)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 3, 1, 16, 16\)"):
        model.backbone.sample(torch.rand(1, 2, 1, 16, 16), 2)
    model.train()
    with pytest.raises(ValueError, match="targets must have shape"):
        model(torch.rand(1, 3, 1, 16, 16), targets=torch.rand(1, 3, 1, 16, 16))


@pytest.mark.parametrize("stochastic", [True, False])
def test_zero_field_keeps_the_state_and_the_frames_constant(stochastic):
    model = make(stochastic).eval()
    model.backbone.dynamics = Zero()
    y1 = torch.randn(2, SMALL["y_dim"])
    states, _ = model.backbone.rollout_states(y1, 5, frame_rate=2)
    assert states.shape == (2, 11, SMALL["y_dim"])
    torch.testing.assert_close(states, y1.unsqueeze(1).expand_as(states), rtol=0, atol=0)
    with torch.no_grad():
        frames = model.backbone.sample(torch.rand(2, 3, 1, 16, 16), 2).frames
    torch.testing.assert_close(frames, frames[:, :, :1].expand_as(frames))


@pytest.mark.parametrize("dt,frame_rate,step", [(1.0, 1, 1.0), (1.0, 2, 0.5), (0.5, 1, 0.5), (0.25, 2, 0.25),
                                                (0.25, 1, 0.25), (0.5, 3, 1 / 3)])
def test_linear_field_follows_the_euler_solution(dt, frame_rate, step):
    """States at times 1 + j / frame_rate are (1 + a h)^(j / (frame_rate h)) y_1 with the step h used."""
    a = -0.7
    model = make(False, dt=dt)
    model.backbone.dynamics = ScaledState(a)
    y1 = torch.randn(3, SMALL["y_dim"], dtype=torch.float64)
    states, _ = model.backbone.double().rollout_states(y1, 4, frame_rate=frame_rate)
    steps_per_frame = round(1 / (frame_rate * step))
    expected = torch.stack([(1 + a * step) ** (j * steps_per_frame) * y1 for j in range(4 * frame_rate + 1)], dim=1)
    torch.testing.assert_close(states, expected)


def test_smaller_steps_approach_the_exact_solution():
    a, errors = -0.7, []
    for dt in (1.0, 0.5, 0.25, 0.125):
        model = make(False, dt=dt)
        model.backbone.dynamics = ScaledState(a)
        y1 = torch.ones(1, SMALL["y_dim"], dtype=torch.float64)
        states, _ = model.backbone.double().rollout_states(y1, 4)
        exact = torch.exp(a * torch.arange(5, dtype=torch.float64)).view(1, 5, 1) * y1
        errors.append((states - exact).abs().max().item())
    assert errors == sorted(errors, reverse=True) and errors[-1] < errors[0] / 4


@pytest.mark.parametrize("stochastic", [True, False])
def test_higher_frame_rate_keeps_the_training_frames(stochastic):
    """frame_rate=2 inserts one frame between each pair: the other frames are those of frame_rate=1
    (same Euler steps, dt = 0.5; the stochastic variant with the same random draws)."""
    model = make(stochastic, dt=0.5).eval()
    x = torch.rand(2, 3, 1, 16, 16)
    with torch.no_grad():
        torch.manual_seed(3)
        once = model.backbone.sample(x, 2, frame_rate=1).frames
        torch.manual_seed(3)
        twice = model.backbone.sample(x, 2, frame_rate=2).frames
    assert twice.shape[2] == 2 * once.shape[2]
    torch.testing.assert_close(twice[:, :, 1::2], once, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(twice[:, :, 0::2], once)  # the new frames lie in between


def test_kl_is_zero_when_the_posterior_equals_the_prior():
    mu, sigma = torch.randn(4, 5), torch.rand(4, 5) + 0.1
    torch.testing.assert_close(gaussian_kl(mu, sigma, mu, sigma), torch.zeros(4))
    assert (gaussian_kl(mu, sigma, mu + 0.3, sigma * 2) > 0).all()
    closed = gaussian_kl(torch.tensor([[1.0]]), torch.tensor([[2.0]]), torch.tensor([[0.0]]), torch.tensor([[1.0]]))
    torch.testing.assert_close(closed, torch.tensor([-np.log(2.0) + (4 + 1) / 2 - 0.5], dtype=torch.float32))

    model = make(True, beta=1.0).train()
    for head in (model.backbone.prior[-1].linear, model.backbone.posterior_head.linear):
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)  # both give N(0, softplus(0) + min_std) whatever their input
    out = model(torch.rand(2, 3, 1, 16, 16), targets=torch.rand(2, 4, 1, 16, 16), step=0, return_output=True)
    losses = out.aux_losses
    assert losses["kl_z"].item() == 0.0 and losses["kl_y"].item() > 0


def test_beta_and_warmup_scale_the_kl_terms():
    x, y = torch.rand(2, 3, 1, 16, 16), torch.rand(2, 4, 1, 16, 16)
    values = {}
    for beta, warmup, step in ((1.0, 0, 5), (2.0, 0, 5), (2.0, 10, 5)):
        model = make(True, beta=beta, kl_warmup_steps=warmup).train()
        torch.manual_seed(1)
        values[(beta, warmup)] = model(x, targets=y, step=step, return_output=True).aux_losses["kl_z"].item()
    assert values[(2.0, 0)] == pytest.approx(2 * values[(1.0, 0)], rel=1e-5)
    assert values[(2.0, 10)] == pytest.approx(values[(1.0, 0)], rel=1e-5)  # half-way through the warm-up


def test_samples_differ_when_stochastic_and_agree_when_deterministic():
    x = torch.rand(2, 3, 1, 16, 16)
    with torch.no_grad():
        stochastic = make(True).eval().backbone.sample(x, 4).frames
        deterministic = make(False).eval().backbone.sample(x, 4).frames
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.allclose(stochastic[:, i], stochastic[:, j])
    torch.testing.assert_close(deterministic, deterministic[:, :1].expand_as(deterministic), rtol=0, atol=0)
    with torch.no_grad():  # eval forward: the deterministic path, or one prior sample
        model = make(False).eval()
        torch.testing.assert_close(model(x), model.backbone.sample(x, 1).frames[:, 0])


def test_best_of_k_is_never_worse_than_the_mean_of_k():
    torch.manual_seed(0)
    true = torch.rand(3, 4, 1, 16, 16)
    samples = (true.unsqueeze(1) + 0.3 * torch.randn(3, 5, 4, 1, 16, 16)).clamp(0, 1)
    acc = SampleMetrics(METRICS)
    acc.update(samples, true)
    best, mean = acc.compute(per_frame=True)
    for m in ("mse", "mae", "rmse"):
        assert best[m] <= mean[m]
    for m in ("psnr", "ssim"):
        assert best[m] >= mean[m]
    assert best["sharpness"] is None and mean["sharpness"] > 0
    assert len(best["psnr_per_frame"]) == 4
    # mean of K is the plain metrics of every sample, and the best sample's MSE is the per-sequence minimum
    plain = MetricAccumulator(METRICS)
    plain.update(samples.flatten(0, 1), true.repeat_interleave(5, dim=0))
    for m, v in plain.compute().items():
        assert mean[m] == pytest.approx(v, rel=1e-9)
    per_sequence = ((samples - true.unsqueeze(1)) ** 2).sum(dim=(3, 4, 5)).mean(dim=2).double()
    assert best["mse"] == pytest.approx(per_sequence.min(dim=1).values.mean().item(), rel=1e-6)


def test_predgs_wrapped_model_samples_and_trains_a_step():
    model = make(True, adapter={"name": "predgs", "num_gaussians": 16, "hidden": 8, "pool": 2, "kernel_size": 7})
    x, y = torch.rand(2, 3, 1, 16, 16), torch.rand(2, 4, 1, 16, 16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    out = model(x, targets=y, step=0, return_output=True)  # as the trainer does: configured loss + auxiliary losses
    losses = out.aux_losses
    loss = torch.nn.functional.mse_loss(out.frames, y) + sum(losses.values())
    loss.backward()
    assert {"kl_z", "kl_y", "recon_obs"} <= set(losses)
    for name in ("backbone.posterior_head.linear.weight", "backbone.prior.2.linear.weight",
                 "backbone.dynamics.net.0.weight", "backbone.encoder.downs.0.0.weight", "adapter.fuse.weight"):
        assert model.get_parameter(name).grad is not None and model.get_parameter(name).grad.abs().sum() > 0, name
    optimizer.step()
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items() if k.startswith("adapter."))
    model.eval()
    with torch.no_grad():
        samples = sample_predictions(model, x, 3)
        assert samples.shape == (2, 3, 4, 1, 16, 16)
        # each sample went through the adapter: the same as the adapter applied to the backbone's sample
        torch.manual_seed(5)
        raw = model.backbone.sample(x, 3).frames
        torch.manual_seed(5)
        torch.testing.assert_close(sample_predictions(model, x, 3)[:, 1], model.adapter(raw[:, 1]))


def test_features_source_of_predgs_gets_per_sample_features():
    """Each sampled future of each sequence is refined with its own decoder features: those its frames are read
    out of (the decoder's last 3x3 conv and sigmoid)."""
    model = make(True, adapter={"name": "predgs", "num_gaussians": 16, "hidden": 8, "pool": 2, "kernel_size": 7,
                                "source": "features", "render_init": 1.0}).eval()  # the rendering counts at once
    x = torch.rand(2, 3, 1, 16, 16)
    with torch.no_grad():
        assert model(x).shape == (2, 4, 1, 16, 16)
        torch.manual_seed(3)
        raw = model.backbone.sample(x, 3, frame_rate=2, return_features=True)
        torch.manual_seed(3)
        refined = sample_predictions(model, x, 3, frame_rate=2)
        assert refined.shape == (2, 3, 8, 1, 16, 16) and raw.features.shape[:3] == (2, 3, 8)
        read_out = torch.sigmoid(model.backbone.decoder.readout(raw.features.flatten(0, 2)))
        torch.testing.assert_close(read_out.view_as(raw.frames), raw.frames)
        for k in range(3):
            torch.testing.assert_close(refined[:, k], model.adapter(raw.frames[:, k], raw.features[:, k]))
    # samples and sequences differ, so features handed to the wrong one would show
    assert not torch.allclose(raw.features[:, 0], raw.features[:, 1], atol=1e-3)
    assert not torch.allclose(raw.features[0], raw.features[1], atol=1e-3)


def test_save_load_round_trip(tmp_path):
    model = make(True).eval()
    save_checkpoint({"model": model.state_dict()}, tmp_path / "srvp.pt")
    other = make(True, out_frames=4)
    torch.manual_seed(123)
    for p in other.parameters():  # make sure the weights really come from the file
        p.data.normal_()
    other.load_state_dict(load_checkpoint(tmp_path / "srvp.pt")["model"])
    other.eval()
    x = torch.rand(2, 3, 1, 16, 16)
    with torch.no_grad():
        torch.manual_seed(7)
        a = model.backbone.sample(x, 3, frame_rate=2).frames
        torch.manual_seed(7)
        b = other.backbone.sample(x, 3, frame_rate=2).frames
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_train_then_evaluate_best_and_mean_of_k(repo, tmp_path, capsys):
    """The srvp_predgs config trains a step through the Trainer; tools/eval.py --samples K prints both rows."""
    from pdr.cli.eval import main as eval_main
    from pdr.engine import Trainer

    cfg = load_config(repo / "configs" / "bouncing_sprites" / "srvp_predgs.yaml", TINY_RUN + [
        "model.adapter.num_gaussians=16", "model.adapter.hidden=8", "model.adapter.kernel_size=7"])
    assert cfg["model"]["backbone"]["name"] == "srvp" and cfg["eval"]["num_samples"] == 10
    work = tmp_path / "srvp_predgs"
    row = Trainer(cfg, work, device="cpu", show_progress=False).fit()
    assert np.isfinite(row["val/mse"])

    result = evaluate_run(work, num_samples=3, device="cpu", save_images=False)
    # samples come from the run's train.seed: the same call gives the same numbers
    assert evaluate_run(work, num_samples=3, device="cpu", save_images=False).best_of_samples == result.best_of_samples
    assert result.num_samples == 3 and set(result.best_of_samples) == set(METRICS)
    for m in ("mse", "mae", "rmse"):
        assert result.best_of_samples[m] <= result.metrics[m]
    for m in ("psnr", "ssim"):
        assert result.best_of_samples[m] >= result.metrics[m]

    assert eval_main([str(work), "--samples", "4", "--device", "cpu", "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "| srvp_predgs (best of 4) |" in out and "| srvp_predgs (mean of 4) |" in out
    assert (work / "eval" / "metrics_test.json").is_file()
    assert (work / "eval" / "content_swap_test.png").is_file()  # SRVP runs get the swap figure
    assert eval_main([str(work), "--samples", "2", "--device", "cpu", "--metrics", "mse",
                      "--report", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Content / dynamics swap" in page and "content_swap_test.png" in page
    capsys.readouterr()
    # without --samples: the config's eval.num_samples (10 here)
    assert eval_main([str(work), "--device", "cpu", "--format", "csv", "--no-images", "--metrics", "mse", "psnr"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "run,mse,psnr" and lines[1].startswith("srvp_predgs (best of 10),")
    assert lines[2].startswith("srvp_predgs (mean of 10),")


def test_deterministic_backbones_refuse_several_samples(tmp_path, capsys):
    from pdr.cli.eval import main as eval_main
    from pdr.config import config_from_dict

    cfg = config_from_dict({
        "model": {"backbone": {"name": "simvp", "hid_S": 8, "hid_T": 16, "N_S": 2, "N_T": 2}},
        "data": {"name": "advected_fields", "in_frames": 4, "out_frames": 4, "num_test": 2, "image_size": 16},
        "eval": {"metrics": ["mse"]},
    })
    path = tmp_path / "simvp.pt"
    save_checkpoint({"model": pdr.build_model(cfg).state_dict(), "config": dict(cfg)}, path)
    with pytest.raises(PDRError, match="simvp' is deterministic"):
        evaluate_run(path, num_samples=5, save_images=False)
    assert evaluate_run(path, num_samples=1, save_images=False).num_samples == 1
    assert eval_main([str(path), "--samples", "5", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # (after the log line of the model)
    assert err.startswith("error: ") and "--samples=5 needs a stochastic model" in err and "--samples 1" in err
    assert eval_main([str(path), "--samples", "0", "--device", "cpu"]) == 2
    assert "must be an int >= 1" in capsys.readouterr().err
    with pytest.raises(PDRError, match="has no sample"):
        sample_predictions(pdr.build_model(cfg), torch.rand(1, 4, 2, 16, 16), 2)


# ----------------------------------------------------------------------------- the content variable and the skips

def test_content_comes_from_the_frames_it_is_said_to():
    """Eval mode: w is the mean over the evenly spaced frames content_frames names (here 0 and 2 of 3); changing
    frame 1 leaves it as it is, changing frame 2 does not. Training: the random frames it draws."""
    net = make(True).backbone.eval()
    x = torch.rand(2, 3, 1, 16, 16)
    assert net.content_frames(2, 3, x.device, random=False).tolist() == [[0, 2], [0, 2]]
    with torch.no_grad():
        codes, maps = net.encode(x)
        vector, skips = net.content(codes, maps, random=False)
        torch.testing.assert_close(vector, net.content_net((codes[:, 0] + codes[:, 2]) / 2))
        for level, m in enumerate(maps):
            torch.testing.assert_close(skips[level], (m[:, 0] + m[:, 2]) / 2)
        other = x.clone()
        other[:, 1] = torch.rand(2, 1, 16, 16)
        same = net.content(*net.encode(other), random=False)
        torch.testing.assert_close(same[0], vector, rtol=0, atol=0)
        other[:, 2] = torch.rand(2, 1, 16, 16)
        assert not torch.allclose(net.content(*net.encode(other), random=False)[0], vector)

        torch.manual_seed(11)
        drawn = net.content_frames(2, 3, x.device, random=True)
        torch.manual_seed(11)
        vector, skips = net.content(codes, maps, random=True)
        rows = torch.arange(2).unsqueeze(1)
        torch.testing.assert_close(vector, net.content_net(codes[rows, drawn].mean(1)))
        torch.testing.assert_close(skips[0], maps[0][rows, drawn].mean(1))


@pytest.mark.parametrize("skip_connections", [True, False])
def test_content_vector_and_skip_maps_each_change_the_frames(skip_connections):
    net = make(False, skip_connections=skip_connections).backbone.eval()
    with torch.no_grad():
        vector, maps = net.content(*net.encode(torch.rand(2, 3, 1, 16, 16)), random=False)
        states = torch.randn(2, 4, SMALL["y_dim"])
        frames, _ = net.decode(states, (vector, maps))
        moved, _ = net.decode(states, (vector + 1.0, maps))
        assert (moved - frames).abs().mean() > 1e-3
        rescaled, _ = net.decode(states, (vector, [m * 2.0 + 1.0 for m in maps]))
    if skip_connections:
        assert (rescaled - frames).abs().mean() > 1e-3
    else:  # the maps reach the decoder through the skips only
        torch.testing.assert_close(rescaled, frames, rtol=0, atol=0)


# ----------------------------------------------------------------------------- the content / dynamics swap

def test_content_swap_decodes_one_sequence_dynamics_with_the_other_content():
    net = make(False).backbone.eval()
    a, b = torch.rand(2, 3, 1, 16, 16), torch.rand(2, 3, 1, 16, 16)
    with torch.no_grad():
        swapped = net.content_swap(a, b)
        assert swapped.shape == (2, 7, 1, 16, 16)
        codes_b, _ = net.encode(b)  # the deterministic state path of b, decoded with the content of a
        states, _ = net.rollout_states(net.initial_state_params(codes_b)[0], 6)
        expected, _ = net.decode(states, net.content(*net.encode(a), random=False))
        torch.testing.assert_close(swapped, expected)
        own = net.content_swap(b, b)
        torch.testing.assert_close(own[:, 3:], net(b).frames)  # with its own content: the prediction
        assert (swapped - own).abs().mean() > 1e-4
    with pytest.raises(ValueError, match="same batch size"):
        net.content_swap(a, b[:1])


def test_content_swap_figure_pairs_neighbouring_sequences(tmp_path):
    from pdr.backbones.srvp_swap import save_content_swap_figure, swap_pairs

    net = make(True).backbone.eval()
    x = torch.rand(3, 3, 1, 16, 16)
    pairs = swap_pairs(net, x, seed=4)
    torch.manual_seed(4)
    with torch.no_grad():
        torch.testing.assert_close(pairs, net.content_swap(x, x.roll(-1, 0)))
    path = save_content_swap_figure(tmp_path / "swap.png", net, x.numpy(), np.random.rand(3, 4, 1, 16, 16))
    assert path.is_file() and path.stat().st_size > 1000
    assert save_content_swap_figure(tmp_path / "none.png", net, x[:1].numpy(), np.zeros((1, 4, 1, 16, 16))) is None


# ----------------------------------------------------------------------------- the dynamics the paper compares

def _gru_by_hand(cell: nn.GRUCell, x, h):
    """torch's GRUCell equations written out: r, u gates, candidate n, h' = (1 - u) n + u h."""
    gi, gh = x @ cell.weight_ih.T + cell.bias_ih, h @ cell.weight_hh.T + cell.bias_hh
    (ir, iu, inn), (hr, hu, hn) = gi.chunk(3, -1), gh.chunk(3, -1)
    r, u = torch.sigmoid(ir + hr), torch.sigmoid(iu + hu)
    return (1 - u) * torch.tanh(inn + r * hn) + u * h


@pytest.mark.parametrize("stochastic", [True, False])
def test_dynamics_variants_step_as_the_paper_describes(stochastic):
    y1 = torch.randn(3, SMALL["y_dim"])
    with torch.no_grad():
        residual = make(stochastic, dt=1.0).backbone.eval()
        mlp = make(stochastic, dt=1.0, dynamics="mlp").backbone.eval()
        gru = make(stochastic, dt=1.0, dynamics="gru").backbone.eval()
        for net in (residual, mlp, gru):
            z = torch.randn(3, 1, SMALL["z_dim"]) if stochastic else None
            post = (z, torch.full_like(z, 1e-9)) if stochastic else None  # z is the posterior mean, exactly
            states, _ = net.rollout_states(y1, 1, posterior=post)
            arg = None if z is None else z[:, 0]
            if net is residual:
                expected = y1 + net.dynamics(y1, arg)
            elif net is mlp:
                expected = net.dynamics.net(y1 if arg is None else torch.cat([y1, arg], -1))
            else:
                expected = _gru_by_hand(net.dynamics.cell, torch.ones(3, 1) if arg is None else arg, y1)
            torch.testing.assert_close(states[:, 1], expected, rtol=1e-5, atol=1e-5)
        assert isinstance(gru.dynamics.cell, nn.GRUCell)


@pytest.mark.parametrize("dynamics", ["mlp", "gru"])
def test_dynamics_variants_train_sample_and_refuse_ode_options(dynamics):
    model = make(True, dt=1.0, dynamics=dynamics).train()
    out = model(torch.rand(2, 3, 1, 16, 16), targets=torch.rand(2, 4, 1, 16, 16), step=0, return_output=True)
    (out.frames.mean() + sum(out.aux_losses.values())).backward()
    assert all(p.grad is not None for p in model.backbone.dynamics.parameters())
    model.eval()
    with torch.no_grad():
        assert model.backbone.sample(torch.rand(1, 3, 1, 16, 16), 2).frames.shape == (1, 2, 4, 1, 16, 16)
    with pytest.raises(ValueError, match="frame_rate=2 needs dynamics: residual"):
        model.backbone.sample(torch.rand(1, 3, 1, 16, 16), 2, frame_rate=2)
    with pytest.raises(ValueError, match=f"dt must be 1.0 with dynamics: {dynamics}"):
        make(True, dt=0.5, dynamics=dynamics)
    with pytest.raises(ValueError, match="dynamics must be one of"):
        make(True, dynamics="lstm")


def test_stochastic_moving_mnist_config_trains_and_reports_best_and_mean_of_k(repo, tmp_path, capsys):
    """configs/stochastic_moving_mnist/srvp.yaml on the real digits: the paper's protocol by default (best of
    100 and mean of 100), K configurable; one tiny training step and a 3-sample evaluation over 20 frames."""
    from test_benchmark_data import MNIST_DIR

    from pdr.cli.eval import main as eval_main
    from pdr.engine import Trainer

    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"the real MNIST digits are not at {MNIST_DIR} (../shared is absent)")
    path = repo / "configs" / "stochastic_moving_mnist" / "srvp.yaml"
    full = load_config(path)
    assert full["data"]["stochastic"] is True and full["eval"]["num_samples"] == 100
    tiny = [f"data.root={MNIST_DIR}", "data.num_train=4", "data.num_val=2", "data.num_test=2", "data.batch_size=2",
            "data.num_workers=0", "model.backbone.nf=4", "model.backbone.g_dim=16", "model.backbone.hidden=16",
            "model.backbone.lstm_hidden=16", "model.backbone.content_dim=8", "train.max_steps=1",
            "train.tensorboard=false", "eval.metrics=[mse, psnr, ssim]"]
    Trainer(load_config(path, tiny), tmp_path / "smmnist", device="cpu", show_progress=False).fit()
    assert eval_main([str(tmp_path / "smmnist"), "--samples", "3", "--set", "data.out_frames=20", "--device", "cpu",
                      "--format", "csv", "--no-images"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "run,mse,psnr,ssim"
    assert lines[1].startswith("smmnist (best of 3),") and lines[2].startswith("smmnist (mean of 3),")


# (model, dataset) -> (PSNR, SSIM) of the SRVP paper's Moving MNIST table
PUBLISHED = {
    ("SRVP", "Stochastic Moving MNIST"): ("16.93", "0.7799"),
    ("SRVP, GRU dynamics", "Stochastic Moving MNIST"): ("15.80", "0.7464"),
    ("SRVP, non-residual MLP", "Stochastic Moving MNIST"): ("16.55", "0.7694"),
    ("SVG", "Stochastic Moving MNIST"): ("14.50", "0.7090"),
    ("SRVP", "Deterministic Moving MNIST"): ("18.25", "0.8300"),
    ("SRVP, GRU dynamics", "Deterministic Moving MNIST"): ("13.17", "0.6237"),
    ("SRVP, non-residual MLP", "Deterministic Moving MNIST"): ("16.70", "0.7876"),
    ("SRVP without z", "Deterministic Moving MNIST"): ("14.99", "0.4757"),
    ("SVG", "Deterministic Moving MNIST"): ("12.85", "0.6185"),
}


def test_published_numbers_name_their_dataset_protocol_and_source(repo):
    text = (repo / "docs" / "srvp.md").read_text().split("## Published numbers", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| model")]
    assert {(r[0], r[1]): (r[2], r[3]) for r in rows} == PUBLISHED and len(rows) == len(PUBLISHED)
    for model, _, _, _, protocol, source in rows:
        assert "5 -> 20" in protocol and ("best of 100" in protocol or model == "SRVP without z") and source
    method = (repo / "docs" / "method.md").read_text().split("## 4. SRVP", 1)[1].split("\n## ", 1)[0]
    assert "16.93 / 0.7799 on Stochastic Moving MNIST" in method
    assert "18.25 / 0.8300 on Deterministic Moving MNIST" in " ".join(method.split())
    assert "deterministic variant" not in method


def test_sampling_keeps_no_decoder_features_unless_asked():
    """Best of 100 at 64x64 ran out of memory: every sample's full-resolution decoder features (nf times the
    frames) were kept. Now a chunk's features are dropped before the next chunk is decoded, unless asked for."""
    import weakref

    net = make(True).backbone.eval()
    decode, alive = net.decode, []

    def watched(states, content):
        frames, features = decode(states, content)
        alive.append(sum(r() is not None for r in refs))
        refs.append(weakref.ref(features))
        return frames, features

    refs: list = []
    net.decode = watched
    with torch.no_grad():
        assert net.sample(torch.rand(2, 3, 1, 16, 16), 4, chunk=1).features is None
        assert max(alive) == 0 and len(alive) == 4
        assert net.sample(torch.rand(2, 3, 1, 16, 16), 4, chunk=1, return_features=True).features.shape[1] == 4
