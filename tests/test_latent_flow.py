"""The latent flow backbone: heads, losses with known answers, uncertainty weights, TTT, phases, tools."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pdr.backbones.latent_flow import losses as L
from pdr.backbones.latent_flow.model import LatentFlow
from pdr.backbones.latent_flow.temporal import TemporalModel
from pdr.backbones.latent_flow.ttt import (
    adapt_flow_head,
    predict_with_ttt,
    restored_flow_head,
    ttt_loss,
)
from pdr.backbones.latent_flow.vae import LatentVAE
from pdr.backbones.latent_flow.warp import compose_next
from pdr.config import load_config
from pdr.data.flow_cache import load_flows
from pdr.data.optical_flow import compute_flows, raft_weights_path, resize_flow, visibility_mask, warp
from pdr.errors import ConfigError
from pdr.registry import BACKBONES

REPO = Path(__file__).resolve().parents[1]

TINY = {"latent_channels": 4, "nf": 8, "levels": 2, "hidden": 8, "layers": 1, "perceptual": "random"}


def tiny_net(phase="joint", t_in=3, t_out=2, size=16, channels=3, **kw):
    torch.manual_seed(0)
    return LatentFlow((t_in, channels, size, size), t_out, phase=phase, **{**TINY, **kw})


# ----------------------------------------------------------------------------- heads: shapes and gradients

def test_vae_shapes_and_gradients():
    vae = LatentVAE(3, latent_channels=4, nf=8, levels=2)
    x = torch.rand(2, 3, 16, 16)
    mean, logvar = vae.encode(x)
    assert mean.shape == logvar.shape == (2, 4, 4, 4)
    out, feats = vae.decode(vae.sample(mean, logvar), return_features=True)
    assert out.shape == x.shape and feats.shape == (2, vae.feature_channels, 16, 16)
    out.mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in vae.parameters())


def test_every_temporal_head_has_shape_and_gradient():
    model = TemporalModel(latent_channels=4, hidden=8, layers=2)
    z = torch.randn(2, 4, 6, 6)
    heads, _ = model.step(z, torch.zeros_like(z), model.init_state(z))
    assert heads["flow"].shape == (2, 2, 6, 6) and heads["occ"].shape == (2, 1, 6, 6)
    assert heads["residual"].shape == (2, 4, 6, 6) and heads["collision"].shape == (2,)
    assert 0 <= heads["occ"].min() and heads["occ"].max() <= 1
    for name, head in [("flow", model.flow_head), ("occ", model.occ_head), ("residual", model.residual_head),
                       ("collision", model.collision_head)]:
        model.zero_grad()
        heads, _ = model.step(z, torch.zeros_like(z), model.init_state(z))
        heads[name].pow(2).mean().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters()), name


@pytest.mark.parametrize("phase", ["vae", "temporal", "joint"])
def test_backbone_forward_and_losses(phase):
    net = tiny_net(phase).train()
    x, y = torch.rand(2, 3, 3, 16, 16), torch.rand(2, 2, 3, 16, 16)
    result = net(x, return_features=True, targets=y, collision=torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
    out, feats, aux = result.frames, result.features, result.aux_losses
    assert out.shape == y.shape and feats.shape == (2, 2, net.feature_channels, 16, 16)
    expected = {"vae": {"recon", "perceptual", "kl"},
                "temporal": {"latent", "flow_epe", "occlusion", "warp", "residual", "collision"}}
    expected["joint"] = expected["vae"] | expected["temporal"]
    assert {k[3:] for k in aux} == expected[phase]
    sum(aux.values()).add(out.mean()).backward()
    frozen = {"vae": net.temporal, "temporal": net.vae}.get(phase)
    if frozen is not None:
        assert all(p.grad is None for p in frozen.parameters())
    net.eval()
    result = net(x)
    assert result.frames.shape == y.shape and result.aux_losses == {}


def test_128x128_rgb_with_predgs():
    from pdr.model import create_model

    model = create_model({"name": "latent_flow", **TINY, "phase": "temporal"}, (3, 3, 128, 128), 2,
                         adapter={"name": "predgs", "num_gaussians": 16, "hidden": 8, "pool": 4})
    assert model.eval()(torch.rand(1, 3, 3, 128, 128)).shape == (1, 2, 3, 128, 128)


# ----------------------------------------------------------------------------- known answers

def test_zero_flow_warps_a_latent_to_itself():
    z = torch.randn(2, 4, 5, 7)
    torch.testing.assert_close(warp(z, torch.zeros(2, 2, 5, 7)), z)


def test_integer_shift_is_recovered_by_the_warp():
    z = torch.randn(1, 3, 8, 8)
    flow = torch.zeros(1, 2, 8, 8)
    flow[:, 0], flow[:, 1] = 2.0, -1.0  # content at (x + 2, y - 1) in frame t
    out = warp(z, flow)
    torch.testing.assert_close(out[:, :, 1:, :6], z[:, :, :7, 2:])


def test_compose_with_full_visibility_and_no_residual_is_the_warp():
    z, fill = torch.randn(1, 2, 6, 6), torch.randn(1, 2, 6, 6)
    flow = torch.randn(1, 2, 6, 6)
    nxt, warped = compose_next(z, flow, torch.ones(1, 1, 6, 6), fill, torch.zeros_like(z))
    torch.testing.assert_close(nxt, warped)
    nxt, _ = compose_next(z, flow, torch.zeros(1, 1, 6, 6), fill, torch.ones_like(z))
    torch.testing.assert_close(nxt, fill + 1)


def test_resize_flow_scales_vectors():
    flow = torch.full((1, 2, 16, 16), 4.0)
    torch.testing.assert_close(resize_flow(flow, (4, 4)), torch.full((1, 2, 4, 4), 1.0))


def test_kl_is_zero_for_standard_normal_and_positive_else():
    assert L.kl_standard_normal(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0
    assert L.kl_standard_normal(torch.ones(3, 4), torch.zeros(3, 4)).item() == pytest.approx(0.5)


def test_focal_loss_known_value():
    # p = 0.5 for a positive: alpha * (1 - 0.5)^2 * ln 2
    assert L.focal_loss(torch.zeros(1), torch.ones(1)).item() == pytest.approx(0.25 * 0.25 * math.log(2))
    assert L.focal_loss(torch.tensor([-20.0]), torch.zeros(1)).item() < 1e-9


def test_epe_of_identical_flows_is_zero_and_of_a_unit_offset_is_one():
    flow = torch.randn(2, 3, 2, 5, 5)
    assert L.end_point_error(flow, flow).item() == pytest.approx(0.0, abs=1e-5)
    other = flow.clone()
    other[:, :, 0] += 1.0
    assert L.end_point_error(flow, other).item() == pytest.approx(1.0, abs=1e-5)


def test_l1_bce_and_perceptual_known_answers():
    a = torch.zeros(2, 3, 8, 8)
    assert L.l1(a, a + 0.5).item() == pytest.approx(0.5)
    target = torch.tensor([1.0, 0.0])
    assert L.occlusion_bce(torch.tensor([0.5, 0.5]), target).item() == pytest.approx(math.log(2), abs=1e-5)
    net, used = L.build_perceptual("random")
    assert used == "random" and not any(p.requires_grad for p in net.parameters())
    x = torch.rand(2, 3, 16, 16)
    assert L.perceptual_l1(net, x, x).item() == 0.0 and L.perceptual_l1(net, x, 1 - x).item() > 0


def test_visibility_mask_of_a_consistent_pair_is_all_visible():
    fw = torch.zeros(1, 2, 8, 8)
    assert visibility_mask(fw, -fw).min() == 1
    bw = torch.full((1, 2, 8, 8), 3.0)
    assert visibility_mask(fw, bw).max() == 0  # backward says "moved", forward says "stayed"


def test_uncertainty_weights_learn_and_combine():
    weighting = L.UncertaintyWeighting(["a", "b"], {"b": 0.5})
    terms = weighting({"a": torch.tensor(2.0), "b": torch.tensor(2.0)})
    assert terms["a"].item() == pytest.approx(2.0) and terms["b"].item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown loss names"):
        L.UncertaintyWeighting(["a"], {"c": 1.0})


def test_uncertainty_log_variances_follow_their_gradient():
    """d/ds w (exp(-s) L + s) = w (1 - exp(-s) L): a log-variance moves towards log L (down while its loss is
    below exp(s), up while above); one SGD step moves each one by exactly -lr times that."""
    weighting = L.UncertaintyWeighting(["small", "large", "weighted"], {"weighted": 0.5})
    with torch.no_grad():
        weighting.log_vars["large"].fill_(0.3)
    losses = {"small": torch.tensor(0.2), "large": torch.tensor(3.0), "weighted": torch.tensor(5.0)}
    before = {k: v.item() for k, v in weighting.log_vars.items()}
    opt = torch.optim.SGD(weighting.parameters(), lr=0.1)
    sum(weighting(losses).values()).backward()
    opt.step()
    for name, w in (("small", 1.0), ("large", 1.0), ("weighted", 0.5)):
        s = before[name]
        expected = s - 0.1 * w * (1 - math.exp(-s) * losses[name].item())
        assert weighting.log_vars[name].item() == pytest.approx(expected, rel=1e-6), name
    assert weighting.log_vars["small"].item() < 0 < weighting.log_vars["weighted"].item()


def test_bad_arguments_name_the_key():
    with pytest.raises(ValueError, match="phase"):
        tiny_net("pixels")
    with pytest.raises(ValueError, match="loss_weights"):
        tiny_net("vae", loss_weights={"klx": 1.0})
    with pytest.raises(ValueError, match="divisible"):
        tiny_net("vae", size=18)
    with pytest.raises(ConfigError, match="model.backbone.vae_checkpoint"):
        BACKBONES.build("latent_flow", in_shape=(3, 3, 16, 16), out_frames=2, phase="temporal",
                        vae_checkpoint="/nonexistent/best.pt", **TINY)


# ----------------------------------------------------------------------------- test-time training

def test_ttt_changes_the_flow_head_then_restores_it_exactly():
    net = tiny_net("joint").eval()
    x = torch.rand(1, 3, 3, 16, 16)
    trained = {k: v.clone() for k, v in net.state_dict().items()}
    with restored_flow_head(net) as head:
        losses = adapt_flow_head(net, x, steps=3, lr=1e-2)
        assert len(losses) == 3
        changed = [k for k, v in head.state_dict().items()
                   if not torch.equal(v, trained[f"temporal.flow_head.{k}"])]
        assert changed
        others = {k: v for k, v in net.state_dict().items() if not k.startswith("temporal.flow_head.")}
        assert all(torch.equal(v, trained[k]) for k, v in others.items())  # only the flow head moved
    for k, v in net.state_dict().items():
        assert torch.equal(v, trained[k]), k
    assert all(p.requires_grad for p in net.parameters())  # TTT gives back the trainable flags
    pred, history = predict_with_ttt(net, x, steps=2, lr=1e-2)
    assert pred.shape == (1, 2, 3, 16, 16) and len(history) == 2
    for k, v in net.state_dict().items():
        assert torch.equal(v, trained[k]), k


def test_ttt_lowers_the_flow_loss_of_the_video_it_adapts_to_and_the_reset_is_exact():
    """A texture moving 2 pixels per frame: the adapted flow head warps each frame onto the next far better
    than before, and better than not moving at all; afterwards every weight is back, bit for bit."""
    net = tiny_net("joint", size=32).eval()
    torch.manual_seed(1)
    texture = torch.rand(3, 8, 8).repeat_interleave(4, 1).repeat_interleave(4, 2)
    x = torch.stack([torch.roll(texture, shifts=2 * k, dims=2) for k in range(3)])[None]
    standing_still = (x[:, 1:] - x[:, :-1]).abs().mean().item()
    trained = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        before = ttt_loss(net, x).item()
    with restored_flow_head(net):
        history = adapt_flow_head(net, x, steps=20, lr=1e-2)
        with torch.no_grad():
            adapted = ttt_loss(net, x).item()
    assert history[0] == pytest.approx(before, rel=1e-6)
    assert adapted < 0.5 * before and adapted < 0.5 * standing_still
    for k, v in net.state_dict().items():
        assert torch.equal(v, trained[k]), k
    with torch.no_grad():
        assert ttt_loss(net, x).item() == before


# ----------------------------------------------------------------------------- phases through the Trainer

SMALL = ["data.image_size=16", "data.sprite_size=[3,6]", "data.in_frames=3", "data.out_frames=2", "data.seq_len=5", "data.num_train=4",
         "data.num_val=2", "data.num_test=2", "data.batch_size=2", "train.log_every=1", "train.tensorboard=false",
         "eval.metrics=[mse,psnr]", "model.backbone.nf=8", "model.backbone.hidden=8", "model.backbone.layers=1",
         "model.backbone.perceptual=random"]


def _cfg(name, *extra):
    return load_config(REPO / "configs" / "bouncing_sprites" / f"latent_flow_{name}.yaml", SMALL + list(extra))


@pytest.fixture(scope="module")
def phases(tmp_path_factory):
    """The three phases on tiny bouncing_sprites settings, the temporal one interrupted and resumed."""
    from pdr.engine import Trainer

    root = tmp_path_factory.mktemp("lf_runs")
    Trainer(_cfg("vae", "train.max_steps=2"), root / "vae", show_progress=False).fit()
    vae_ckpt = root / "vae" / "checkpoints" / "last.pt"
    temporal = [f"model.backbone.vae_checkpoint={vae_ckpt}"]
    Trainer(_cfg("temporal", "train.max_steps=2", *temporal), root / "temporal", show_progress=False).fit()
    resumed = Trainer(_cfg("temporal", "train.max_steps=3", *temporal), root / "temporal", resume=True,
                      show_progress=False)
    start = resumed.global_step
    resumed.fit()
    joint = [f"model.backbone.temporal_checkpoint={root / 'temporal' / 'checkpoints' / 'last.pt'}",
             "train.max_steps=2"]
    Trainer(_cfg("joint", *joint), root / "joint", show_progress=False).fit()
    Trainer(_cfg("joint_predgs", *joint, "model.adapter.num_gaussians=16", "model.adapter.hidden=8"),
            root / "joint_predgs", show_progress=False).fit()
    return {"root": root, "resumed_from": start, "resumed": resumed, "vae_ckpt": vae_ckpt}


def test_three_phases_each_with_its_checkpoint_and_resume(phases):
    root = phases["root"]
    for run in ("vae", "temporal", "joint", "joint_predgs"):
        assert (root / run / "checkpoints" / "last.pt").is_file(), run
    resumed = phases["resumed"]
    assert phases["resumed_from"] == 2 and resumed.global_step == 3
    vae_state = torch.load(phases["vae_ckpt"], weights_only=False)["model"]
    for k, v in resumed.model.backbone.vae.state_dict().items():  # the frozen VAE is the vae phase's
        torch.testing.assert_close(v, vae_state[f"backbone.vae.{k}"], rtol=0, atol=0)
    joint = torch.load(root / "joint" / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert any(not torch.equal(joint[k], v) for k, v in vae_state.items() if k.startswith("backbone.vae."))


def _write_video(folder, frames=5, size=16):
    import imageio.v3 as iio

    from pdr.data.synthetic import BouncingSprites

    seq = BouncingSprites("test", 1, frames - 1, num_test=1, seq_len=frames, image_size=size, sprite_size=(3.0, 6.0)).sequence(0)
    folder.mkdir(parents=True)
    for i, frame in enumerate(seq):
        iio.imwrite(folder / f"frame_{i}.png", (frame.transpose(1, 2, 0) * 255).round().astype(np.uint8))


@pytest.mark.parametrize("run,ttt", [("joint", True), ("joint_predgs", False)])
def test_infer_end_to_end(phases, tmp_path, run, ttt):
    from tools_infer import main

    _write_video(tmp_path / "videos" / "vid_a")
    _write_video(tmp_path / "videos" / "vid_b")
    out = tmp_path / "out"
    argv = ["--vae_checkpoint", str(phases["vae_ckpt"]),
            "--temporal_checkpoint", str(phases["root"] / run / "checkpoints" / "last.pt"),
            "--video_folders", str(tmp_path / "videos"), "--img_h", "16", "--img_w", "16",
            "--num_input_frames", "3", "--num_pred_frames", "2", "--output_dir", str(out), "--device", "cpu"]
    assert main(argv + (["--ttt", "--ttt_steps", "2"] if ttt else [])) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert set(report["videos"]) == {"vid_a", "vid_b"} and report["ttt"] is ttt
    assert all(len(r["ttt_losses"]) == (2 if ttt else 0) for r in report["videos"].values())
    assert {"mse", "psnr", "ssim"} <= set(report["mean"])
    for name in ("vid_a", "vid_b"):
        assert (out / f"{name}.gif").is_file()
        assert sorted(p.name for p in (out / name).glob("*.png")) == ["pred_000.png", "pred_001.png"]


def test_pdr_predict_on_latent_flow_runs(phases, tmp_path, capsys):
    """pdr-predict serves the joint phase's run like any other (a rollout past its 2 trained frames); the vae phase
    predicts nothing and is refused."""
    from pdr.cli.predict import main

    _write_video(tmp_path / "clip", frames=6)
    out = tmp_path / "out"
    argv = ["--checkpoint", "last", "--input", str(tmp_path / "clip"), "--out", str(out), "--frames", "4", "--no-progress"]
    assert main([str(phases["root"] / "joint"), *argv]) == 0
    assert sorted(p.name for p in (out / "clip").iterdir()) == [f"pred_{i:03d}.png" for i in range(4)]
    assert json.loads((out / "metrics.json").read_text())["clips"]["clip"]["compared_frames"] == 3
    assert main([str(phases["root"] / "vae"), *argv]) == 2
    assert "reconstructs frames and predicts none yet" in capsys.readouterr().err


def test_infer_friendly_errors(phases, tmp_path, capsys):
    from tools_infer import main

    ckpt = str(phases["root"] / "joint" / "checkpoints" / "last.pt")
    common = ["--img_h", "16", "--img_w", "16", "--num_input_frames", "3", "--num_pred_frames", "2",
              "--output_dir", str(tmp_path / "o")]
    assert main(["--temporal_checkpoint", ckpt, "--video_folders", str(tmp_path / "nope")] + common) == 2
    assert "video folder not found" in capsys.readouterr().err
    _write_video(tmp_path / "v" / "one")
    assert main(["--temporal_checkpoint", str(tmp_path / "missing.pt"), "--video_folders", str(tmp_path / "v")]
                + common) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["--temporal_checkpoint", str(phases["vae_ckpt"]), "--video_folders", str(tmp_path / "v")]
                + common) == 2
    assert "vae-phase" in capsys.readouterr().err


def test_precompute_flow_on_a_tiny_folder(tmp_path, capsys):
    from tools_precompute_flow import main

    _write_video(tmp_path / "data" / "v0", frames=4, size=32)
    assert main([str(tmp_path / "data")]) == 0
    captured = capsys.readouterr()
    assert "flow method:" in captured.err and "farneback" in captured.out.lower() + captured.err.lower()
    flows = load_flows(tmp_path / "data" / "v0")
    assert flows["forward"].shape == flows["backward"].shape == (3, 2, 32, 32)
    used = "raft_large" if raft_weights_path() is not None else "farneback"  # what the tool said it would use
    assert flows["visible"].shape == (3, 1, 32, 32) and str(flows["method"]) == used
    assert main([str(tmp_path / "data")]) == 0 and "skipped" in capsys.readouterr().err


def test_farneback_recovers_a_shift():
    rng = np.random.default_rng(0)
    base = (rng.random((40, 40)) > 0.5).astype(np.float32)
    base = np.kron(base, np.ones((2, 2)))[:48, :48]  # blocky texture
    a = np.repeat(base[None, :, :, None], 3, -1)
    b = np.roll(a, 2, axis=2)  # moves 2 pixels right
    flows = compute_flows((np.concatenate([a, b]) * 255).astype(np.uint8), method="farneback")
    inner = flows["forward"][0, :, 8:-8, 8:-8].astype(np.float32)
    assert abs(np.median(inner[0]) - 2.0) < 0.5 and abs(np.median(inner[1])) < 0.5


@pytest.fixture(autouse=True)
def _tools_as_modules(monkeypatch):
    import importlib.util
    import sys

    for name in ("infer", "precompute_flow"):
        spec = importlib.util.spec_from_file_location(f"tools_{name}", REPO / "tools" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        monkeypatch.setitem(sys.modules, f"tools_{name}", module)


def _write_clevrer(root, videos=4, frames=8, size=24):
    from pdr.data.video_io import write_video

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for index in range(videos):
        video = np.full((frames, size, size, 3), 90, np.uint8)
        for t in range(frames):
            video[t, 8:14, 2 + 2 * t : 8 + 2 * t] = 230
        write_video(root / f"video_{index:05d}.mp4", video)
        annotation = {"collision": [{"frame_id": int(rng.integers(3, 6)), "object_ids": [0, 1]}],
                      "motion_trajectory": [{"frame_id": f, "objects": []} for f in range(frames)]}
        (root / f"annotation_{index:05d}.json").write_text(json.dumps(annotation))


CLEVRER_TINY = ["data.image_size=16", "data.in_frames=3", "data.out_frames=2", "data.train_videos=[0,2]",
                "data.val_videos=[2,3]", "data.test_videos=[3,4]", "data.batch_size=2", "data.num_workers=0",
                "model.backbone.vae_checkpoint=null", "model.backbone.nf=8", "model.backbone.hidden=8",
                "model.backbone.layers=1", "model.backbone.levels=2", "model.backbone.perceptual=random",
                "train.max_steps=2", "train.tensorboard=false", "eval.metrics=[mse]"]


@pytest.mark.parametrize("flows", ["online", "precomputed"])
def test_dataset_labels_and_flows_reach_the_heads_through_the_trainer(tmp_path, flows):
    """CLEVRER with data.return_collision (and return_flows): the trainer hands them to the backbone."""
    from tools_precompute_flow import main as precompute

    from pdr.engine import Trainer

    _write_clevrer(tmp_path)
    overrides = [f"data.root={tmp_path}", *CLEVRER_TINY, f"model.backbone.flow_targets={flows}"]
    if flows == "precomputed":
        assert precompute([str(tmp_path), "--method", "farneback"]) == 0
        overrides += ["data.return_flows=true", "data.flow_method=farneback"]
    cfg = load_config(REPO / "configs" / "clevrer" / "latent_flow_temporal.yaml", overrides)
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    trainer.fit()
    raw = trainer.model.backbone.raw_losses
    assert {"collision", "flow_epe", "occlusion"} <= set(raw) and all(math.isfinite(v) for v in raw.values())


def test_precomputed_flows_are_resized_with_their_vectors_and_required(tmp_path):
    from pdr.errors import ConfigError, DataError
    from pdr.registry import DATASETS

    _write_clevrer(tmp_path, frames=8, size=24)
    backward = np.zeros((7, 2, 24, 24), np.float16)
    backward[:, 0] = 3.0  # 3 pixels right at 24x24 -> 2 pixels at 16x16
    np.savez(tmp_path / "video_00000_flow.npz", backward=backward, forward=-backward,
             visible=np.ones((7, 1, 24, 24), np.uint8), method="farneback")
    ds = DATASETS.build("clevrer", split="train", in_frames=3, out_frames=2, root=str(tmp_path), image_size=16,
                        train_videos=[0, 1], val_videos=[2, 3], test_videos=[3, 4], clip_start="fixed",
                        return_flows=True, flow_method="farneback")
    _, _, extras = ds[0]
    assert extras["flow_backward"].shape == (4, 2, 16, 16) and extras["flow_visible"].shape == (4, 1, 16, 16)
    assert torch.allclose(extras["flow_backward"][:, 0], torch.full((4, 16, 16), 2.0))
    assert torch.all(extras["flow_backward"][:, 1] == 0)
    (tmp_path / "video_00000_flow.npz").unlink()
    with pytest.raises(DataError, match="no precomputed flows.*precompute_flow.py"):
        ds[0]
    net = tiny_net("temporal", flow_targets="precomputed").train()
    with pytest.raises(ConfigError, match="flow_targets: precomputed needs flows from the dataset"):
        net(torch.rand(1, 3, 3, 16, 16), targets=torch.rand(1, 2, 3, 16, 16))


def test_infer_on_tiny_clevrer_videos(phases, tmp_path):
    """tools/infer.py reads the CLEVRER mp4 files themselves (resized to --img_h x --img_w)."""
    from tools_infer import main

    _write_clevrer(tmp_path / "clevrer", videos=2, frames=8, size=24)
    out = tmp_path / "out"
    argv = ["--vae_checkpoint", str(phases["vae_ckpt"]),
            "--temporal_checkpoint", str(phases["root"] / "joint" / "checkpoints" / "last.pt"),
            "--video_folders", str(tmp_path / "clevrer"), "--img_h", "16", "--img_w", "16",
            "--num_input_frames", "3", "--num_pred_frames", "2", "--ttt", "--ttt_steps", "2",
            "--output_dir", str(out), "--device", "cpu"]
    assert main(argv) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert set(report["videos"]) == {"video_00000", "video_00001"}
    assert all(len(r["ttt_losses"]) == 2 for r in report["videos"].values())
    assert (out / "video_00001.gif").is_file() and len(list((out / "video_00000").glob("pred_*.png"))) == 2


def test_substituted_networks_are_said_recorded_and_shown(tmp_path, monkeypatch):
    """perceptual: auto without cached DINOv2 weights and flow_targets: online: the run says at its start
    what it uses, config.yaml and the checkpoints keep it and tools/eval.py's table shows it as a note."""
    from pdr.results.table import format_table
    from pdr.engine import Trainer
    from pdr.results.evaluation import evaluate_run

    monkeypatch.setattr(L, "cached_dino_file", lambda: None)
    cfg = _cfg("joint", "model.backbone.temporal_checkpoint=null", "model.backbone.perceptual=auto",
               "train.max_steps=1")
    work = tmp_path / "run"
    Trainer(cfg, work, show_progress=False).fit()
    perceptual = "fixed random conv features (perceptual: auto found no cached DINOv2 weights)"
    flow = "OpenCV Farneback on the training frames (flow_targets: online)"
    log = (work / "log.txt").read_text()
    assert f"model.backbone.perceptual: {perceptual}" in log and f"model.backbone.flow_targets: {flow}" in log
    config_text = (work / "config.yaml").read_text()
    assert f"#   model.backbone.perceptual: {perceptual}" in config_text
    assert load_config(work / "config.yaml")["model"]["backbone"]["perceptual"] == "auto"  # still a valid config
    state = torch.load(work / "checkpoints" / "last.pt", weights_only=False)
    assert state["resolved"] == {"model.backbone.perceptual": perceptual, "model.backbone.flow_targets": flow}
    result = evaluate_run(work, checkpoint="last", metrics=["mse"], save_images=False)
    table = format_table([result])
    assert f"Note: run: model.backbone.perceptual: {perceptual}" in table
    assert f"Note: run: model.backbone.flow_targets: {flow}" in table


