"""The training engine in-process: budget, checkpoints, exact resume, refusing to clobber a run."""
import signal
from pathlib import Path

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
    assert "validation at step 4 (epoch 2)" in (tmp_path / "run" / "log.txt").read_text()
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
            interrupted.signals.note(signal.SIGTERM)
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
    # the log says that epoch 2 was cut short, then that it finished: "done" once, after the resume
    log = (tmp_path / "b" / "log.txt").read_text().splitlines()
    epoch_lines = [line.split(" INFO ", 1)[1].split(":")[0] for line in log if " INFO epoch " in line]
    assert epoch_lines == ["epoch 1 done", "epoch 2 interrupted after 1 of 2 steps", "epoch 2 done", "epoch 3 done"]


def test_loss_warmup_follows_the_optimiser_step(tmp_path, repo, tiny_overrides):
    """With ``loss.warmup`` every training step's loss uses the weight of that step (4 -> 0 over 4 steps)."""
    cfg = tiny_cfg(repo, tiny_overrides, "loss={name: l1_ssim, mse_weight: 0.0, warmup: {steps: 4, start: "
                   "{mse_weight: 4.0}}}", "train.max_steps=6")
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    inner, seen = trainer.loss_fn.loss, []
    forward = inner.forward

    def recording(pred, target):
        if trainer.model.training:
            seen.append(inner.mse_weight)
        return forward(pred, target)

    inner.forward = recording
    trainer.fit()
    assert seen == [4.0, 3.0, 2.0, 1.0, 0.0, 0.0]


def test_monitor_after_keeps_early_validations_out_of_best(tmp_path, repo, tiny_overrides):
    """Validations at steps 2, 4 and 6 scoring val/mse 1, 3, 2: best.pt is step 2 without monitor_after, step 6 with
    monitor_after 3 (step 2 may not compete) and with 7 (only the final validation may)."""
    for after, expected in ((0, 2), (3, 6), (7, 6)):
        trainer = Trainer(tiny_cfg(repo, tiny_overrides, "train.max_steps=6", f"train.monitor_after={after}"),
                          tmp_path / f"run{after}", show_progress=False)
        trainer._last_example = None
        trainer.evaluate_split = lambda loader, max_batches=None, t=trainer: {
            "loss": 0.5, "mse": {2: 1.0, 4: 3.0, 6: 2.0}[t.global_step]}
        trainer.fit()
        best = torch.load(tmp_path / f"run{after}" / "checkpoints" / "best.pt", weights_only=False)
        assert (best["global_step"], trainer.best) == (expected, {2: 1.0, 6: 2.0}[expected]), after


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


def conv_cfg(tmp_path, *extra):
    """A BatchNorm- and dropout-free backbone (tests/support/tiny_backbones.py) on advected_fields."""
    return load_config(Path(__file__).parents[1] / "configs" / "advected_fields" / "simvp.yaml", [
        "imports=[tiny_backbones]", "model.backbone={name: test_convnet, width: 8}", "data.num_train=16",
        "data.num_val=4", "train.log_every=1", *extra])


def test_repeated_non_finite_losses_stop_the_run_and_keep_the_checkpoint(tmp_path):
    from pdr.engine.nonfinite import NonFiniteLossError

    trainer = Trainer(conv_cfg(tmp_path, "data.batch_size=4", "train.max_steps=12", "train.max_nonfinite_steps=3"),
                      tmp_path / "run", show_progress=False)
    loss_fn = trainer.loss_fn

    def nan_after_four(pred, target):
        terms = loss_fn(pred, target)
        if trainer.global_step >= 4 and trainer.model.training:
            terms["mse"] = terms["mse"] * float("inf")
            terms["loss"] = terms["mse"]
        return terms

    trainer.loss_fn = nan_after_four
    with pytest.raises(NonFiniteLossError, match=r"stopped at step 6: 3 non-finite losses in a row \(terms: mse"):
        trainer.fit()
    from pdr.engine import load_checkpoint

    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["global_step"] == 4  # epoch end before the NaNs


def test_gradient_accumulation_equals_the_larger_batch(tmp_path):
    big = Trainer(conv_cfg(tmp_path, "data.batch_size=8", "train.max_steps=3"), tmp_path / "big", show_progress=False)
    big.fit()
    acc = Trainer(conv_cfg(tmp_path, "data.batch_size=4", "train.accumulate_steps=2", "train.max_steps=3"),
                  tmp_path / "acc", show_progress=False)
    acc.fit()
    for (name, a), b in zip(big.model.state_dict().items(), acc.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_bf16_ema_and_tensorboard(tmp_path):
    trainer = Trainer(conv_cfg(tmp_path, "data.batch_size=4", "train.max_steps=4", "train.precision=bf16",
                               "train.ema_decay=0.5"), tmp_path / "run", show_progress=False)
    result = trainer.fit()
    assert torch.isfinite(torch.tensor(result["val/mse"]))
    from pdr.engine import load_checkpoint

    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    key = "backbone.net.0.weight"
    assert torch.equal(best["model"][key], last["ema"][key]) or best["global_step"] < last["global_step"]
    assert not torch.equal(last["ema"][key], last["model"][key])  # the EMA lags the weights
    events = list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_full_disk_during_training_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno
    import os

    from pdr.engine import load_checkpoint

    trainer = Trainer(conv_cfg(tmp_path, "data.batch_size=4", "train.max_steps=8", "train.tensorboard=false"),
                      tmp_path / "run", show_progress=False)
    trainer.total_steps = 4
    trainer.fit()  # last.pt at step 4
    trainer.total_steps = 8

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(CheckpointError, match="No space left on device; the previous one is intact"):
        trainer.fit()
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["global_step"] == 4
