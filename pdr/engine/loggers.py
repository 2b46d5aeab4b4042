"""Experiment loggers of the training loop (``train.loggers``): TensorBoard and Weights & Biases (the names
in ``pdr.config.schema.LOGGERS``, which the config check accepts).

Each logger takes scalars ``{name: value}`` at a step and example frames (N, C, H, W) in [0, 1];
the training loop calls them on the first process only.
"""
from __future__ import annotations

import logging
import uuid
from pathlib import Path

import torch

from ..config.schema import Config, _plain

log = logging.getLogger("pdr")


def logger_names(train: dict) -> list[str]:
    """The loggers a ``train`` section asks for: ``loggers`` when set, else TensorBoard as ``tensorboard`` says."""
    if train.get("loggers") is not None:
        return list(train["loggers"])
    return ["tensorboard"] if train.get("tensorboard", True) else []


class TensorBoardLogger:
    """Events in ``<work_dir>/tb``; nothing (one log line) when tensorboard is not installed."""

    def __init__(self, work_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.info("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")
            self.writer = None
            return
        self.writer = SummaryWriter(str(work_dir / "tb"))

    def log_scalars(self, values: dict, step: int) -> None:
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def log_images(self, tag: str, frames: torch.Tensor, step: int) -> None:
        if self.writer is not None:
            self.writer.add_images(tag, frames, step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class WandbLogger:
    """A Weights & Biases run in ``<work_dir>/wandb``, named after the run folder, with the resolved config.

    Its id is kept in ``<work_dir>/wandb_run_id`` so that ``--resume`` continues the same W&B run.
    ``WANDB_MODE=offline`` keeps everything on disk (``wandb sync`` uploads it later).
    """

    def __init__(self, work_dir: Path, cfg: Config, resume: bool):
        from ..optional import require

        wandb = require("wandb", "wandb", "train.loggers: wandb (the Weights & Biases logger)")
        self.wandb = wandb
        id_file = work_dir / "wandb_run_id"
        run_id = id_file.read_text().strip() if resume and id_file.is_file() else uuid.uuid4().hex[:12]
        id_file.write_text(run_id + "\n")
        self.run = wandb.init(project=cfg["train"]["wandb_project"], name=work_dir.name, id=run_id, dir=str(work_dir),
                              config=_plain(cfg), resume="allow")

    def log_scalars(self, values: dict, step: int) -> None:
        self.run.log(dict(values), step=step)

    def log_images(self, tag: str, frames: torch.Tensor, step: int) -> None:
        from torchvision.utils import make_grid

        grid = make_grid(frames.float(), nrow=max(1, frames.shape[0] // 2), padding=1)  # truth row, prediction row
        self.run.log({tag: self.wandb.Image(grid.permute(1, 2, 0).numpy())}, step=step)

    def flush(self) -> None:
        pass  # wandb writes in its own process

    def close(self) -> None:
        self.run.finish()


class Loggers:
    """All of a run's loggers behind one interface (none on processes other than the first)."""

    def __init__(self, loggers=()):
        self.loggers = list(loggers)

    def log_scalars(self, values: dict, step: int) -> None:
        for logger in self.loggers:
            logger.log_scalars(values, step)

    def log_images(self, tag: str, frames: torch.Tensor, step: int) -> None:
        for logger in self.loggers:
            logger.log_images(tag, frames, step)

    def flush(self) -> None:
        for logger in self.loggers:
            logger.flush()

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()
        self.loggers = []


def build_loggers(cfg: Config, work_dir: Path, resume: bool = False) -> Loggers:
    built = []
    for name in logger_names(cfg["train"]):
        built.append(TensorBoardLogger(work_dir) if name == "tensorboard" else WandbLogger(work_dir, cfg, resume))
    return Loggers(built)