def test_a_flow_cache_of_another_method_is_refused(tmp_path):
    from pdr.errors import DataError
    from pdr.registry import DATASETS

    _write_clevrer(tmp_path, videos=4, frames=8, size=16)
    flows = {"backward": np.zeros((7, 2, 16, 16), np.float16), "forward": np.zeros((7, 2, 16, 16), np.float16),
             "visible": np.ones((7, 1, 16, 16), np.uint8), "method": "farneback"}
    np.savez(tmp_path / "video_00000_flow.npz", **flows)
    common = dict(split="train", in_frames=3, out_frames=2, root=str(tmp_path), image_size=16, train_videos=[0, 1],
                  val_videos=[2, 3], test_videos=[3, 4], clip_start="fixed", return_flows=True)
    with pytest.raises(DataError, match=r"video_00000_flow.npz: flows made with farneback, but data.flow_method "
                                        r"asks for raft_large; .*precompute_flow.py --method raft_large"):
        DATASETS.build("clevrer", flow_method="raft_large", **common)[0]
    _, _, extras = DATASETS.build("clevrer", flow_method="farneback", **common)[0]
    assert extras["flow_backward"].shape == (4, 2, 16, 16)
    with pytest.raises(DataError, match="data.flow_method must be one of"):
        DATASETS.build("clevrer", flow_method="raft", **common)


