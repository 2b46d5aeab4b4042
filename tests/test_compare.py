"""tools/compare.py: arms trained alike, one table with the trivial rows, resume, and early errors."""
import csv
import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from pdr.cli.compare import main as compare_main
from pdr.compare import Arm, compare
from pdr.data.synthetic import AdvectedFields
from pdr.engine.trainer import Trainer
from pdr.errors import ConfigError, PDRError

CONFIG = "configs/advected_fields/simvp.yaml"
TINY = [
    "model.backbone.hid_S=8", "model.backbone.hid_T=16", "model.backbone.N_T=2",
    "data.num_train=8", "data.num_val=4", "data.num_test=6", "data.batch_size=4", "data.eval_batch_size=4",
    "train.max_steps=2", "train.tensorboard=false", "eval.metrics=[mse,mae,psnr,ssim,sharpness]", "eval.num_vis=2",
]


def test_paper_arms_one_table_with_trivial_rows(repo, tmp_path):
    work = tmp_path / "cmp"
    proc = subprocess.run(
        [sys.executable, "tools/compare.py", "--config", "configs/advected_fields/simvp_predgs.yaml", "--arms", "paper",
         "--work-dir", str(work), "--set", *TINY, "model.adapter.num_gaussians=16", "model.adapter.hidden=8",
         "--no-progress"],
        cwd=repo, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    arms = ["mse", "l1_ssim", "predgs_l1_ssim", "predgs_mse"]
    for name in arms:  # ordinary run folders, evaluated like tools/eval.py does
        assert (work / name / "checkpoints" / "best.pt").is_file()
        assert (work / name / "eval" / "predictions_test.png").is_file()
    for name in ("comparison_per_frame.png", "comparison_predictions.png"):
        assert (work / name).stat().st_size > 1000
    md = (work / "comparison.md").read_text()
    assert md.strip() in proc.stdout
    rows = {r[0]: r for r in csv.reader((work / "comparison.csv").read_text().splitlines())}
    assert set(rows) == {"run", *arms, "all background (no model)", "last input repeated (no model)"}
    assert "best by val/mse" in md and "predgs_l1_ssim: simvp + PredGS + L1/SSIM" in md

    # the trivial rows, computed here from the frames themselves (advected_fields: raw values, background 0);
    # MSE and MAE: the sum over channels and pixels, averaged over sequences and frames
    data = AdvectedFields("test", 4, 4, num_test=6)
    seqs = np.stack([data.sequence(i) for i in range(6)]).astype(np.float64)
    inputs, truth = seqs[:, :4], seqs[:, 4:8]
    record = {r["run"]: r for r in json.loads((work / "comparison.json").read_text())["rows"]}
    zeros = record["all background (no model)"]
    assert zeros["mse"] == pytest.approx((truth**2).sum(axis=(2, 3, 4)).mean(), rel=1e-5)
    assert zeros["mae"] == pytest.approx(np.abs(truth).sum(axis=(2, 3, 4)).mean(), rel=1e-5)
    last = record["last input repeated (no model)"]
    assert last["mse"] == pytest.approx(((truth - inputs[:, -1:]) ** 2).sum(axis=(2, 3, 4)).mean(), rel=1e-5)
    assert all(record[name]["mse"] > 0 for name in arms)


def _digest(path):
    return path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


def test_interrupted_comparison_resumes_without_retraining_finished_arms(repo, tmp_path, monkeypatch):
    """Arm b stops after step 3 (its first validation at step 2 is done); resumed, it is the arm an uninterrupted
    comparison trains: the same checkpoints, bit for bit, and the same row."""
    config = repo / CONFIG
    arms = [Arm("a", ("loss=mse",)), Arm("b", ("loss=l1",))]
    overrides = [*TINY, "train.max_steps=4", "model.backbone.drop_path=0.5"]  # two epochs of two steps; random
    original = Trainer._should_stop

    def stop_b_after_three_steps(self):  # as if SIGINT arrived while arm b trained
        if self.work_dir.name == "b" and self.global_step >= 3:
            self.signals.received = 2
        return original(self)

    monkeypatch.setattr(Trainer, "_should_stop", stop_b_after_three_steps)
    with pytest.raises(KeyboardInterrupt):
        compare(config, arms, tmp_path, overrides, device="cpu", show_progress=False)
    monkeypatch.setattr(Trainer, "_should_stop", original)
    a_ckpts = {p.name: _digest(p) for p in (tmp_path / "a" / "checkpoints").glob("*.pt")}
    assert torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=False)["global_step"] == 4
    assert torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=False)["global_step"] == 3
    assert not (tmp_path / "comparison.md").exists()

    result = compare(config, arms, tmp_path, overrides, device="cpu", show_progress=False)
    assert result.reused == ["a"] and result.trained == ["b"]
    assert {p.name: _digest(p) for p in (tmp_path / "a" / "checkpoints").glob("*.pt")} == a_ckpts
    assert torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=False)["global_step"] == 4
    assert "resumed from" in (tmp_path / "b" / "log.txt").read_text()
    assert [r.name for r in result.results[:2]] == ["a", "b"]
    straight = compare(config, arms[1:], tmp_path / "straight", overrides, device="cpu", show_progress=False)
    for name in ("best", "last"):
        ours, theirs = (torch.load(d / "b" / "checkpoints" / f"{name}.pt", weights_only=False)
                        for d in (tmp_path, tmp_path / "straight"))
        assert (ours["global_step"], ours["history"]) == (theirs["global_step"], theirs["history"]), name
        for key, value in theirs["model"].items():
            torch.testing.assert_close(ours["model"][key], value, rtol=0, atol=0, msg=f"{name}.pt {key}")
    assert result.results[1].metrics == straight.results[0].metrics

    again = compare(config, arms, tmp_path, overrides, device="cpu", show_progress=False)
    assert again.reused == ["a", "b"] and again.trained == []
    with pytest.raises(PDRError, match=r"(?s)holds a run of another config.*loss\.name"):  # never mixes setups
        compare(config, [Arm("a", ("loss=l1",))], tmp_path, overrides, device="cpu", show_progress=False)


def test_bad_arm_is_refused_before_anything_is_trained(repo, tmp_path, capsys):
    arms = [Arm("ok", ("loss=mse",)), Arm("bad", ("model.backbone.hid_SS=3",))]
    with pytest.raises(ConfigError, match=r"arm 'bad'.*hid_SS"):
        compare(repo / CONFIG, arms, tmp_path / "lib", TINY, device="cpu")
    assert not (tmp_path / "lib" / "ok").exists()

    argv = ["--config", str(repo / CONFIG), "--work-dir", str(tmp_path / "cli"), "--arm", "ok", "loss=mse",
            "--arm", "bad", "model.backbone.hid_SS=3", "--set", *TINY]
    assert compare_main(argv) == 2
    err = capsys.readouterr().err
    assert "error: arm 'bad'" in err and "hid_SS" in err and "Traceback" not in err
    assert not (tmp_path / "cli" / "ok").exists()


@pytest.mark.parametrize("override,message", [
    ("data.num_train=16", "data is shared by every arm"),
    ("train.seed=3", "train.seed is shared by every arm"),
])
def test_arms_cannot_change_what_keeps_the_comparison_fair(repo, tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        compare(repo / CONFIG, [Arm("a", (override,))], tmp_path, TINY, device="cpu")
    assert not (tmp_path / "a").exists()
