"""OneCycleLR as OpenSTL uses it, early stopping, and the experiment loggers (TensorBoard, W&B offline)."""
import csv
import json
import logging
import struct
import time

import pytest
import torch

from pdr.config import load_config
from pdr.engine import Trainer
from pdr.engine.optim import build_scheduler, load_scheduler_state
from pdr.engine.stopping import EarlyStopping
from pdr.errors import ConfigError

TINY = ["model.backbone.hid_S=8", "model.backbone.hid_T=16", "model.backbone.N_T=2", "data.num_train=8",
        "data.num_val=4", "data.num_test=4", "data.batch_size=4", "train.max_steps=4", "train.log_every=1"]


def simvp_cfg(repo, *extra):
    return load_config(repo / "configs/advected_fields/simvp.yaml", [*TINY, *extra])


def adamw_with_onecycle(repo, total, lr=1e-3, pct=0.2):
    cfg = simvp_cfg(repo, "schedule.name=onecycle", f"schedule.pct_start={pct}", f"optim.lr={lr}")
    optimizer = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=lr)
    return optimizer, build_scheduler(cfg, optimizer, total)


def test_onecycle_is_torch_onecycle_and_cycles_beta1(repo):
    optimizer, scheduler = adamw_with_onecycle(repo, total=100)
    assert isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR)
    lrs, beta1 = [], []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        beta1.append(optimizer.param_groups[0]["betas"][0])
        optimizer.step()
        scheduler.step()
    # OpenSTL's recipe: lr/25 -> lr at 20% of the steps -> lr/25/1e4; beta1 0.95 -> 0.85 -> 0.95
    assert lrs[0] == pytest.approx(1e-3 / 25) and beta1[0] == pytest.approx(0.95)
    assert lrs[19] == pytest.approx(1e-3) and beta1[19] == pytest.approx(0.85)
    assert max(lrs) == pytest.approx(1e-3) and min(beta1) == pytest.approx(0.85)
    assert lrs[99] == pytest.approx(1e-3 / 25 / 1e4) and beta1[99] == pytest.approx(0.95)
    assert lrs[10] == pytest.approx(1e-3 / 25 + (1e-3 - 1e-3 / 25) * (1 - torch.cos(torch.tensor(torch.pi * 10 / 19)).item()) / 2)


def test_resumed_schedule_runs_a_longer_budget(repo):
    optimizer, short = adamw_with_onecycle(repo, total=10)
    for _ in range(4):
        optimizer.step()
        short.step()
    optimizer2, longer = adamw_with_onecycle(repo, total=20)
    load_scheduler_state(longer, short.state_dict())
    reference_opt, reference = adamw_with_onecycle(repo, total=20)
    for _ in range(4):
        reference_opt.step()
        reference.step()
    assert longer.last_epoch == 4 and longer.total_steps == 20
    for _ in range(16):  # OneCycleLR would raise past the old 10 steps
        optimizer2.step()
        longer.step()
        reference_opt.step()
        reference.step()
        assert optimizer2.param_groups[0]["lr"] == pytest.approx(reference_opt.param_groups[0]["lr"])


# ----------------------------------------------------------------------------- early stopping


def test_early_stopping_counts_validations_without_improvement():
    lower = EarlyStopping("val/mse", patience=2, min_delta=0.01, higher_is_better=False)
    assert [lower.update({"val/mse": v}) for v in (1.0, 0.995, 0.98, 0.975, 0.972)] == [False, False, False, False, True]
    assert lower.best == 0.98
    higher = EarlyStopping("val/psnr", patience=1, min_delta=0.0, higher_is_better=True)
    assert [higher.update({"val/psnr": v}) for v in (20.0, 21.0, 21.0)] == [False, False, True]


def test_training_stops_early_and_a_resume_does_not_restart_it(tmp_path, repo, caplog):
    # 2 steps per epoch, 20 steps of budget; no later validation beats the first by 1e9
    cfg = simvp_cfg(repo, "train.max_steps=20", "train.early_stop.patience=2", "train.early_stop.min_delta=1e9")
    with caplog.at_level(logging.INFO, logger="pdr"):
        trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
        trainer.fit()
    assert trainer.global_step == 6 and len(trainer.history) == 3
    assert "early stop at step 6 of 20: val/mse has not improved by more than 1e+09 in 2 validations" in caplog.text
    resumed = Trainer(cfg, tmp_path / "run", resume=True, show_progress=False)
    resumed.fit()
    assert resumed.global_step == 6
    more_patience = simvp_cfg(repo, "train.max_steps=20", "train.early_stop.patience=3", "train.early_stop.min_delta=1e9")
    resumed = Trainer(more_patience, tmp_path / "run", resume=True, show_progress=False)
    resumed.fit()
    assert resumed.global_step == 8