# ----------------------------------------------------------------------------- the residual target

def _shift_left_by_one(z):
    """z(p + (1, 0)) with border replication: the backward warp by a flow of one pixel in x, by slicing."""
    return torch.cat([z[..., 1:], z[..., -1:]], dim=-1)


def test_residual_target_is_what_the_target_warp_and_fill_miss():
    from pdr.backbones.latent_flow.warp import residual_target

    torch.manual_seed(0)
    z_t, delta, fill = torch.randn(2, 3, 6, 6), torch.randn(2, 3, 6, 6), torch.randn(2, 3, 6, 6)
    flow = torch.zeros(2, 2, 6, 6)
    flow[:, 0] = 1.0
    z_next = _shift_left_by_one(z_t) + delta
    visible = torch.ones(2, 1, 6, 6)
    torch.testing.assert_close(residual_target(z_t, z_next, flow, visible, fill), delta)
    visible[:, :, :3] = 0.0  # the top half was hidden in t: the composition shows the background there
    expected = torch.where(visible.bool(), delta, z_next - fill)
    torch.testing.assert_close(residual_target(z_t, z_next, flow, visible, fill), expected)


def _flat_flows(n_pairs, size=16):
    """Precomputed targets 'nothing moves, everything visible': (1, n, 2, H, W) zeros and (1, n, 1, H, W) ones."""
    return torch.zeros(1, n_pairs, 2, size, size), torch.ones(1, n_pairs, 1, size, size)


