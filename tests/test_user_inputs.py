"""What a new user types, fed through the command-line tools' main(argv): every bad input ends in one clear line
that names what to change, a failed start writes nothing, and evaluation never loses a computed table."""
import contextlib
import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pdr.cli.compare import main as compare_main
from pdr.cli.eval import main as eval_main
from pdr.cli.train import main as train_main

TINY = [
    "model.backbone.hid_S=8", "model.backbone.hid_T=16", "model.backbone.N_T=2", "data.num_train=8",
    "data.num_val=4", "data.num_test=4", "data.batch_size=4", "train.tensorboard=false",
]
REPO = Path(__file__).resolve().parents[1]
SIMVP = str(REPO / "configs" / "advected_fields" / "simvp.yaml")
PREDGS = str(REPO / "configs" / "advected_fields" / "simvp_predgs.yaml")
TAU = str(REPO / "configs" / "advected_fields" / "tau.yaml")
SPRITES = str(REPO / "configs" / "bouncing_sprites" / "simvp.yaml")
KTH = str(REPO / "configs" / "kth" / "simvp.yaml")


def cli(main, *argv):
    """(exit status, stdout, stderr) of a tool's main(argv); stdout and stderr are not terminals."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's usage errors
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


def error_line(err: str) -> str:
    """The one ``error: ...`` line of a failed command (and no traceback)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error: ") or ": error: " in line]
    assert len(lines) == 1, err
    return lines[0]


def train(work, *sets, config=SIMVP, flags=()):
    return cli(train_main, "--config", config, "--set", *TINY, *sets, "--work-dir", work, "--no-progress", *flags)


