"""tools/compare.py's fine-tune protocol (pdr.compare.base, pdr.compare.finetune): one base trained once and
reused, every arm starting from it, the base row and curve, resume, a given OpenSTL checkpoint as the base, the
plateau check."""
import hashlib
import json

import numpy as np
import pytest
import torch

import pdr
from pdr.cli.compare import main as compare_main
from pdr.compare import Arm
from pdr.compare.base import BaseSpec, Plateau, plateau
from pdr.compare.finetune import compare_finetune, finetune_arms
from pdr.config import load_config
from pdr.data.synthetic import AdvectedFields
from pdr.engine.checkpoint import load_checkpoint
from pdr.model import build_model
from test_init_from import _trained_like
from test_openstl_bridge import fake_openstl, package_dir  # noqa: F401  (fixtures: OpenSTL's stand-in)

CONFIG = "configs/advected_fields/simvp_predgs.yaml"
TINY = [
    "model.backbone.hid_S=8", "model.backbone.hid_T=16", "model.backbone.N_T=2", "model.backbone.N_S=2",
    "data.num_train=8", "data.num_val=4", "data.num_test=6", "data.batch_size=4", "data.eval_batch_size=6",
    "train.max_steps=2", "train.tensorboard=false", "eval.metrics=[mse,mae,ssim,contrast,sharpness]", "eval.num_vis=2",
    "model.adapter.num_gaussians=16", "model.adapter.hidden=8",
]


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rows(work):
    return {r["run"]: r for r in json.loads((work / "comparison.json").read_text())["rows"]}


def backbone_weights(path):
    return {k: v for k, v in load_checkpoint(path)["model"].items() if k.startswith("backbone.")}


def test_plateau_compares_the_last_quarter_with_what_came_before():
    history = [{"step": s, "val/mse": v} for s, v in [(100, 50.0), (200, 40.0), (300, 36.0), (400, 35.5)]]
    found = plateau(history, "val/mse")
    assert found.window == (400, 400) and found.change == pytest.approx((36.0 - 35.5) / 36.0)
    assert found.reached  # 1.4% < 2%
    history[-1]["val/mse"] = 30.0
    assert not plateau(history, "val/mse").reached
    ssim = [{"step": s, "val/ssim": v} for s, v in [(1, 0.5), (2, 0.6), (3, 0.6), (4, 0.7)]]
    assert plateau(ssim, "val/ssim").change == pytest.approx(0.1 / 0.6)  # higher is better
    assert plateau(history[:2], "val/mse") is None  # one validation before the window: cannot judge
    assert "NOT a plateau" in Plateau("val/mse", (3, 4), 0.05).describe()


def test_a_base_is_trained_once_and_every_arm_starts_from_it(repo, tmp_path, monkeypatch):
    from pdr.engine.trainer import Trainer

    config, bases = repo / CONFIG, tmp_path / "bases"
    spec = BaseSpec(steps=4, bases=str(bases))
    arms = [Arm("mse", ("model.adapter=null", "loss=mse")),
            Arm("refiner", ("model.adapter={name: conv_refiner, pool: 2, hidden: 4}", "model.freeze_backbone=true"))]
    original = Trainer._should_stop

    def stop_the_base_at_step_one(self):  # as if SIGINT arrived while the base trained
        if self.work_dir.parent == bases and self.global_step >= 1:
            self.signals.received = 2
        return original(self)

    monkeypatch.setattr(Trainer, "_should_stop", stop_the_base_at_step_one)
    with pytest.raises(KeyboardInterrupt):
        compare_finetune(config, arms, tmp_path / "one", spec, TINY, device="cpu", show_progress=False)
    assert not (tmp_path / "one" / "mse").exists()  # no arm trains before its base is finished
    monkeypatch.setattr(Trainer, "_should_stop", original)

    compare_finetune(config, arms, tmp_path / "one", spec, TINY, device="cpu", show_progress=False)
    (base,) = list(bases.iterdir())
    assert base.name.startswith("advected_fields_simvp_4steps_")
    assert "resumed from" in (base / "log.txt").read_text()  # the interrupted base went on
    best = base / "checkpoints" / "best.pt"
    base_state = load_checkpoint(best)
    assert base_state["global_step"] == 4 and base_state["config"]["loss"]["name"] == "mse"
    assert base_state["config"]["model"]["adapter"] is None
    for arm in ("mse", "refiner"):  # each arm loaded the base, ran its own budget, on the fine-tune schedule
        state = load_checkpoint(tmp_path / "one" / arm / "checkpoints" / "last.pt")
        assert state["config"]["model"]["init_from"] == str(best) and state["global_step"] == 2
        assert state["config"]["schedule"]["name"] == "cosine" and state["config"]["schedule"]["warmup_steps"] == 0
        assert state["config"]["optim"]["lr"] == pytest.approx(1e-4)  # a tenth of the config's 1e-3
        assert "loaded all" in (tmp_path / "one" / arm / "log.txt").read_text()
    frozen = backbone_weights(tmp_path / "one" / "refiner" / "checkpoints" / "last.pt")
    assert all(torch.equal(frozen[k], v) for k, v in backbone_weights(best).items())  # frozen: still the base

    table = rows(tmp_path / "one")
    names = list(table)
    assert names[0].startswith("base") and names[1:3] == ["mse", "refiner"]
    assert names[3:] == ["all background (no model)", "last input repeated (no model)"]
    # the base row: the base model's predictions, scored here from the frames (MSE summed over pixels)
    model = build_model(load_config(config, [*TINY, "model.adapter=null"]))
    model.load_state_dict(base_state["model"])
    data = AdvectedFields("test", 4, 4, num_test=6)
    x, y = (torch.stack([data[i][j] for i in range(6)]) for j in (0, 1))
    with torch.no_grad():
        pred = model.eval()(x).numpy().astype(np.float64)
    assert table[names[0]]["mse"] == pytest.approx(((pred - y.numpy()) ** 2).sum(axis=(2, 3, 4)).mean(), rel=1e-4)
    assert (tmp_path / "one" / "base_curve.png").stat().st_size > 1000
    md = (tmp_path / "one" / "comparison.md").read_text()
    assert "Note: base: simvp + mse, 4 steps" in md and "base curve:" in md
    assert "refiner: adapter conv_refiner, backbone frozen, loss" in md  # arms say what they change

    # a second comparison with the same base config reuses the base: not retrained
    before = digest(best)
    again = compare_finetune(config, [Arm("l1", ("model.adapter=null", "loss=l1"))], tmp_path / "two", spec,
                             [*TINY, "eval.num_vis=1"], device="cpu", show_progress=False)
    assert digest(best) == before and list(bases.iterdir()) == [base]
    assert any("base: simvp + mse, 4 steps" in n and "reused" in n for n in again.notes)


