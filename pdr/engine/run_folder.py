"""A training run's folder: whether a run may be written into it, and the files the training loop writes.

Layout::

    <work_dir>/config.yaml          the resolved config
    <work_dir>/log.txt              what happened, readable
    <work_dir>/metrics.csv          one row per logged training step and per validation (``metrics_file``)
    <work_dir>/curves.png           training loss per logged step and validation values, against the step
    <work_dir>/tb/                  TensorBoard events (scalars, learning rate, example predictions)
    <work_dir>/wandb/               the Weights & Biases run, with ``train.loggers: [..., wandb]``
    <work_dir>/checkpoints/last.pt  written atomically after every epoch, every ``train.save_every``
                                    steps and on SIGTERM/SIGINT (``checkpoint.CheckpointManager``)
    <work_dir>/checkpoints/best.pt  the best validation by ``train.monitor``

Only the first process (rank 0) writes; on the others every method but ``open``'s wait does nothing.
"""
from __future__ import annotations

import logging
import logging.handlers
import shutil
import tempfile
from pathlib import Path

import torch

from ..config import Config
from ..errors import PDRError
from ..visualize import save_training_curves
from . import distributed as dist
from .loggers import Loggers, build_loggers
from .metrics_file import MetricsFile

log = logging.getLogger("pdr")


def check_run_dir(work_dir: Path, resume: bool, overwrite: bool) -> None:
    """Whether a run may start in ``work_dir``; writes nothing. A folder that holds a run is an error unless the run
    is resumed or ``overwrite`` clears it; so is a folder this process cannot create or write into."""
    has_run = (work_dir / "checkpoints").exists() or (work_dir / "metrics.csv").exists()
    if has_run and not (resume or overwrite):
        raise PDRError(
            f"run folder {work_dir} already holds a run; pass --resume to continue it or --overwrite to start over"
        )
    folder = work_dir
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise PDRError(f"cannot create the run folder {work_dir}: {folder} is a file, not a folder; choose another "
                       "--work-dir")
    targets = [folder] + ([work_dir / "checkpoints"] if resume and (work_dir / "checkpoints").is_dir() else [])
    if overwrite and work_dir.exists():
        targets.append(work_dir.parent)  # --overwrite deletes the folder itself
    for target in targets:
        try:
            with tempfile.TemporaryFile(dir=target):
                pass
        except OSError as exc:
            what = "write into the run folder" if target == work_dir else f"create the run folder {work_dir} in"
            raise PDRError(f"cannot {what} {target}: {exc.strerror or exc} (a read-only folder?); nothing was "
                           "written: choose another --work-dir or make it writable") from None


def prepare_run_dir(work_dir: Path, resume: bool, overwrite: bool) -> None:
    """Create ``work_dir``, first deleting the run in it for ``overwrite``."""
    if overwrite and not resume and work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)


