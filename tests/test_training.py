"""The training engine in-process: budget, checkpoints, exact resume, refusing to clobber a run."""
import signal

import pytest
import torch

from pdr.config import load_config
from pdr.engine import Trainer
from pdr.errors import CheckpointError, PDRError


def tiny_cfg(repo, tiny_overrides, *extra):
    return load_config(repo / "configs" / "advected_fields" / "simvp_predgs.yaml",
                       [*tiny_overrides, "model.adapter.num_gaussians=16", "model.adapter.hidden=8", *extra])


def test_fit_writes_a_run_folder(tmp_path, repo, tiny_overrides):
    trainer = Trainer(tiny_cfg(repo, tiny_overrides), tmp_path / "run", show_progress=False)
    result = trainer.fit()
    assert trainer.global_step == 4
    for name in ("config.yaml", "log.txt", "metrics.csv", "curves.png", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (tmp_path / "run" / name).is_file(), name
    assert result["val/mse"] > 0
    assert "validation epoch 2" in (tmp_path / "run" / "log.txt").read_text()
    with pytest.raises(PDRError, match="already holds a run; pass --resume"):
        Trainer(tiny_cfg(repo, tiny_overrides), tmp_path / "run")


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, repo, tiny_overrides):
    cfg = tiny_cfg(repo, tiny_overrides, "train.max_steps=6")
    straight = Trainer(cfg, tmp_path / "a", show_progress=False)
    straight.fit()

    interrupted = Trainer(cfg, tmp_path / "b", show_progress=False)
    loss_fn = interrupted.loss_fn
    calls = {"n": 0}

    def stop_after_three(pred, target):
        calls["n"] += interrupted.model.training
        if calls["n"] == 3:  # mid-epoch (2 steps per epoch): as if SIGTERM arrived now
            interrupted._on_signal(signal.SIGTERM, None)
        return loss_fn(pred, target)

    interrupted.loss_fn = stop_after_three
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        interrupted.fit()
    assert interrupted.global_step == 3

    resumed = Trainer(cfg, tmp_path / "b", resume=True, show_progress=False)
    assert (resumed.global_step, resumed.epoch, resumed.batch_in_epoch) == (3, 1, 1)
    resumed.fit()
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_resume_refuses_another_config(tmp_path, repo, tiny_overrides):
    Trainer(tiny_cfg(repo, tiny_overrides), tmp_path / "run", show_progress=False).fit()
    other = tiny_cfg(repo, tiny_overrides, "model.adapter.num_gaussians=25")
    with pytest.raises(CheckpointError, match=r"different config; differing keys:\n  model.adapter.num_gaussians: 16 -> 25"):
        Trainer(other, tmp_path / "run", resume=True)


def test_non_finite_loss_skips_the_update(tmp_path, repo, tiny_overrides, caplog):
    trainer = Trainer(tiny_cfg(repo, tiny_overrides, "train.max_steps=2"), tmp_path / "run", show_progress=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    loss_fn = trainer.loss_fn

    def nan_loss(pred, target):
        terms = loss_fn(pred, target)
        terms["1-ssim"] = terms["1-ssim"] * float("nan")
        terms["loss"] = terms["loss"] + terms["1-ssim"]
        return terms

    trainer.loss_fn = nan_loss
    trainer._train_epoch()
    assert "non-finite loss (terms: 1-ssim); update skipped" in caplog.text
    for k, v in trainer.model.state_dict().items():
        if v.is_floating_point() and "running" not in k:
            torch.testing.assert_close(v, before[k], msg=k)