def test_an_openstl_checkpoint_is_a_base(repo, tmp_path, fake_openstl):
    spec = {"name": "openstl:SimVP", "hid_S": 8, "hid_T": 16, "N_S": 2, "N_T": 2, "model_type": "gSTA"}
    source = pdr.create_model(spec, (4, 2, 32, 32), 4).eval()
    _trained_like(source)
    torch.save(source.backbone.model.state_dict(), tmp_path / "openstl.pth")  # as OpenSTL saves checkpoint.pth
    arms = [Arm("mse", ("model.adapter=null", "loss=mse"))]
    compare_finetune(repo / CONFIG, arms, tmp_path / "cmp", BaseSpec(source=str(tmp_path / "openstl.pth")), TINY,
                     device="cpu", show_progress=False)
    table = rows(tmp_path / "cmp")
    data = AdvectedFields("test", 4, 4, num_test=6)
    x, y = (torch.stack([data[i][j] for i in range(6)]) for j in (0, 1))
    with torch.no_grad():
        pred = source.backbone(x).frames.numpy().astype(np.float64)
    assert table["base (the model every arm starts from)"]["mse"] == pytest.approx(
        ((pred - y.numpy()) ** 2).sum(axis=(2, 3, 4)).mean(), rel=1e-4)
    log = (tmp_path / "cmp" / "mse" / "log.txt").read_text()
    assert "loaded all" in log and "openstl.pth" in log
    assert "the given model has no validation history" in (tmp_path / "cmp" / "comparison.md").read_text()


def test_the_finetune_arm_set(repo):
    cfg = load_config(repo / CONFIG, TINY)
    arms = {a.name: a for a in finetune_arms(cfg)}
    assert list(arms) == ["mse", "loss_only", "refiner", "predgs", "refiner_trained", "predgs_trained"]
    configs = {n: load_config(repo / CONFIG, [*TINY, *a.overrides]) for n, a in arms.items()}
    counts = {n: sum(p.numel() for p in build_model(c).adapter.parameters()) for n, c in configs.items()
              if c["model"]["adapter"] is not None}
    assert abs(counts["refiner"] - counts["predgs"]) / counts["predgs"] < 0.05  # the same trainable size
    assert [configs[n]["model"]["freeze_backbone"] for n in ("refiner", "predgs", "refiner_trained")] == [
        True, True, False]
    assert {configs[n]["loss"]["name"] for n in ("loss_only", "refiner", "predgs", "predgs_trained")} == {"l1_ssim"}
    assert configs["mse"]["loss"]["name"] == "mse" and configs["mse"]["model"]["adapter"] is None


@pytest.mark.parametrize("extra,message", [
    (["--arms", "finetune"], "--arms finetune starts every arm from a base"),
    (["--arm", "a", "loss=mse", "--base-steps", "3", "--base-from", "x.pth"], "not both"),
    (["--arm", "a", "loss=mse", "--base-steps", "0"], "--base-steps: expected a number of steps >= 1"),
    (["--arm", "a", "loss=mse", "--base-set", "loss=l1"], "belong to the fine-tune protocol"),
])
def test_protocol_arguments_are_checked_before_training(repo, tmp_path, capsys, extra, message):
    argv = ["--config", str(repo / CONFIG), "--work-dir", str(tmp_path / "cmp"), "--set", *TINY, *extra]
    assert compare_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "cmp").exists() and not (tmp_path / "bases").exists()


def test_a_warm_up_from_trained_weights_is_warned_and_the_finetune_preset_is_not(repo, tmp_path):
    from pdr.engine.optim import describe_schedule, restart_warning

    onecycle = load_config(repo / "configs/advected_fields/simvp.yaml", ["model.init_from=x.pth"])
    assert "onecycle: from lr 4e-05 up to 0.001" in restart_warning(onecycle)
    preset = tmp_path / "finetune.yaml"
    bases = [repo / "configs/advected_fields/simvp.yaml", repo / "configs/_base_/finetune.yaml"]
    preset.write_text(f"_base_: [{bases[0]}, {bases[1]}]\n")
    cfg = load_config(preset, ["model.init_from=x.pth"])
    assert restart_warning(cfg) is None and describe_schedule(cfg) == "lr 0.0001, cosine decay to 0 of it"
    assert restart_warning(load_config(repo / "configs/advected_fields/simvp.yaml")) is None  # from scratch