def _attach_log_file(work_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(work_dir / "log.txt")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    return handler


def _ensure_info_level() -> None:
    if log.getEffectiveLevel() > logging.INFO:  # the run's log file always gets the INFO lines
        log.setLevel(logging.INFO)


class RunFolder:
    """``config.yaml``, ``log.txt``, ``metrics.csv``, ``curves.png`` and the experiment loggers (``tb/``,
    ``wandb/``) of the run in ``path``; its checkpoints live in ``path / "checkpoints"``.

    ``check`` (before the run is built) refuses a folder the run may not use and starts keeping the log lines;
    ``open`` (once the run is built and known to start) creates the folder and writes ``config.yaml`` and
    ``log.txt`` with those lines. A run that fails to start leaves the folder as it was.
    """

    def __init__(self, path: Path, is_main: bool = True):
        self.path, self.is_main = Path(path), is_main
        self.checkpoints = self.path / "checkpoints"
        self.metrics = MetricsFile(self.path / "metrics.csv")
        self.loggers = Loggers()
        self._log_handler: logging.Handler | None = None
        self._early_lines: logging.handlers.MemoryHandler | None = None

    def check(self, resume: bool, overwrite: bool) -> None:
        """Refuse to clobber another run or to start in a folder that cannot be written; keep the log lines from
        now on for ``log.txt``. Writes nothing."""
        if self.is_main:
            check_run_dir(self.path, resume, overwrite)
            _ensure_info_level()
            self._early_lines = logging.handlers.MemoryHandler(capacity=10**6, flushLevel=logging.CRITICAL + 1)
            self._early_lines.setLevel(logging.INFO)
            log.addHandler(self._early_lines)

    def open(self, cfg: Config, resume: bool, overwrite: bool, resolved: dict | None = None, step: int = 0) -> None:
        """Create the folder (deleting the old run for ``overwrite``), start ``log.txt`` with the lines logged since
        ``check``, write ``config.yaml`` (``resolved``: choices the model made, kept as comments at its top) and,
        on resume, forget the metrics.csv rows after ``step``; every process waits for it."""
        if self.is_main:
            prepare_run_dir(self.path, resume, overwrite)
            _ensure_info_level()
            self._log_handler = _attach_log_file(self.path)
            if self._early_lines is not None:
                self._early_lines.setTarget(self._log_handler)
                self._early_lines.flush()
                self._close_early_lines()
            self._write_config(cfg, resolved)
            if resume:
                self.metrics.drop_after(step)
        dist.barrier()

    def _write_config(self, cfg: Config, resolved: dict | None) -> None:
        header = ""
        if resolved:
            lines = [f"{key}: {value}" for key, value in resolved.items()]
            log.info("resolved at the start of the run: %s", "; ".join(lines))
            header = "# resolved at the start of the run:\n" + "".join(f"#   {line}\n" for line in lines)
        (self.path / "config.yaml").write_text(header + cfg.to_yaml())

    def _close_early_lines(self) -> None:
        if self._early_lines is not None:
            log.removeHandler(self._early_lines)
            self._early_lines.setTarget(None)
            self._early_lines.close()
            self._early_lines = None

    def start_loggers(self, cfg: Config, resume: bool) -> None:
        if self.is_main:
            self.loggers = build_loggers(cfg, self.path, resume=resume)

    def log_scalars(self, values: dict, step: int) -> None:
        self.loggers.log_scalars(values, step)

    def record_step(self, values: dict, epoch: int, step: int) -> None:
        """A training step's ``train/...`` values and ``lr`` to metrics.csv and the loggers."""
        if self.is_main:
            self.metrics.append({"epoch": epoch, "step": step, **values})
            self.loggers.log_scalars({("train/lr" if k == "lr" else k): v for k, v in values.items()}, step)

    def record_validation(self, row: dict, example: tuple | None, step: int) -> None:
        """Append ``row``'s epoch, step, lr and ``val/`` values to metrics.csv (its ``train/`` values are the
        training rows' business) and hand the ``val/`` values and the example (truth, prediction), both
        (T, C, H, W), to the loggers."""
        if not self.is_main:
            return
        self.metrics.append({k: v for k, v in row.items() if not k.startswith("train/")})
        self.loggers.log_scalars({k: v for k, v in row.items() if k.startswith("val/")}, step)
        if example is not None:
            truth, pred = example
            frames = torch.cat([truth, pred], dim=0)
            if frames.shape[1] not in (1, 3):
                frames = frames[:, :1]
            self.loggers.log_images("val/truth_then_prediction", frames.clamp(0, 1), step)
        self.loggers.flush()

    def plot_curves(self) -> None:
        """curves.png from metrics.csv: the training loss per logged step and the validation values."""
        if self.is_main:
            rows = self.metrics.rows()
            if rows:
                save_training_curves(self.path / "curves.png", rows)

    def close(self) -> None:
        """Stop writing ``log.txt`` (or keeping lines for it) and close the loggers."""
        self._close_early_lines()
        if self._log_handler is not None:
            log.removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None
        self.loggers.close()