def test_residual_loss_is_no_longer_the_latent_loss():
    """With zero target flows and full visibility the residual target is z_{t+1} - z_t, computed here from the
    encoder alone; the residual loss is the L1 of the residual head to it, and differs from the latent loss."""
    net = tiny_net("temporal", flow_targets="precomputed").train()
    torch.manual_seed(2)
    x, y = torch.rand(1, 3, 3, 16, 16), torch.rand(1, 2, 3, 16, 16)
    out = net(x, targets=y, flow_backward=_flat_flows(4)[0], flow_visible=_flat_flows(4)[1])
    raw = net.raw_losses
    with torch.no_grad():
        z = net.encode(torch.cat([x, y], 1))[0]
        roll = net.rollout(z[:, :3], 2)
    assert raw["residual"] == pytest.approx((roll["residual"] - (z[:, 1:] - z[:, :-1])).abs().mean().item(), rel=1e-5)
    assert raw["latent"] == pytest.approx((roll["next"] - z[:, 1:]).abs().mean().item(), rel=1e-5)
    assert abs(raw["residual"] - raw["latent"]) > 0.01 * raw["latent"]  # equal, step for step, before
    assert out.aux_losses["lf_residual"].item() != pytest.approx(out.aux_losses["lf_latent"].item(), rel=1e-3)