def test_early_stop_settings_are_checked_when_the_config_loads(repo):
    with pytest.raises(ConfigError, match=r"train.early_stop.monitor: 'val/msee' is not a value that validation logs.*val/mse"):
        simvp_cfg(repo, "train.early_stop.monitor=val/msee", "train.early_stop.patience=3")
    with pytest.raises(ConfigError, match="train.early_stop.patience: must be >= 1"):
        simvp_cfg(repo, "train.early_stop.patience=0")
    with pytest.raises(ConfigError, match="train.early_stop.patince: unknown key"):
        simvp_cfg(repo, "train.early_stop.patince=3")


# ----------------------------------------------------------------------------- loggers


def test_tensorboard_switch_and_logger_names(tmp_path, repo):
    Trainer(simvp_cfg(repo, "train.max_steps=2"), tmp_path / "default", show_progress=False).fit()
    assert any((tmp_path / "default" / "tb").iterdir())
    Trainer(simvp_cfg(repo, "train.max_steps=2", "train.tensorboard=false"), tmp_path / "off", show_progress=False).fit()
    assert not (tmp_path / "off" / "tb").exists()
    with pytest.raises(ConfigError, match=r"train.loggers: unknown logger 'wanb'. Did you mean 'wandb'\?"):
        simvp_cfg(repo, "train.loggers=[tensorboard, wanb]")
    with pytest.raises(ConfigError, match="train.tensorboard: false, but train.loggers"):
        simvp_cfg(repo, "train.loggers=[tensorboard]", "train.tensorboard=false")


def _wandb_records(path, block=32768):
    """The protobuf records of an offline run's .wandb file: a 7-byte W&B header, then LevelDB-style log
    records (crc32, length, type: 1 full, 2 first, 3 middle, 4 last) in 32 KiB blocks."""
    from wandb.proto import wandb_internal_pb2

    data, pos, pending = path.read_bytes(), 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def test_wandb_logger_offline(tmp_path, repo, monkeypatch):
    try:
        import wandb  # noqa: F401
    except ImportError:
        pytest.skip("wandb is not installed (pip install wandb): the W&B logger is not tested")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))
    work = tmp_path / "run"
    Trainer(simvp_cfg(repo, "train.loggers=[tensorboard, wandb]"), work, show_progress=False).fit()
    runs = list((work / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any((work / "tb").iterdir())  # both loggers
    run_id = (work / "wandb_run_id").read_text().strip()
    assert runs[0].name.endswith(run_id)
    log_file = runs[0] / f"run-{run_id}.wandb"
    for _ in range(120):  # wandb's service writes the file in the background; its last record is `exit`
        records = list(_wandb_records(log_file))
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            break
        time.sleep(0.5)
    history, config = {}, {}
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            history[items["_step"]] = items
        elif kind == "run":  # the run's config comes with it
            config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
    with open(work / "metrics.csv") as fh:
        validations = [row for row in csv.DictReader(fh) if row["val/mse"]]  # not the training steps' rows
    assert sorted(history) == [1, 2, 3, 4] and all("train/loss" in h and "train/lr" in h for h in history.values())
    for row in validations:  # every validation, at its step, as metrics.csv has it
        step = int(row["step"])
        assert history[step]["val/mse"] == pytest.approx(float(row["val/mse"]))
        assert history[step]["val/truth_then_prediction/_type"] == "image-file"
    assert config["model"]["backbone"]["name"] == "simvp" and config["train"]["loggers"] == ["tensorboard", "wandb"]


def test_wandb_missing_names_the_extra(tmp_path, repo, monkeypatch):
    import sys

    from pdr.engine.loggers import build_loggers
    from pdr.optional import MissingDependencyError

    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    with pytest.raises(MissingDependencyError, match=r"wandb.*pip install 'pdr-predgs\[wandb\]'"):
        build_loggers(simvp_cfg(repo, "train.loggers=[wandb]"), tmp_path)


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_adapter_learning_rate_scale(repo, schedule):
    from pdr.engine.optim import build_optimizer
    from pdr.model import build_model

    cfg = load_config(repo / "configs/advected_fields/simvp_predgs.yaml",
                      [*TINY, "optim.adapter_lr_scale=10", f"schedule.name={schedule}", "optim.lr=2e-3"])
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    backbone, adapter = optimizer.param_groups
    assert {id(p) for p in adapter["params"]} == {id(p) for p in model.adapter.parameters()}
    assert len(backbone["params"]) + len(adapter["params"]) == len(list(model.parameters()))
    scheduler = build_scheduler(cfg, optimizer, 20)
    for _ in range(7):  # the ratio holds along either schedule
        assert adapter["lr"] == pytest.approx(10 * backbone["lr"])
        optimizer.step()
        scheduler.step()
    peak = max(g.get("max_lr", g.get("initial_lr")) for g in optimizer.param_groups)
    assert peak == pytest.approx(2e-2)
    with pytest.raises(ConfigError, match="optim.adapter_lr_scale: must be > 0"):
        load_config(repo / "configs/advected_fields/simvp_predgs.yaml", [*TINY, "optim.adapter_lr_scale=0"])
