"""The backbone zoo: SimVP (gSTA, IncepU, TAU), TAU, ConvLSTM and PredRNN, alone and under PredGS.

Tiny sizes throughout (16x16 frames, widths 8): the whole file runs in seconds on 2 CPU cores.
"""
import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import pdr
from pdr.backbones.recurrent import SamplingSchedule, parse_num_hidden, patchify, unpatchify
from pdr.backbones.simvp import differential_divergence
from pdr.config import load_config

TINY_SIMVP = {"hid_S": 8, "hid_T": 16, "N_S": 2, "N_T": 2}
TINY_RNN = {"num_hidden": [8, 8], "filter_size": 3, "patch_size": 2}
SPECS = {
    "simvp_gsta": {"name": "simvp", "model_type": "gsta", **TINY_SIMVP},
    "simvp_incepu": {"name": "simvp", "model_type": "IncepU", "groups": 4, **TINY_SIMVP},
    "simvp_tau": {"name": "simvp", "model_type": "tau", **TINY_SIMVP},
    "tau": {"name": "tau", **TINY_SIMVP},
    "convlstm": {"name": "convlstm", **TINY_RNN},
    "predrnn": {"name": "predrnn", **TINY_RNN},
}
PREDGS = {"name": "predgs", "num_gaussians": 16, "kernel_size": 5, "pool": 2, "hidden": 16}
ADAPTERS = {"alone": None, "predgs": PREDGS}
REPO = Path(__file__).resolve().parents[1]


def build(spec_name, in_shape, out_frames, adapter=None, seed=0):
    torch.manual_seed(seed)
    return pdr.create_model(SPECS[spec_name], in_shape, out_frames, adapter=adapter)


def step_loss(model, x, y, step=0):
    out = model(x, targets=y, step=step, return_output=True)
    loss = F.mse_loss(out.frames, y)
    return loss + sum(out.aux_losses.values()), out.frames


def test_every_backbone_is_registered():
    for name in ("simvp", "tau", "convlstm", "predrnn"):
        assert name in pdr.BACKBONES


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("in_shape,t_out", [((4, 2, 16, 16), 4), ((3, 1, 16, 24), 5), ((5, 3, 8, 8), 2)])
def test_shapes(spec, adapter, in_shape, t_out):
    model = build(spec, in_shape, t_out, ADAPTERS[adapter])
    x = torch.rand(2, *in_shape)
    y = torch.rand(2, t_out, *in_shape[1:])
    model.eval()
    with torch.no_grad():
        assert model(x).shape == y.shape
    model.train()
    out = model(x, targets=y, step=3, return_output=True)
    assert out.frames.shape == y.shape and torch.isfinite(out.frames).all()
    assert all(v.dim() == 0 and torch.isfinite(v) for v in out.aux_losses.values())


@pytest.mark.parametrize("spec", SPECS)
def test_features_feed_predgs(spec):
    model = build(spec, (4, 2, 16, 16), 4, {**PREDGS, "source": "features"})
    backbone = model.backbone
    features = backbone(torch.rand(2, 4, 2, 16, 16), return_features=True).features
    assert features.shape[:3] == (2, backbone.frames_per_call, backbone.feature_channels)
    assert model(torch.rand(2, 4, 2, 16, 16)).shape == (2, 4, 2, 16, 16)


def test_recurrent_predicts_all_frames_in_one_call():
    for spec in ("convlstm", "predrnn"):
        model = build(spec, (3, 1, 16, 16), 7)
        assert model.backbone.frames_per_call == 7 and model.backbone.uses_targets
        calls = []
        model.backbone.register_forward_hook(lambda *a, seen=calls: seen.append(1))
        model(torch.rand(1, 3, 1, 16, 16))
        assert len(calls) == 1


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("spec", SPECS)
def test_every_parameter_gets_a_gradient(spec, adapter):
    model = build(spec, (4, 2, 16, 16), 4, ADAPTERS[adapter])
    model.train()
    x, y = torch.rand(2, 4, 2, 16, 16), torch.rand(2, 4, 2, 16, 16)
    loss, _ = step_loss(model, x, y, step=0)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
    for name, p in model.backbone.named_parameters():  # the adapter's render branch starts at zero weight
        assert p.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