def config_file(tmp_path, repo, loss):
    """A config file of its own whose loss is ``loss`` (a file's value, not a --set one)."""
    path = tmp_path / "l1_ssim.yaml"
    path.write_text(yaml.safe_dump({"_base_": str(repo / SIMVP), "loss": loss}))
    return path


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A finished run: 2 steps (one epoch), validated after each step, every step logged."""
    work = tmp_path_factory.mktemp("runs") / "base"
    rc, out, err = train(work, "train.max_steps=2", "train.log_every=1", "train.val_every_steps=1")
    assert rc == 0, err
    return work, err


def copy_run(base_run, tmp_path, name="run"):
    return shutil.copytree(base_run[0], tmp_path / name)


@contextlib.contextmanager
def read_only(folder):
    """``folder`` read-only for this process (chmod; chattr +i for root, whom permissions do not stop)."""
    if os.geteuid() == 0:
        made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
        undo = ["chattr", "-i", str(folder)]
    else:
        folder.chmod(0o555)
        made, undo = True, None
    try:
        probe = folder / ".probe"
        try:
            probe.touch()
        except OSError:
            pass
        else:
            probe.unlink()
            made = False
        if not made:
            pytest.skip("this file system does not let a folder be made read-only here")
        yield folder
    finally:
        if undo:
            subprocess.run(undo, capture_output=True)
        else:
            folder.chmod(0o755)


# ----------------------------------------------------------------------------- 1: switching the loss


@pytest.fixture(scope="module")
def switched_run(tmp_path_factory):
    """--set loss.name=mse on a file whose loss is l1_ssim with two arguments, trained in fp16 on the CPU."""
    tmp = tmp_path_factory.mktemp("switched")
    config = config_file(tmp, REPO, {"name": "l1_ssim", "lam": 0.3, "mse_weight": 2.0})
    rc, out, err = train(tmp / "run", "loss.name=mse", "train.max_steps=1", "train.log_every=1", config=config,
                         flags=("--precision", "fp16"))
    assert rc == 0, err
    return tmp / "run", err


def test_switching_the_loss_drops_the_old_loss_arguments_with_a_note(switched_run):
    work, err = switched_run
    assert "--set loss.name=mse replaces loss 'l1_ssim': dropped lam=0.3, mse_weight=2.0, which 'mse' does not take" in err
    assert yaml.safe_load((work / "config.yaml").read_text())["loss"] == {"name": "mse"}
    with open(work / "metrics.csv") as fh:
        assert "train/mse" in next(csv.reader(fh))  # trained with the MSE loss


@pytest.mark.parametrize("config,sets,expected", [
    (SIMVP, ["loss.reduction=mean"], "--set: loss.reduction: loss 'mse' takes no arguments"),
    (SIMVP, ["loss.name=l1_ssim", "loss.lamb=0.3"], "loss.lamb: unknown argument of loss 'l1_ssim'. Did you mean 'lam'?"),
])
def test_a_stray_loss_argument_is_refused_by_name(tmp_path, config, sets, expected):
    rc, out, err = train(tmp_path / "w", *sets, config=config)
    assert rc == 2 and expected in error_line(err)
    assert not (tmp_path / "w").exists()


def test_an_arm_with_a_stray_loss_argument_is_refused_before_training(tmp_path, repo):
    config = config_file(tmp_path, repo, {"name": "l1_ssim", "lam": 0.5})
    rc, out, err = cli(compare_main, "--config", config, "--work-dir", tmp_path / "cmp", "--set", *TINY,
                       "--arm", "a", "loss.lamb=0.3")
    assert rc == 2
    assert "arm 'a': --set: loss.lamb: unknown argument of loss 'l1_ssim'. Did you mean 'lam'?" in error_line(err)
    rc, out, err = cli(compare_main, "--config", SIMVP, "--work-dir", tmp_path / "cmp", "--set", *TINY,
                       "--arm", "a", "loss.lam=0.3")
    assert rc == 2 and "arm 'a': --set: loss.lam: loss 'mse' takes no arguments" in error_line(err)
    assert not (tmp_path / "cmp" / "a").exists()


# ----------------------------------------------------------------------------- 2: read-only folders


def test_training_into_a_read_only_folder_is_refused_before_anything_is_built(tmp_path):
    parent = tmp_path / "shared"
    parent.mkdir()
    with read_only(parent):
        rc, out, err = train(parent / "run", "train.max_steps=1")
        assert not (parent / "run").exists()
    line = error_line(err)
    assert rc == 2 and f"cannot create the run folder {parent / 'run'} in {parent}" in line
    assert "nothing was written" in line and "model:" not in err  # refused before the model was built


def test_eval_of_a_read_only_run_prints_the_table_then_what_it_could_not_write(base_run, tmp_path):
    work = copy_run(base_run, tmp_path, "ro")
    with read_only(work):
        rc, out, err = cli(eval_main, work, "--metrics", "mse", "mae", "--gif")
    assert rc == 1
    assert out.splitlines()[0] == "| run | MSE | MAE |" and out.splitlines()[2].startswith("| ro | ")  # the table
    line = error_line(err)
    assert "the table above is complete, but 1 file(s) or folder(s) could not be written" in line
    listed = err.split(line)[1].strip().splitlines()  # then the folder and the reason, once (images and GIFs)
    assert len(listed) == 1 and listed[0].startswith(f"{work / 'eval'}:")


# ----------------------------------------------------------------------------- 3: optimiser and schedule values


@pytest.mark.parametrize("value,expected", [
    ("optim.lr=-1e-3", "optim.lr: must be > 0, got -0.001"),
    ("optim.weight_decay=-0.1", "optim.weight_decay: must be >= 0, got -0.1"),
    ("optim.betas=[0.9]", "optim.betas: expected two numbers in [0, 1)"),
    ("optim.grad_clip=0", "optim.grad_clip: must be > 0"),
    ("schedule.pct_start=1.5", "schedule.pct_start: must be in (0, 1)"),
    ("schedule.min_lr_ratio=2", "schedule.min_lr_ratio: must be in [0, 1], got 2.0"),
    ("train.val_every=0", "train.val_every: must be >= 1, got 0"),
    ("train.log_every=0", "train.log_every: must be >= 1, got 0"),
])
def test_every_optimiser_and_schedule_value_is_checked_with_the_config(tmp_path, value, expected):
    rc, out, err = train(tmp_path / "w", value)
    assert rc == 2 and error_line(err).startswith(f"error: --set: {expected}")
    assert not (tmp_path / "w").exists()


# ----------------------------------------------------------------------------- 4, 5: eval with --set


def test_eval_with_another_backbone_says_what_does_not_fit_and_why(base_run):
    rc, out, err = cli(eval_main, base_run[0], "--set", "model.backbone.name=tau", "--no-images")
    line = error_line(err)
    assert rc == 2 and "its weights were trained for backbone 'simvp'; --set model.backbone.name=tau builds another " \
                       "network, which they do not fit:" in line
    assert "missing from the checkpoint: backbone.translator" in line and "with another shape:" in line
    assert len(line) < 1500


@pytest.mark.parametrize("args,expected", [
    (["--set", "data.num_test=0"], "the test split of advected_fields holds no sequences with --set data.num_test=0: "
                                   "nothing to evaluate"),
    (["--max-batches", "0"], "argument --max-batches: expected an integer >= 1, got 0"),
    (["--num-vis", "-1"], "argument --num-vis: expected an integer >= 0, got -1"),
    (["--batch-size", "0"], "argument --batch-size: expected an integer >= 1, got 0"),
])
def test_eval_of_nothing_is_refused(base_run, args, expected):
    rc, out, err = cli(eval_main, base_run[0], *args, "--no-images")
    assert rc == 2 and expected in error_line(err) and out == ""


# ----------------------------------------------------------------------------- 7: fp16 on the CPU


def test_fp16_on_the_cpu_warns_once_and_trains(switched_run):
    work, err = switched_run
    warnings = [line for line in err.splitlines() if "fp16 on the CPU" in line]
    assert len(warnings) == 1 and "on a CPU use fp32 or bf16" in warnings[0]
    assert "precision fp16" in (work / "log.txt").read_text()
    assert (work / "checkpoints" / "last.pt").is_file()


# ----------------------------------------------------------------------------- 8, 9, 10, 11: blame and failed starts


def test_a_value_given_with_set_is_blamed_on_set(tmp_path):
    rc, out, err = train(tmp_path / "w", "model.adapter.num_gaussians=-1", config=PREDGS)
    assert rc == 2 and error_line(err) == "error: --set: model.adapter (predgs): num_gaussians must be >= 1, got -1"
    rc, out, err = cli(train_main, "--config", REPO / "configs" / "bouncing_sprites" / "simvp.yaml", "--set", "data.num_train=4",
                       "data.num_val=4", "data.image_size=30", "model.pad=none", "--work-dir", tmp_path / "w")
    line = error_line(err)
    assert rc == 2 and line == ("error: --set: model.pad: none: simvp needs H and W multiples of 4, the frames are 30x30; "
                                "set pad: auto to pad them and crop the predictions back "
                                "(the data's frames come from --set data.image_size=30)")
    assert not (tmp_path / "w").exists()  # 11: a failed start writes nothing


@pytest.mark.parametrize("config,value,expected", [
    (KTH, "data.num_test=-1", "--set: data.num_test: expected an int >= 0 (use at most this many sequences of the "
                              "split) or null (all of them), got -1"),
    (SIMVP, "data.num_test=-1", "--set: data.num_test: must be an int >= 0, got -1"),
    (SPRITES, "data.image_size=-3", "--set: data.image_size: must be an int >= 1, got -3"),
    (SIMVP, "data.image_size=0", "--set: data.image_size: must be an int >= 1, got 0"),
    (SPRITES, "data.image_size=8", "--set: data.image_size: 8 is too small for sprites of up to 22 pixels "
                                   "(data.sprite_size: [12.0, 22.0]): the smallest frame that holds them is 23; raise "
                                   "data.image_size to at least 23 or lower data.sprite_size"),
])
def test_a_data_value_given_with_set_is_blamed_on_set_before_the_run_starts(tmp_path, config, value, expected):
    rc, out, err = train(tmp_path / "w", value, config=config)
    assert rc == 2 and error_line(err) == f"error: {expected}"
    assert not (tmp_path / "w").exists()  # refused before anything was written


def test_a_frame_too_small_for_the_sprites_in_a_file_is_blamed_on_the_file(tmp_path):
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump({"_base_": SPRITES, "data": {"image_size": 22}}))
    rc, out, err = train(tmp_path / "w", config=config)
    assert rc == 2 and error_line(err).startswith(f"error: {config}: data.image_size: 22 is too small for sprites")
    rc, out, err = train(tmp_path / "w", "data.sprite_size=[4,8]", "train.max_steps=1", config=config)
    assert rc == 0, err  # smaller sprites fit the frame


@pytest.mark.parametrize("name,content,looks", [
    ("config.yaml", b"model:\n  backbone: simvp\n", "it is a text file (a YAML config, a log?)"),
    ("curves.png", b"\x89PNG\r\n\x1a\n" + bytes(64), "it is a PNG image"),
])
def test_init_from_a_file_that_is_not_a_checkpoint(tmp_path, name, content, looks):
    path = tmp_path / name
    path.write_bytes(content)
    work = tmp_path / "w"
    work.mkdir()  # a folder made beforehand stays as it was
    rc, out, err = train(work, "train.max_steps=1", flags=("--init-from", path))
    assert rc == 2 and error_line(err) == f"error: {path} is not a checkpoint: {looks}, where a file of torch.save " \
                                          "(a .pt, .pth or .ckpt) was expected"
    assert list(work.iterdir()) == []


def test_a_truncated_checkpoint_is_named_with_the_whole_reason(base_run, tmp_path):
    work = copy_run(base_run, tmp_path)
    best = work / "checkpoints" / "best.pt"
    best.write_bytes(best.read_bytes()[:1000])
    rc, out, err = cli(eval_main, work, "--metrics", "mse", "--no-images")
    line = error_line(err)
    assert rc == 2 and line.startswith(f"error: checkpoint {best} is corrupt or truncated (torch could not read it: ")
    assert line.endswith(": failed finding central directory)")  # torch's first sentence, whole; not its advice


def test_init_from_another_backbone_names_what_was_asked_and_summarises(base_run, tmp_path):
    rc, out, err = train(tmp_path / "w", "train.max_steps=1", config=TAU,
                         flags=("--init-from", base_run[0]))
    line = error_line(err)
    assert rc == 2
    assert f"(backbone simvp) does not fit backbone 'tau' of {TAU}: 4 " \
           "missing from the checkpoint: translator.blocks.0.block.attn.gate.squeeze.weight" in line
    assert ", ... (1 more); 4 with another shape: translator.blocks.0.block.attn.gate.mix.weight: checkpoint " in line
    assert len(line) < 1200 and not (tmp_path / "w").exists()


# ----------------------------------------------------------------------------- 12: resume, interrupts


def test_resume_of_a_finished_run_says_so(base_run, tmp_path):
    work = copy_run(base_run, tmp_path)
    rc, out, err = train(work, "train.max_steps=2", "train.log_every=1", "train.val_every_steps=1", flags=("--resume",))
    assert rc == 0 and f"run {work} is finished (step 2 of 2): nothing to train; to train longer, raise " \
                       "train.max_steps or train.epochs and resume" in err
    assert "step 3" not in err


def test_resume_with_a_larger_budget_says_how_the_schedule_changes(base_run, tmp_path):
    work = copy_run(base_run, tmp_path)
    rc, out, err = train(work, "train.max_steps=3", "train.log_every=1", "train.val_every_steps=1", flags=("--resume",))
    assert rc == 0, err
    assert f"resumed from {work / 'checkpoints' / 'last.pt'} at step 2 of 3 (epoch 2 of 2, 0 of its 2 steps done)" in err
    assert "the budget changed from 2 steps to 3 steps: the onecycle schedule is laid out again over 3 steps; it had " \
           "ended at step 2, and step 3 runs at a learning rate of 4e-09" in err
    assert "epoch 2 done" in err and json.loads(out.splitlines()[-1])["step"] == 3
    with open(work / "metrics.csv") as fh:  # the new rows continue the old ones
        assert [int(r["step"]) for r in csv.DictReader(fh)] == [1, 1, 2, 2, 3, 3]


def _interrupt_before_step(monkeypatch, step: int = 1):
    """SIGINT, as if it arrived just before training step ``step`` (from 1): the run stops after ``step - 1``."""
    from pdr.engine.signals import StopSignals

    calls = {"n": 0}

    def should_stop(self):  # the loop asks once before each step
        calls["n"] += 1
        if calls["n"] >= step:
            self.received = signal.SIGINT
        return self.received is not None

    monkeypatch.setattr(StopSignals, "should_stop", should_stop)


def test_an_interrupted_train_says_how_to_resume(tmp_path, monkeypatch):
    _interrupt_before_step(monkeypatch)
    rc, out, err = train(tmp_path / "w", "train.max_steps=2")
    assert rc == 130 and "to continue the run: the same command with --resume" in err
    assert "interrupted: stopped by SIGINT; checkpoint saved to" in err
    assert "epoch 1 interrupted after 0 of 2 steps" in err and "done" not in err  # not "done: mean train loss nan"


def test_an_interrupted_compare_says_rerun_not_resume(tmp_path, monkeypatch):
    _interrupt_before_step(monkeypatch)
    rc, out, err = cli(compare_main, "--config", SIMVP, "--work-dir", tmp_path / "cmp", "--set", *TINY,
                       "train.max_steps=2", "--arm", "a", "--no-progress")
    assert rc == 130 and "rerun the same command (without --overwrite) to resume" in err
    assert "--resume" not in err


# ----------------------------------------------------------------------------- 13: compare --offline, --overwrite


def test_compare_offline_and_overwrite(tmp_path, monkeypatch):
    monkeypatch.delenv("PDR_OFFLINE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached AlexNet: LPIPS would need a download
    args = ["--config", SIMVP, "--work-dir", tmp_path / "cmp", "--set", *TINY, "train.max_steps=null",
            "train.epochs=1", "eval.metrics=[mse,lpips]", "--arm", "a", "--no-progress", "--offline"]
    rc, out, err = cli(compare_main, *args)
    assert rc == 0, err
    assert os.environ.get("PDR_OFFLINE") == "1" and "LPIPS n/a: it needs 1 or 3 channels, the data has 2" in out
    row = next(line for line in out.splitlines() if line.startswith("| a |"))
    assert row.endswith("| n/a |")  # the LPIPS cell, as for missing weights (not "nan")
    assert "the same data, seed 0 and budget (1 epoch, batch 4) for every arm" in out  # 17: not "1 epochs"
    assert not (tmp_path / "torch").exists()  # nothing downloaded
    first = (tmp_path / "cmp" / "a" / "checkpoints" / "last.pt").stat().st_mtime_ns
    rc, out, err = cli(compare_main, *args)
    assert rc == 0 and "arm a: finished run in" in err  # kept
    rc, out, err = cli(compare_main, *args, "--overwrite")
    assert rc == 0 and "arm a: training" in err
    assert (tmp_path / "cmp" / "a" / "checkpoints" / "last.pt").stat().st_mtime_ns != first


# ----------------------------------------------------------------------------- 14: step-based validation, metrics.csv


def test_step_validation_and_per_step_losses_in_metrics_csv(base_run):
    work, err = base_run
    assert "validation every 1 step," in err
    with open(work / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    steps = [(int(r["step"]), bool(r["train/loss"]), bool(r["val/mse"])) for r in rows]
    # a training row per logged step, a validation row after each step (val_every_steps: 1), though the run is
    # one epoch long: epoch-based validation would have validated once
    assert steps == [(1, True, False), (1, False, True), (2, True, False), (2, False, True)]
    assert (work / "curves.png").stat().st_size > 1000


def test_a_run_shorter_than_log_every_still_logs_its_training_loss(tmp_path):
    rc, out, err = train(tmp_path / "w", "train.max_steps=3")  # log_every: 50 (the default); epochs of 2 steps
    assert rc == 0, err
    with open(tmp_path / "w" / "metrics.csv") as fh:
        trained = [(int(r["epoch"]), int(r["step"])) for r in csv.DictReader(fh) if r["train/loss"]]
    assert trained == [(1, 2), (2, 3)]  # the last step of epoch 1 and of the run: a curve, not nothing


def test_validation_every_epochs_and_every_steps_at_once_is_refused(tmp_path):
    rc, out, err = train(tmp_path / "w", "train.val_every=2", "train.val_every_steps=1")
    assert rc == 2 and error_line(err) == (
        "error: --set: train.val_every: 2 and train.val_every_steps: 1 (--set) are both set; validation counts epochs "
        "(val_every) or optimiser steps (val_every_steps), not both: remove one")
    assert not (tmp_path / "w").exists()


def test_val_every_steps_is_shared_by_the_arms_of_a_comparison(tmp_path):
    rc, out, err = cli(compare_main, "--config", SIMVP, "--work-dir", tmp_path / "cmp", "--set", *TINY,
                       "--arm", "a", "train.val_every_steps=5")
    assert rc == 2 and "train.val_every_steps is shared by every arm" in error_line(err)


# ----------------------------------------------------------------------------- 15: progress bars


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bars_only_on_a_terminal(base_run, tmp_path, monkeypatch):
    assert "\r" not in base_run[1]  # stderr was not a terminal: no bars, log lines only
    for flags, shown in (((), True), (("--no-progress",), False)):
        terminal = Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        with contextlib.redirect_stdout(io.StringIO()):
            assert eval_main([str(base_run[0]), "--metrics", "mse", "--no-images", *flags]) == 0
        monkeypatch.undo()
        assert ("eval base" in terminal.getvalue()) is shown, terminal.getvalue()
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with contextlib.redirect_stdout(io.StringIO()):
        assert train_main(["--config", SIMVP, "--set", *TINY, "train.max_steps=1", "--work-dir",
                           str(tmp_path / "w")]) == 0
    monkeypatch.undo()
    assert "epoch 1/1" in terminal.getvalue() and "\r" in terminal.getvalue()


# ----------------------------------------------------------------------------- 17: rough edges


def test_eval_falls_back_to_last_with_a_note(base_run, tmp_path):
    work = copy_run(base_run, tmp_path)
    (work / "checkpoints" / "best.pt").unlink()
    rc, out, err = cli(eval_main, work, "--metrics", "mse", "--no-images")
    best = torch.load(work / "checkpoints" / "last.pt", weights_only=False)["best"]
    assert rc == 0 and f"Note: run: no checkpoints/best.pt (the run wrote it for its best val/mse, {best:.5g}; it " \
                       "has been deleted or moved since): evaluated checkpoints/last.pt instead" in out
    rc, out, err = cli(eval_main, work, "--metrics", "mse", "--checkpoint", "best")
    assert rc == 2 and "no checkpoints/best.pt (found: last.pt)" in error_line(err)


@pytest.mark.parametrize("stop_before,sets,reason", [
    (1, [], "no validation of the run finished yet"),
    (3, ["train.val_every_steps=1", "train.monitor_after=3"],
     "its 2 validations came before train.monitor_after=3, which keeps them out of best.pt"),
])
def test_eval_says_why_best_is_missing(tmp_path, monkeypatch, stop_before, sets, reason):
    _interrupt_before_step(monkeypatch, stop_before)
    rc, out, err = train(tmp_path / "w", "train.max_steps=4", *sets)
    assert rc == 130 and not (tmp_path / "w" / "checkpoints" / "best.pt").exists()
    monkeypatch.undo()
    rc, out, err = cli(eval_main, tmp_path / "w", "--metrics", "mse", "--no-images")
    assert rc == 0 and f"Note: w: no checkpoints/best.pt ({reason}): evaluated checkpoints/last.pt instead" in out


def test_report_names_the_checkpoint_and_links_the_training_curves(base_run, tmp_path):
    rc, out, err = cli(eval_main, base_run[0], "--metrics", "mse", "--report", tmp_path / "report")
    assert rc == 0, err
    page = (tmp_path / "report" / "index.html").read_text()
    best = base_run[0] / "checkpoints" / "best.pt"
    assert f"checkpoint {best} (step {torch.load(best, weights_only=False)['global_step']})" in page
    assert '<a href="1_base/curves.png">training curves</a>' in page
    assert (tmp_path / "report" / "1_base" / "curves.png").read_bytes() == (base_run[0] / "curves.png").read_bytes()


def test_prediction_grid_numbers_the_future_after_the_inputs():
    import numpy as np

    from pdr.visualize import prediction_grid_figure

    frames = np.zeros((1, 3, 1, 8, 8))
    fig = prediction_grid_figure(frames, np.zeros((1, 2, 1, 8, 8)), np.zeros((1, 2, 1, 8, 8)))
    titles = [[ax.get_title() for ax in fig.axes[r * 3:(r + 1) * 3]] for r in range(2)]
    assert titles == [["t=1", "t=2", "t=3"], ["t=4", "t=5", ""]]


def test_run_log_and_config_read_right(base_run):
    work, err = base_run
    assert "2 steps (1 epoch of 2)" in err and "(1 process)" in err
    optim = yaml.safe_load((work / "config.yaml").read_text())["optim"]
    assert optim["name"] == "adamw" and optim["momentum"] is None


def test_momentum_for_adamw_is_refused(tmp_path):
    rc, out, err = train(tmp_path / "w", "optim.momentum=0.5")
    assert rc == 2 and "optim.momentum: only sgd uses it; adamw's momentum is optim.betas[0]" in error_line(err)