@pytest.fixture
def one_thread():
    """Many small optimiser steps: on a shared CPU, threads that wait for each other make them far slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("one_thread")
def test_the_residual_head_learns_what_warping_misses():
    """Trained on the residual loss alone (nothing moves per the flow targets), the residual head's output
    approaches z_{t+1} - z_t, the change no warp explains."""
    net = tiny_net("temporal", flow_targets="precomputed", size=16).train()
    torch.manual_seed(3)
    x, y = torch.rand(1, 3, 3, 16, 16), torch.rand(1, 2, 3, 16, 16)
    flows = _flat_flows(4)
    with torch.no_grad():
        z = net.encode(torch.cat([x, y], 1))[0]
    target = z[:, 1:] - z[:, :-1]

    def error():
        with torch.no_grad():
            return (net.rollout(z[:, :3], 2)["residual"] - target).abs().mean().item()

    before = error()
    opt = torch.optim.Adam(net.temporal.residual_head.parameters(), lr=1e-2)
    for _ in range(80):  # lf_residual = exp(-s) L + s with s = 0: the residual loss itself
        loss = net(x, targets=y, flow_backward=flows[0], flow_visible=flows[1]).aux_losses["lf_residual"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert error() < 0.3 * before


def test_without_flow_targets_there_is_no_residual_loss():
    net = tiny_net("temporal", flow_targets="none").train()
    aux = net(torch.rand(1, 3, 3, 16, 16), targets=torch.rand(1, 2, 3, 16, 16)).aux_losses
    assert set(aux) == {"lf_latent", "lf_warp"}


# ----------------------------------------------------------------------------- a random rollout length

def test_training_horizon_is_drawn_per_step_in_the_range():
    net = tiny_net("temporal", t_out=4, train_out_frames=[1, 3])
    draws = [net.training_horizon(step) for step in range(60)]
    assert set(draws) == {1, 2, 3}
    assert draws == [net.training_horizon(step) for step in range(60)]  # a resumed run draws the same
    assert tiny_net("temporal", t_out=4).training_horizon(5) == 4
    for bad in ([0, 2], [3, 2], [1, 5], [2]):
        with pytest.raises(ValueError, match="train_out_frames"):
            tiny_net("temporal", t_out=4, train_out_frames=bad)


@pytest.mark.parametrize("phase", ["temporal", "joint"])
def test_a_shorter_training_horizon_is_the_model_trained_on_those_frames(phase):
    """A step that draws n frames gives the frames and the per-frame losses of a model asked for n frames:
    the same weights with out_frames = n (the loss is a mean over the frames of the step)."""
    short = tiny_net(phase, t_out=4, train_out_frames=[2, 2], flow_targets="none").train()
    plain = tiny_net(phase, t_out=2, flow_targets="none").train()
    plain.load_state_dict(short.state_dict())
    x, y = torch.rand(2, 3, 3, 16, 16), torch.rand(2, 4, 3, 16, 16)
    torch.manual_seed(4)
    a = short(x, targets=y, step=7, collision=torch.zeros(2, 4))
    raw_a = dict(short.raw_losses)
    torch.manual_seed(4)
    b = plain(x, targets=y[:, :2], step=7, collision=torch.zeros(2, 2))
    assert a.frames.shape == (2, 2, 3, 16, 16)
    torch.testing.assert_close(a.frames, b.frames, rtol=0, atol=0)
    assert raw_a == plain.raw_losses and set(raw_a) >= {"latent", "warp", "collision"}
    short.eval()
    assert short(x).frames.shape == (2, 4, 3, 16, 16)  # eval predicts every frame


def test_the_trainer_scores_the_frames_of_the_drawn_horizon(tmp_path):
    from pdr.engine import Trainer
    from pdr.model import create_model

    model = create_model({"name": "latent_flow", **TINY, "phase": "temporal", "train_out_frames": [1, 2]},
                         (3, 3, 16, 16), 4).train()
    out = model(torch.rand(2, 3, 3, 16, 16), targets=torch.rand(2, 4, 3, 16, 16), step=0, return_output=True)
    assert out.frames.shape[1] == model.backbone.training_horizon(0) < 4  # the rollout stops at the drawn horizon
    cfg = _cfg("temporal", "data.out_frames=4", "data.seq_len=7", "model.backbone.train_out_frames=[1,3]",
               "train.max_steps=3", "model.backbone.vae_checkpoint=null")
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    row = trainer.fit()
    assert math.isfinite(row["val/mse"]) and trainer.global_step == 3


# ----------------------------------------------------------------------------- the adversarial term of the VAE

def test_adversarial_term_off_changes_nothing():
    net = tiny_net("vae")
    assert net.adversarial is None and not any("adversarial" in k for k in net.state_dict())
    assert set(net.train()(torch.rand(1, 3, 3, 16, 16), targets=torch.rand(1, 2, 3, 16, 16)).aux_losses) == {
        "lf_recon", "lf_perceptual", "lf_kl"}
    for phase in ("temporal", "joint"):  # the other phases ignore lambda_adv (a joint config inherits it)
        assert tiny_net(phase, lambda_adv=0.1).adversarial is None
    with pytest.raises(ValueError, match="lambda_adv"):
        tiny_net("vae", lambda_adv=-1.0)


def test_adversarial_term_trains_the_discriminator_and_reaches_the_vae_only():
    net = tiny_net("vae", lambda_adv=0.5, disc_nf=8).train()
    disc_before = {k: v.clone() for k, v in net.adversarial.disc.state_dict().items()}
    out = net(torch.rand(2, 3, 3, 16, 16), targets=torch.rand(2, 2, 3, 16, 16))
    assert {"lf_adv", "lf_recon"} <= set(out.aux_losses) and {"adv", "disc"} <= set(net.raw_losses)
    assert out.aux_losses["lf_adv"].item() == pytest.approx(0.5 * net.raw_losses["adv"], rel=1e-5)
    assert net.adversarial.steps_taken == 1
    assert any(not torch.equal(v, disc_before[k]) for k, v in net.adversarial.disc.state_dict().items())
    out.aux_losses["lf_adv"].backward()
    assert all(p.grad is None for p in net.adversarial.parameters())  # the VAE's term never trains D
    assert net.vae.readout.weight.grad is not None and net.vae.readout.weight.grad.abs().sum() > 0
    assert not any(p is q for p in net.adversarial.parameters() for q in net.parameters() if q.requires_grad)


@pytest.mark.usefixtures("one_thread")
def test_discriminator_learns_to_tell_real_from_fake():
    from pdr.backbones.latent_flow.adversarial import AdversarialTerm

    torch.manual_seed(0)
    term = AdversarialTerm(3, nf=8, lr=2e-3)
    real = torch.rand(8, 3, 16, 16).round()  # black and white patterns
    fake = torch.full((8, 3, 16, 16), 0.5)  # grey
    losses = [term.update(real, fake).item() for _ in range(40)]
    assert losses[-1] < 0.3 * losses[0]
    assert term.steps_taken == 40


@pytest.mark.usefixtures("one_thread")
def test_adversarial_state_is_checkpointed_and_resumed(tmp_path):
    """An interrupted vae-phase run with the discriminator, resumed, ends with the weights and the discriminator's
    Adam state of a run that was not interrupted."""
    from pdr.engine import Trainer

    # epochs of 2 steps: the interrupted run stops at an epoch's end, where the straight one goes on
    common = ["model.backbone.lambda_adv=0.1", "model.backbone.disc_nf=8", "schedule.name=constant"]
    Trainer(_cfg("vae", *common, "train.max_steps=4"), tmp_path / "straight", show_progress=False).fit()
    Trainer(_cfg("vae", *common, "train.max_steps=2"), tmp_path / "resumed", show_progress=False).fit()
    state = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert state["backbone.adversarial.adam_step_0"].item() == 2
    resumed = Trainer(_cfg("vae", *common, "train.max_steps=4"), tmp_path / "resumed", resume=True,
                      show_progress=False)
    for k, v in resumed.model.state_dict().items():  # every buffer of D's optimizer came back
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)
    resumed.fit()
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=False)["model"]
    final = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert final["backbone.adversarial.adam_step_0"].item() == 4
    for k, v in straight.items():
        torch.testing.assert_close(final[k], v, rtol=1e-5, atol=1e-6, msg=k)


# ----------------------------------------------------------------------------- test-time training in tools/eval.py

def test_eval_measures_every_metric_of_the_ttt_model(phases, capsys):
    """tools/eval.py --ttt: each test sequence predicted after its own TTT (the values of predict_with_ttt on
    it), every metric asked for, a row of its own, the trained weights untouched."""
    from pdr.cli.eval import main as eval_main
    from pdr.results.evaluation import evaluate_run
    from pdr.metrics import evaluate
    from pdr.results.load import load_run

    run = phases["root"] / "joint"
    metrics = ["mse", "mae", "psnr", "ssim", "sharpness"]
    plain = evaluate_run(run, checkpoint="last", metrics=metrics, save_images=False)
    adapted = evaluate_run(run, checkpoint="last", metrics=metrics, save_images=False, ttt_steps=3, ttt_lr=1e-2)
    assert adapted.name == "joint (TTT 3 steps)" and set(adapted.metrics) >= set(metrics)
    assert adapted.metrics["mse"] != pytest.approx(plain.metrics["mse"], rel=1e-6)

    from pdr.data import build_dataset

    model = load_run(run, "last")
    dataset = build_dataset(model.config, "test")
    x = torch.stack([dataset[i][0] for i in range(len(dataset))])
    y = torch.stack([dataset[i][1] for i in range(len(dataset))])
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    pred = torch.cat([predict_with_ttt(model, x[i:i + 1], 3, 1e-2)[0] for i in range(len(x))])
    expected = evaluate(pred.numpy(), y.numpy(), metrics=("mse", "psnr"))
    assert adapted.metrics["mse"] == pytest.approx(expected["mse"], rel=1e-4)
    assert adapted.metrics["psnr"] == pytest.approx(expected["psnr"], rel=1e-4)
    assert all(torch.equal(v, trained[k]) for k, v in model.state_dict().items())

    assert eval_main([str(run), "--checkpoint", "last", "--ttt", "--ttt-steps", "2", "--device", "cpu",
                      "--metrics", "mse", "ssim", "--no-images"]) == 0
    assert "| joint (TTT 2 steps) |" in capsys.readouterr().out
    assert eval_main([str(phases["root"] / "vae"), "--checkpoint", "last", "--ttt", "--device", "cpu",
                      "--metrics", "mse", "--no-images"]) == 2
    assert "--ttt needs a latent_flow run of phase temporal or joint" in capsys.readouterr().err


# ----------------------------------------------------------------------------- one rule for the flow method

def test_flow_method_auto_resolves_the_same_in_both_tools(tmp_path, monkeypatch, capsys):
    """Without RAFT weights, a cache made with precompute_flow's defaults is the one CLEVRER's default
    (data.flow_method: auto) accepts; with RAFT weights cached, both would ask for RAFT."""
    from tools_precompute_flow import main as precompute

    import pdr.data.optical_flow as of
    from pdr.data.optical_flow import resolve_flow_method
    from pdr.errors import DataError
    from pdr.registry import DATASETS

    monkeypatch.setattr(of, "raft_weights_path", lambda: None)
    _write_clevrer(tmp_path, videos=4, frames=8, size=16)
    assert precompute([str(tmp_path)]) == 0
    assert "OpenCV Farneback; asked: auto (farneback: no RAFT weights" in capsys.readouterr().err
    common = dict(split="train", in_frames=3, out_frames=2, root=str(tmp_path), image_size=16, train_videos=[0, 1],
                  val_videos=[2, 3], test_videos=[3, 4], clip_start="fixed", return_flows=True)
    _, _, extras = DATASETS.build("clevrer", **common)[0]  # the default: auto
    assert extras["flow_backward"].shape == (4, 2, 16, 16)
    assert resolve_flow_method("auto") == "farneback" and resolve_flow_method("raft") == "raft_large"

    monkeypatch.setattr(of, "raft_weights_path", lambda: tmp_path / "raft_large_C_T_V2-1bb1363a.pth")
    assert resolve_flow_method("auto") == "raft_large"
    with pytest.raises(DataError, match=r"flows made with farneback, but data.flow_method asks for auto \(raft_large: "
                                        r"RAFT weights are cached\); .*--method raft_large --overwrite"):
        DATASETS.build("clevrer", **common)[0]
    with pytest.raises(ValueError, match="flow method must be one of"):
        resolve_flow_method("lucas_kanade")


def test_precompute_flow_takes_the_method_of_a_config(tmp_path, capsys):
    from tools_precompute_flow import main as precompute

    _write_clevrer(tmp_path / "data", videos=1, frames=4, size=16)
    config = tmp_path / "farneback.yaml"
    config.write_text(f"_base_: {REPO / 'configs' / 'clevrer' / 'latent_flow_temporal.yaml'}\n"
                      "data: {flow_method: farneback}\n")
    assert precompute([str(tmp_path / "data"), "--config", str(config)]) == 0
    assert "asked: farneback" in capsys.readouterr().err
    assert str(load_flows(tmp_path / "data" / "video_00000.mp4")["method"]) == "farneback"