@pytest.mark.parametrize("spec", ["convlstm", "predrnn"])
def test_recurrent_options_layer_norm_and_reverse_sampling(spec):
    extra = {"layer_norm": 1, "reverse_scheduled_sampling": 1, "num_hidden": "8,8"}
    model = pdr.create_model({**SPECS[spec], **extra}, (4, 2, 16, 16), 3)
    model.train()
    x, y = torch.rand(2, 4, 2, 16, 16), torch.rand(2, 3, 2, 16, 16)
    loss, pred = step_loss(model, x, y, step=30000)
    loss.backward()
    assert pred.shape == y.shape
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


# ----------------------------------------------------------------------------- overfitting


def moving_blobs(n, t, c, h, w, seed=0):
    """n sequences of t frames: a Gaussian blob per channel moving at a constant velocity."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    seqs = torch.zeros(n, t, c, h, w)
    for i in range(n):
        for ch in range(c):
            pos = torch.rand(2, generator=g) * torch.tensor([h / 2, w / 2]) + torch.tensor([h / 4, w / 4])
            vel = (torch.rand(2, generator=g) - 0.5) * 2
            for k in range(t):
                cy, cx = pos + k * vel
                seqs[i, k, ch] = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
    return seqs


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("spec", SPECS)
def test_overfits_two_sequences(spec, adapter):
    """40 steps fit two sequences far better than the predictions without a model (the last input frame repeated,
    all background); under PredGS the rendering takes part in the fitted prediction."""
    model = build(spec, (4, 2, 16, 16), 4, ADAPTERS[adapter])
    seqs = moving_blobs(2, 8, 2, 16, 16)
    x, y = seqs[:, :4], seqs[:, 4:]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(40):
        opt.zero_grad()
        loss, _ = step_loss(model, x, y, step=step)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(x)  # the forecast from the inputs alone (recurrent models trained on the true frames)
        fitted = F.mse_loss(pred, y).item()
        repeat_last = F.mse_loss(x[:, -1:].expand_as(y), y).item()
        background = F.mse_loss(torch.zeros_like(y), y).item()
        assert fitted < 0.6 * min(repeat_last, background), \
            f"{spec}/{adapter}: MSE {fitted:.4f}, last input repeated {repeat_last:.4f}, background {background:.4f}"
        if adapter == "predgs":
            render = model.adapter.render
            model.adapter.render = lambda coarse, features=None: torch.zeros_like(render(coarse, features))
            without_rendering = model(x)
            assert (pred - without_rendering).abs().mean() > 0.01 * pred.abs().mean(), f"{spec}: rendering unused"


# ----------------------------------------------------------------------------- save / load


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("spec", SPECS)
def test_state_dict_round_trip(spec, adapter, tmp_path):
    model = build(spec, (4, 2, 16, 16), 6, ADAPTERS[adapter], seed=0)
    model.train()
    x = torch.rand(2, 4, 2, 16, 16)
    model(x, targets=torch.rand(2, 6, 2, 16, 16), step=0)  # move BatchNorm statistics off their defaults
    torch.save(model.state_dict(), tmp_path / "model.pt")
    fresh = build(spec, (4, 2, 16, 16), 6, ADAPTERS[adapter], seed=1)
    model.eval()
    fresh.eval()
    with torch.no_grad():
        expected = model(x)
        assert not torch.equal(fresh(x), expected)
        fresh.load_state_dict(torch.load(tmp_path / "model.pt"))
        assert torch.equal(fresh(x), expected)


# ----------------------------------------------------------------------------- parameter counts


# OpenSTL's parameter counts for its Moving MNIST configurations, in_shape (10, 1, 64, 64), measured by
# instantiating OpenSTL's own models (github.com/chengtan9907/OpenSTL, commit c74deb5) with the values of
# configs/mmnist/simvp/SimVP_gSTA.py, simvp/SimVP_IncepU.py, TAU.py, ConvLSTM.py and PredRNN.py
# (SimVP_Model(in_shape, hid_S=64, hid_T=512, N_S=4, N_T=8, model_type=..., mlp_ratio=8);
# ConvLSTM_Model / PredRNN_Model(4, [128] * 4, configs) with filter_size 5, stride 1, patch_size 4,
# layer_norm 0) and summing p.numel() over model.parameters().
OPENSTL_COUNTS = {
    "simvp_gsta": ({"name": "simvp", "model_type": "gSTA"}, 46_769_665),
    "simvp_incepu": ({"name": "simvp", "model_type": "IncepU"}, 57_946_113),
    "tau": ({"name": "tau"}, 44_656_001),
    "convlstm": ({"name": "convlstm"}, 15_083_520),  # 3,407,872 of them are never used by OpenSTL's forward
    "predrnn": ({"name": "predrnn"}, 23_838_720),
}
MMNIST_SIMVP = {"hid_S": 64, "hid_T": 512, "N_S": 4, "N_T": 8}
MMNIST_RNN = {"num_hidden": "128,128,128,128", "filter_size": 5, "stride": 1, "patch_size": 4, "layer_norm": 0}
OURS = {"simvp_gsta": 46_769_665, "simvp_incepu": 57_946_113, "tau": 44_656_001, "convlstm": 14_952_448,
        "predrnn": 23_838_720}


@pytest.mark.parametrize("key", OPENSTL_COUNTS)
def test_parameter_counts_match_openstl(key):
    spec, openstl = OPENSTL_COUNTS[key]
    spec = {**spec, **(MMNIST_RNN if key in ("convlstm", "predrnn") else MMNIST_SIMVP)}
    with torch.device("meta"):  # no memory, no initialization: only the shapes
        model = pdr.create_model(spec, (10, 1, 64, 64), 10)
    ours = sum(p.numel() for p in model.parameters())
    assert ours == OURS[key]
    assert abs(ours - openstl) <= 0.01 * openstl


def test_simvp_variants_share_the_encoder_and_decoder():
    a = build("simvp_gsta", (4, 2, 16, 16), 4).backbone
    b = build("simvp_incepu", (4, 2, 16, 16), 4).backbone
    assert a.encoder.state_dict().keys() == b.encoder.state_dict().keys()
    assert type(a.translator).__name__ != type(b.translator).__name__


# ----------------------------------------------------------------------------- TAU's regularization


def test_differential_divergence():
    y = torch.rand(2, 4, 1, 8, 8)
    assert differential_divergence(y, y).abs() < 1e-6
    assert differential_divergence(torch.rand(2, 4, 1, 8, 8), y) > 0
    assert differential_divergence(y[:, :2], y[:, :2]) == 0  # T <= 2: off, as in OpenSTL


def test_tau_alpha_is_an_auxiliary_loss_over_the_whole_rollout():
    model = pdr.create_model({"name": "tau", **TINY_SIMVP, "alpha": 0.5}, (2, 1, 16, 16), 5)
    assert model.backbone.uses_targets
    x, y = torch.rand(2, 2, 1, 16, 16), torch.rand(2, 5, 1, 16, 16)
    model.train()
    out = model(x, targets=y, step=0, return_output=True)  # three backbone calls of 2 frames
    copy.deepcopy(model)  # the model keeps nothing of the training graph: a copy (EMA) works
    expected = 0.5 * differential_divergence(out.frames, y)  # no adapter: the coarse frames are the prediction
    torch.testing.assert_close(out.aux_losses["ddr"], expected)
    model.eval()
    assert model(x, return_output=True).aux_losses == {}
    plain = pdr.create_model({"name": "simvp", **TINY_SIMVP}, (2, 1, 16, 16), 5)
    assert not plain.backbone.uses_targets


# ----------------------------------------------------------------------------- scheduled sampling


def test_sampling_probabilities_follow_openstl():
    s = SamplingSchedule(sampling_stop_iter=100, sampling_start_value=1.0, sampling_changing_rate=0.01)
    assert s.probabilities(0) == (1.0, 1.0)
    assert s.probabilities(50) == pytest.approx((1.0, 0.5))
    assert s.probabilities(100) == (1.0, 0.0)
    assert SamplingSchedule(scheduled_sampling=0).probabilities(0) == (1.0, 0.0)
    r = SamplingSchedule(reverse_scheduled_sampling=1, r_sampling_step_1=10, r_sampling_step_2=20, r_exp_alpha=2)
    assert r.probabilities(5) == (0.5, 0.5)
    p_in, p_out = r.probabilities(15)
    assert 0.5 < p_in < 1 and p_out == pytest.approx(0.25)
    assert r.probabilities(20) == (1.0, 0.0)
    mask = s.mask(3, 4, 5, step=0)
    assert mask.shape == (3, 7) and torch.all(mask == 1)
    mask = s.mask(1000, 4, 5, step=50)
    assert torch.all(mask[:, :3] == 1) and 0.4 < mask[:, 3:].mean() < 0.6


def test_recurrent_defaults_are_openstls_and_the_schedules():
    from pdr.backbones.convlstm import ConvLSTM
    from pdr.backbones.predrnn import PredRNN

    defaults = ConvLSTM.default_settings()
    assert PredRNN.default_settings() == defaults
    # OpenSTL's ConvLSTM/PredRNN defaults (openstl/utils/parser.py, configs/mmnist)
    assert {k: defaults[k] for k in ("filter_size", "stride", "patch_size", "layer_norm", "sampling_stop_iter",
                                     "sampling_changing_rate", "r_sampling_step_1", "r_sampling_step_2")} == {
        "filter_size": 5, "stride": 1, "patch_size": 4, "layer_norm": 0, "sampling_stop_iter": 50000,
        "sampling_changing_rate": 0.00002, "r_sampling_step_1": 25000, "r_sampling_step_2": 50000}
    assert SamplingSchedule.from_settings(defaults) == SamplingSchedule()


@pytest.mark.parametrize("config,key,message", [
    ("convlstm", "sampling_stop_itr=10", "unknown argument of backbone 'convlstm'. Did you mean 'sampling_stop_iter'?"),
    ("predrnn", "r_exp_alfa=2.0", "unknown argument of backbone 'predrnn'. Did you mean 'r_exp_alpha'?"),
    ("predrnn", "sampling_stop_iter=soon", "backbone 'predrnn' expected int (default: 50000), got str 'soon'"),
    ("tau", "alfa=0.1", "unknown argument of backbone 'tau'. Did you mean 'alpha'?"),
    ("tau", "groups=4", "unknown argument of backbone 'tau'."),
    ("tau", "alpha=much", "backbone 'tau' expected float (default: 0.1), got str 'much'"),
])
def test_config_checks_the_arguments_of_recurrent_models_and_tau(config, key, message):
    from pdr.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load_config(REPO / "configs" / "advected_fields" / f"{config}.yaml", [f"model.backbone.{key}"])
    assert f"model.backbone.{key.split('=')[0]}: {message}" in str(info.value)


def test_tau_is_simvp_with_the_tau_translator_and_ddr_on():
    cfg = load_config(REPO / "configs" / "advected_fields" / "tau.yaml", ["model.backbone.model_type=TAU"])
    assert cfg["model"]["backbone"]["model_type"] == "TAU"  # OpenSTL's TAU configs set it; any case
    net = pdr.create_model({"name": "tau", **TINY_SIMVP}, (4, 1, 16, 16), 4).backbone
    assert (net.model_type, net.alpha, net.uses_targets) == ("tau", 0.1, True)
    torch.manual_seed(0)
    tau = pdr.create_model({"name": "tau", **TINY_SIMVP}, (4, 1, 16, 16), 4).backbone
    torch.manual_seed(0)
    simvp = pdr.create_model({"name": "simvp", "model_type": "tau", "alpha": 0.1, **TINY_SIMVP}, (4, 1, 16, 16), 4)
    simvp = simvp.backbone
    assert list(tau.state_dict()) == list(simvp.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(tau.state_dict().values(), simvp.state_dict().values()))


@pytest.mark.parametrize("spec", ["convlstm", "predrnn"])
def test_targets_are_read_in_training_only(spec):
    net = build(spec, (3, 1, 16, 16), 4).backbone
    x, y1, y2 = torch.rand(2, 3, 1, 16, 16), torch.rand(2, 4, 1, 16, 16), torch.rand(2, 4, 1, 16, 16)
    net.train()
    a, b = net(x, targets=y1, step=0).frames, net(x, targets=y2, step=0).frames  # step 0: teacher forcing (eta = 1)
    torch.testing.assert_close(a[:, 0], b[:, 0])  # the first prediction sees the inputs only
    assert not torch.allclose(a[:, 1:], b[:, 1:])
    late = net(x, targets=y1, step=10**6).frames  # past sampling_stop_iter: own predictions, like inference
    torch.testing.assert_close(late, net(x).frames)
    net.eval()
    torch.testing.assert_close(net(x, targets=y1, step=0).frames, net(x).frames)


def test_patchify_round_trip_and_openstl_layout():
    x = torch.arange(2 * 3 * 2 * 4 * 6, dtype=torch.float32).view(2, 3, 2, 4, 6)
    p = patchify(x, 2)
    assert p.shape == (2, 3, 8, 2, 3)
    torch.testing.assert_close(unpatchify(p, 2), x)
    # OpenSTL's channel order: (row in patch, column in patch, channel)
    assert p[0, 0, :, 0, 0].tolist() == [x[0, 0, c, i, j].item() for i in range(2) for j in range(2) for c in range(2)]


def test_num_hidden_accepts_openstl_strings():
    assert parse_num_hidden("128,128,64") == [128, 128, 64]
    assert parse_num_hidden([4, 4]) == [4, 4]
    assert parse_num_hidden(8) == [8]


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("spec,match", [
    ({"name": "simvp", "model_type": "convnext"}, "model_type"),
    ({"name": "simvp", "N_T": 1}, "N_T"),
    ({"name": "simvp", "model_type": "incepu", "incep_ker": [3, 4]}, "incep_ker"),
    ({"name": "simvp", "spatio_kernel_enc": 2}, "spatio_kernel_enc"),
    ({"name": "simvp", "hid_S": 7}, "hid_S"),
    ({"name": "simvp", "alpha": -1.0}, "alpha"),
    ({"name": "tau", "model_type": "gsta"}, "model_type"),
    ({"name": "convlstm", "num_hidden": "8,x"}, "num_hidden"),
    ({"name": "convlstm", "num_hidden": []}, "num_hidden"),
    ({"name": "convlstm", "filter_size": 4}, "filter_size"),
    ({"name": "convlstm", "stride": 2}, "stride"),
    ({"name": "convlstm", "patch_size": 0}, "patch_size"),
    ({"name": "convlstm", "layer_norm": 2}, "layer_norm"),
    ({"name": "predrnn", "num_hidden": [8, 16]}, "num_hidden"),
    ({"name": "predrnn", "sampling_start_value": 2.0}, "sampling_start_value"),
    ({"name": "predrnn", "sampling_changing_rate": -1.0}, "sampling_changing_rate"),
    ({"name": "predrnn", "r_sampling_step_1": 10, "r_sampling_step_2": 5}, "r_sampling_step_1"),
    ({"name": "predrnn", "r_exp_alpha": 0}, "r_exp_alpha"),
    ({"name": "predrnn", "scheduled_sampling": 3}, "scheduled_sampling"),
])
def test_bad_hyperparameters_name_the_argument(spec, match):
    base = TINY_SIMVP if spec["name"] in ("simvp", "tau") else {"num_hidden": [8]}
    with pytest.raises(ValueError, match=match):
        pdr.create_model({**base, **spec}, (4, 1, 16, 16), 4)


def test_bad_targets_shape_is_named():
    net = build("predrnn", (3, 1, 16, 16), 4).backbone.train()
    with pytest.raises(ValueError, match="targets"):
        net(torch.rand(2, 3, 1, 16, 16), targets=torch.rand(2, 4, 2, 16, 16), step=0)


# ----------------------------------------------------------------------------- shipped configs


NEW_CONFIGS = [f"{data}/{name}{suffix}.yaml" for data in ("bouncing_sprites", "advected_fields")
               for name in ("simvp_incepu", "tau", "convlstm", "predrnn") for suffix in ("", "_predgs")]


@pytest.mark.parametrize("path", NEW_CONFIGS)
def test_shipped_configs_build(path):
    cfg = load_config(REPO / "configs" / path)
    with torch.device("meta"):
        model = pdr.build_model(cfg)
    assert (model.adapter is not None) == path.endswith("_predgs.yaml")
    assert sum(p.numel() for p in model.backbone.parameters()) < 5_000_000  # trainable on a CPU


@pytest.mark.parametrize("name", ["convlstm_predgs", "tau"])
def test_training_loop_passes_targets_and_step(name, tmp_path):
    from pdr.engine import Trainer

    overrides = ["data.num_train=4", "data.num_val=2", "data.num_test=2", "data.batch_size=2", "train.max_steps=2",
                 "train.log_every=1", "train.tensorboard=false", "eval.metrics=[mse]"]
    if name.startswith("convlstm"):
        overrides += ["model.backbone.num_hidden=[8,8]", "model.adapter.num_gaussians=16", "model.adapter.hidden=8"]
    else:
        overrides += ["model.backbone.hid_S=8", "model.backbone.hid_T=16", "model.backbone.N_T=2"]
    cfg = load_config(REPO / "configs" / "advected_fields" / f"{name}.yaml", overrides)
    seen = []
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    original = trainer.model.backbone.forward

    def spy(*args, **kwargs):
        seen.append((kwargs.get("targets") is not None, kwargs.get("step")))
        return original(*args, **kwargs)

    trainer.model.backbone.forward = spy
    trainer.fit()
    assert trainer.global_step == 2
    assert (True, 0) in seen and (True, 1) in seen
