"""A resumed run equals an uninterrupted one, bit for bit, with an EMA of the weights and with backbones that draw
random numbers in training (drop_path, scheduled sampling, SRVP's latent samples). The stop comes mid-epoch, as
SIGTERM would (tests/test_distributed.py kills a process instead)."""
import signal

import pytest
import torch

from pdr.config import load_config
from pdr.engine import Trainer

SMALL_DATA = ["data.num_train=8", "data.num_val=4", "data.batch_size=4", "train.max_steps=6", "train.log_every=1",
              "train.tensorboard=false", "train.ema_decay=0.7", "eval.metrics=[mse]"]
CASES = {
    "simvp_drop_path": ("advected_fields/simvp.yaml", [
        "model.backbone.hid_S=8", "model.backbone.hid_T=16", "model.backbone.N_T=2", "model.backbone.drop_path=0.5", "data.size=16"]),
    "predrnn_scheduled_sampling": ("advected_fields/predrnn.yaml", [
        "model.backbone.num_hidden=[8]", "model.backbone.sampling_start_value=0.5",
        "model.backbone.sampling_changing_rate=0.0", "data.size=16",
        "train.val_every_steps=4"]),  # validates at steps 4 and 6: a row's train loss spans the stop at step 3
    "srvp_sampling": ("bouncing_sprites/srvp.yaml", [
        "model.backbone.nf=4", "model.backbone.g_dim=16", "model.backbone.y_dim=6", "model.backbone.z_dim=4",
        "model.backbone.hidden=16", "model.backbone.lstm_hidden=16", "model.backbone.content_dim=8",
        "data.size=16", "data.in_frames=3", "data.out_frames=3", "data.seq_len=6", "data.sprite_size=[4.0, 8.0]"]),
}


def stop_mid_run(trainer: Trainer, after_steps: int) -> None:
    """Make ``trainer`` note SIGTERM during its ``after_steps``-th training step (the loop saves and stops after it)."""
    loss_fn, calls = trainer.loss_fn, {"n": 0}

    def counting(pred, target):
        calls["n"] += pred.requires_grad  # a training step (validation runs without gradients)
        if calls["n"] == after_steps:
            trainer.signals.note(signal.SIGTERM)
        return loss_fn(pred, target)

    trainer.loss_fn = counting


def interrupted_then_resumed(cfg, work, after_steps: int) -> Trainer:
    first = Trainer(cfg, work, show_progress=False)
    stop_mid_run(first, after_steps)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        first.fit()
    assert first.global_step == after_steps
    resumed = Trainer(cfg, work, resume=True, show_progress=False)
    resumed.fit()
    return resumed


def assert_same_tensors(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=f"{what} {name}")


@pytest.mark.parametrize("case", CASES)
def test_resume_with_ema_and_randomness_equals_an_uninterrupted_run(repo, tmp_path, case):
    config, extra = CASES[case]
    cfg = load_config(repo / "configs" / config, [*SMALL_DATA, *extra])
    straight = Trainer(cfg, tmp_path / "straight", show_progress=False)
    straight.fit()
    resumed = interrupted_then_resumed(cfg, tmp_path / "resumed", after_steps=3)  # mid-epoch: 2 steps per epoch
    assert resumed.global_step == straight.global_step == 6
    assert_same_tensors(straight.model.state_dict(), resumed.model.state_dict(), "weights")
    assert_same_tensors(straight.ema.module.state_dict(), resumed.ema.module.state_dict(), "EMA")
    assert resumed.history == straight.history  # metrics.csv's rows: validation scores, epoch mean train losses



def test_a_checkpoint_without_epoch_losses_still_resumes(repo, tmp_path):
    """Checkpoints written before ``epoch_losses`` was saved resume to the same weights; the resumed epoch's mean
    train loss then covers only the steps run after the resume."""
    config, extra = CASES["simvp_drop_path"]
    cfg = load_config(repo / "configs" / config, [*SMALL_DATA, *extra])
    first = Trainer(cfg, tmp_path / "straight", show_progress=False)
    first.fit()
    work = tmp_path / "resumed"
    stopped = Trainer(cfg, work, show_progress=False)
    stop_mid_run(stopped, 3)
    with pytest.raises(KeyboardInterrupt):
        stopped.fit()
    last = work / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=False)
    assert len(state.pop("epoch_losses")) == 1  # step 3, the first of epoch 2
    torch.save(state, last)
    resumed = Trainer(cfg, work, resume=True, show_progress=False)
    resumed.fit()
    assert_same_tensors(first.model.state_dict(), resumed.model.state_dict(), "weights")
    assert resumed.history[1]["train/loss"] != first.history[1]["train/loss"]
