"""A training run's folder: whether a run may be written into it, and the files the training loop writes.

Layout::

    <work_dir>/config.yaml          the resolved config
    <work_dir>/log.txt              what happened, readable
    <work_dir>/metrics.csv          one row per validation
    <work_dir>/curves.png           training loss and validation metrics per epoch
    <work_dir>/tb/                  TensorBoard events (scalars, learning rate, example predictions)
    <work_dir>/wandb/               the Weights & Biases run, with ``train.loggers: [..., wandb]``
    <work_dir>/checkpoints/last.pt  written atomically after every epoch, every ``train.save_every``
                                    steps and on SIGTERM/SIGINT (``checkpoint.CheckpointManager``)
    <work_dir>/checkpoints/best.pt  the best validation by ``train.monitor``

Only the first process (rank 0) writes; on the others every method but ``open``'s wait does nothing.
"""
from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path

import torch

from ..config import Config
from ..errors import PDRError
from ..visualize import save_training_curves
from . import distributed as dist
from .loggers import Loggers, build_loggers

log = logging.getLogger("pdr")


def prepare_run_dir(work_dir: Path, resume: bool, overwrite: bool) -> None:
    """Create ``work_dir``; one that holds a run is an error unless the run is resumed or ``overwrite`` clears it."""
    has_run = (work_dir / "checkpoints").exists() or (work_dir / "metrics.csv").exists()
    if has_run and not (resume or overwrite):
        raise PDRError(
            f"run folder {work_dir} already holds a run; pass --resume to continue it or --overwrite to start over"
        )
    if overwrite and not resume and work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)


def _attach_log_file(work_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(work_dir / "log.txt")
    handler.setLevel(logging.INFO)
    if log.getEffectiveLevel() > logging.INFO:  # the run's log file always gets the INFO lines
        log.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    return handler


class RunFolder:
    """``config.yaml``, ``log.txt``, ``metrics.csv``, ``curves.png`` and the experiment loggers (``tb/``,
    ``wandb/``) of the run in ``path``; its checkpoints live in ``path / "checkpoints"``."""

    def __init__(self, path: Path, is_main: bool = True):
        self.path, self.is_main = Path(path), is_main
        self.checkpoints = self.path / "checkpoints"
        self.loggers = Loggers()
        self._log_handler: logging.Handler | None = None

    def open(self, cfg: Config, resume: bool, overwrite: bool) -> None:
        """Refuse to clobber another run, start ``log.txt`` and write ``config.yaml``; every process waits for it."""
        if self.is_main:
            prepare_run_dir(self.path, resume, overwrite)
            self._log_handler = _attach_log_file(self.path)
            cfg.save(self.path / "config.yaml")
        dist.barrier()

    def record_resolved(self, cfg: Config, resolved: dict) -> None:
        """Say which network or method the model picked where its config leaves a choice, and keep it as
        comments at the top of config.yaml (the checkpoints keep it under ``resolved``)."""
        if not self.is_main:
            return
        lines = [f"{key}: {value}" for key, value in resolved.items()]
        log.info("resolved at the start of the run: %s", "; ".join(lines))
        header = "# resolved at the start of the run:\n" + "".join(f"#   {line}\n" for line in lines)
        (self.path / "config.yaml").write_text(header + cfg.to_yaml())

    def start_loggers(self, cfg: Config, resume: bool) -> None:
        if self.is_main:
            self.loggers = build_loggers(cfg, self.path, resume=resume)

    def log_scalars(self, values: dict, step: int) -> None:
        self.loggers.log_scalars(values, step)

    def record_validation(self, row: dict, example: tuple | None, step: int) -> None:
        """Append ``row`` to metrics.csv and hand its ``val/`` values and the example (truth, prediction), both
        (T, C, H, W), to the loggers."""
        if not self.is_main:
            return
        self._append_csv(row)
        self.loggers.log_scalars({k: v for k, v in row.items() if k.startswith("val/")}, step)
        if example is not None:
            truth, pred = example
            frames = torch.cat([truth, pred], dim=0)
            if frames.shape[1] not in (1, 3):
                frames = frames[:, :1]
            self.loggers.log_images("val/truth_then_prediction", frames.clamp(0, 1), step)
        self.loggers.flush()

    def _append_csv(self, row: dict) -> None:
        path = self.path / "metrics.csv"
        new = not path.exists()
        with path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    def plot_curves(self, history: list[dict]) -> None:
        if self.is_main and history:
            save_training_curves(self.path / "curves.png", history)

    def close(self) -> None:
        """Stop writing ``log.txt`` and close the loggers."""
        if self._log_handler is not None:
            log.removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None
        self.loggers.close()
