"""The documented training options do what the README says: fp16's gradient scaler, ``optim.grad_clip``, bf16,
``train.compile`` and "validation uses the EMA weights", each against a value computed here."""
import math

import pytest
import torch

from pdr.config import load_config
from pdr.data import build_dataset
from pdr.engine import Trainer, load_checkpoint
from pdr.model import build_model


def small_cfg(repo, *extra):
    """A BatchNorm- and dropout-free convnet (tests/support/tiny_backbones.py) on 16x16 advected fields."""
    return load_config(repo / "configs" / "advected_fields" / "simvp.yaml", [
        "imports=[tiny_backbones]", "model.backbone={name: test_convnet, width: 8}", "data.size=16",
        "data.num_train=8", "data.num_val=4", "data.batch_size=4", "train.log_every=1", "train.tensorboard=false",
        *extra])


def record_steps(trainer: Trainer) -> list[dict]:
    """After every training step: its loss and a copy of the weights."""
    rows, after_step = [], trainer._after_step

    def recording(terms):
        rows.append({"loss": terms["loss"].item(),
                     "weights": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}})
        after_step(terms)

    trainer._after_step = recording
    return rows


def grad_norm(params) -> float:
    return torch.linalg.vector_norm(torch.stack([p.grad.detach().double().norm() for p in params])).item()


def test_fp16_scaler_skips_an_inf_gradient_step_and_clipping_sees_the_unscaled_gradients(repo, tmp_path):
    """Step 2's gradient is inf: the update is skipped and the scale halves; the other steps clip the true
    (unscaled) gradient norm to optim.grad_clip."""
    clip = 1e-3
    trainer = Trainer(small_cfg(repo, "train.precision=fp16", "train.max_steps=3", f"optim.grad_clip={clip}"),
                      tmp_path / "run", show_progress=False)
    scaler, params = trainer.amp.scaler, [p for p in trainer.model.parameters() if p.requires_grad]
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    weight = trainer.model.backbone.net[0].weight
    weight.register_hook(lambda g: torch.full_like(g, math.inf) if trainer.global_step == 1 else g)

    unscaled, clipped, scales = {}, {}, []
    unscale = scaler.unscale_

    def unscale_and_measure(optimizer):
        unscale(optimizer)
        unscaled[trainer.global_step] = grad_norm(params)

    scaler.unscale_ = unscale_and_measure
    trainer.optimizer.register_step_pre_hook(lambda *args: clipped.__setitem__(trainer.global_step, grad_norm(params)))
    rows = record_steps(trainer)
    after_step = trainer._after_step
    trainer._after_step = lambda terms: (scales.append(scaler.get_scale()), after_step(terms))
    trainer.fit()

    assert scales == [65536.0, 32768.0, 32768.0]  # torch's initial scale, halved by the inf step only
    assert sorted(clipped) == [0, 2]  # the optimiser never stepped on the inf gradients
    for step in (0, 2):
        assert unscaled[step] > 10 * clip  # the true norm (a scaled one would be 65536 times larger) ...
        assert clipped[step] == pytest.approx(clip, rel=1e-4)  # ... clipped to grad_clip
    before, skipped, after = initial, rows[1]["weights"], rows[2]["weights"]
    for name, value in rows[0]["weights"].items():
        torch.testing.assert_close(skipped[name], value, rtol=0, atol=0, msg=name)
    assert any(not torch.equal(rows[0]["weights"][k], before[k]) for k in before)
    assert any(not torch.equal(after[k], skipped[k]) for k in after)
    assert all(torch.isfinite(v).all() for v in after.values())


def test_bf16_trains_close_to_fp32_but_not_identically(repo, tmp_path):
    runs, dtypes = {}, {}
    for precision in ("fp32", "bf16"):
        trainer = Trainer(small_cfg(repo, f"train.precision={precision}", "train.max_steps=4"),
                          tmp_path / precision, show_progress=False)
        rows = record_steps(trainer)
        trainer.model.backbone.net[0].register_forward_hook(
            lambda module, args, out, p=precision: dtypes.setdefault(p, set()).add(out.dtype))
        last_val = trainer.fit()
        runs[precision] = ([r["loss"] for r in rows], last_val)
    assert dtypes == {"fp32": {torch.float32}, "bf16": {torch.bfloat16}}  # convolutions in bfloat16
    (fp32_losses, fp32_val), (bf16_losses, bf16_val) = runs["fp32"], runs["bf16"]
    assert bf16_losses == pytest.approx(fp32_losses, rel=3e-2)
    for key in ("val/loss", "val/mse", "val/mae", "val/psnr", "val/ssim"):
        assert bf16_val[key] == pytest.approx(fp32_val[key], rel=3e-2), key
    assert bf16_losses != fp32_losses  # the forward really ran in bfloat16


def test_compiled_training_matches_eager(repo, tmp_path):
    from torch._dynamo.utils import counters

    runs = {}
    torch._dynamo.reset()
    counters.clear()
    for compiled in (False, True):
        trainer = Trainer(small_cfg(repo, f"train.compile={str(compiled).lower()}", "train.max_steps=2"),
                          tmp_path / str(compiled), show_progress=False)
        rows = record_steps(trainer)
        trainer.fit()
        runs[compiled] = rows
        assert isinstance(trainer.net, torch._dynamo.eval_frame.OptimizedModule) == compiled
    assert counters["stats"]["calls_captured"] > 0  # the training steps ran the compiled module
    for eager, compiled in zip(runs[False], runs[True]):
        assert compiled["loss"] == pytest.approx(eager["loss"], rel=1e-4)
        for name, value in eager["weights"].items():
            torch.testing.assert_close(compiled["weights"][name], value, rtol=1e-4, atol=1e-6, msg=name)


def test_validation_scores_the_ema_weights(repo, tmp_path):
    """val/mse is the MSE of the EMA model (OpenSTL's: summed over channels and pixels, averaged over frames and
    sequences), computed here from last.pt's EMA weights, not the trained weights'."""
    cfg = small_cfg(repo, "train.ema_decay=0.5", "train.max_steps=4", "optim.lr=1e-2")
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    reported = trainer.fit()["val/mse"]

    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    val = build_dataset(cfg, "val")
    x = torch.stack([val[i][0] for i in range(len(val))])
    y = torch.stack([val[i][1] for i in range(len(val))])
    scores = {}
    for weights in ("ema", "model"):
        model = build_model(cfg).eval()
        model.load_state_dict(state[weights])
        with torch.no_grad():
            scores[weights] = ((model(x) - y) ** 2).sum(dim=(2, 3, 4)).mean().item()
    assert reported == pytest.approx(scores["ema"], rel=1e-5)
    assert scores["model"] != pytest.approx(scores["ema"], rel=1e-3)  # the two differ, so a mix-up shows
