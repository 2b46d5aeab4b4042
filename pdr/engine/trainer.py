"""The training loop: ``fit`` runs ``train_step`` (``optimiser_step.OptimiserStep``) to the budget and ``validate``
(``validation.Validation``) every ``train.val_every`` epochs (or every ``train.val_every_steps`` optimiser steps)
and after the last step.

AdamW and a one-cycle/cosine schedule, best/last checkpoints (``checkpoint.CheckpointManager``), a progress
bar and the run folder's log, CSV and loggers (``run_folder.RunFolder``), early stopping
(``train.early_stop``), a clean stop on SIGTERM/SIGINT (``signals.StopSignals``). Runs unchanged under
torchrun (DistributedDataParallel: NCCL on GPUs, gloo on CPUs), with mixed precision, gradient clipping and
accumulation, an optional EMA of the weights and torch.compile. The data loaders come from ``pdr.data``;
validation is ``pdr.engine.evaluate``, the loop tools/eval.py uses too. Only the first process (rank 0)
writes files and logs.
"""
from __future__ import annotations

import logging
import math
import os
import signal
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..config import Config
from ..data import Normalisation, build_eval_loader, build_train_loader, build_train_val
from ..errors import PDRError
from ..losses import build_loss
from ..metrics import higher_is_better
from ..model import build_model
from ..model.pretrained import load_backbone_weights
from ..runtime import resolve_device, seed_everything
from ..wording import count
from . import distributed as dist
from .checkpoint import CheckpointManager, check_resume
from .nonfinite import NonFinitePolicy
from .optimiser_step import OptimiserStep
from .optim import (MixedPrecision, build_ema, build_optimizer, build_scheduler, describe_schedule, restart_warning,
                    stretch_schedule)
from .run_folder import RunFolder
from .signals import StopSignals
from .validation import Validation
from .stopping import build_early_stopping

log = logging.getLogger("pdr")


class Trainer(OptimiserStep, Validation):
    """Trains the model a config describes into ``work_dir``."""

    def __init__(self, cfg: Config, work_dir: str | os.PathLike, device: str | None = None,
                 resume: bool = False, overwrite: bool = False, show_progress: bool = True):
        self.cfg = cfg
        t = cfg["train"]
        self.work_dir = Path(work_dir)
        resume_state = check_resume(self.work_dir, cfg) if resume else None
        self.dist, self.device = dist.init_distributed(resolve_device(device or t["device"]))
        self.is_main = self.dist.is_main
        self.show_progress = show_progress and self.is_main
        self.run_folder = RunFolder(self.work_dir, self.is_main)
        self.run_folder.check(resume, overwrite)  # before anything is built; nothing is written until open()
        try:
            seed_everything(t["seed"], t["deterministic"])
            self.train_set, self.val_set = build_train_val(cfg)  # data problems first: they are the most common
            self._build_model(init_weights=resume_state is None)  # a resumed run has its weights in last.pt
            self._build_optimisation()
            self._build_loaders_and_schedule()
            self.checkpoints = CheckpointManager(self.run_folder.checkpoints, cfg, self.model, self.optimizer,
                                                 self.scheduler, self.amp.scaler, self.ema, self.early_stop,
                                                 self.resolved, self.is_main)
            self.nonfinite = NonFinitePolicy(t["max_nonfinite_steps"], self.checkpoints.path("last"))
            self.best = None
            self.epoch, self.batch_in_epoch, self.global_step = 0, 0, 0
            self.history: list[dict] = []
            self.epoch_losses: list[float] = []  # this epoch's train losses so far: a resumed epoch averages them all
            self.since_validation: list[float] = []  # the train losses since the last validation (val_every_steps)
            self.signals = StopSignals(self.dist)
            self._log_start()
            if resume_state is not None:
                self._resume(resume_state)
            self.run_folder.open(cfg, resume, overwrite, self.resolved, step=self.global_step)  # the run starts
            self.run_folder.start_loggers(cfg, resume=resume_state is not None)
        except BaseException:
            self.run_folder.close()
            raise

    def _build_model(self, init_weights: bool) -> None:
        cfg, m = self.cfg, self.cfg["model"]
        self.model = build_model(cfg).to(self.device)
        self.resolved = self.model.resolved_choices()  # written into config.yaml when the run starts
        self.model.data_mean, self.model.data_std = Normalisation.of(self.train_set).plain_stats()
        if m["init_from"] and init_weights:
            load_backbone_weights(self.model, m["init_from"], strict=m["init_strict"],
                                  target=f"backbone {m['backbone']['name']!r} of {cfg.filename}")
            self._info("starting from trained weights: schedule %s", describe_schedule(cfg))
            if restart_warning(cfg) and self.is_main:
                log.warning(restart_warning(cfg))
        if m["freeze_backbone"]:
            self.model.freeze_backbone()

    def _build_optimisation(self) -> None:
        """The loss, the (distributed, compiled) network, optimiser, mixed precision and EMA."""
        t = self.cfg["train"]
        self.loss_fn = build_loss(self.cfg["loss"])
        self.net = dist.wrap_model(self.model, self.device, self.dist, t["compile"])
        self.optimizer = build_optimizer(self.cfg, self.model)
        self.amp = MixedPrecision(t["precision"], self.device)
        self.ema = build_ema(self.model, t["ema_decay"])
        self.accumulate = t["accumulate_steps"]

    def _build_loaders_and_schedule(self) -> None:
        """This process's loaders, the step budget, the learning-rate schedule, the monitor and early stopping."""
        t, d = self.cfg["train"], self.cfg["data"]
        shard = {"rank": self.dist.rank, "world_size": self.dist.world_size}
        self.train_loader = build_train_loader(self.train_set, d["batch_size"], t["seed"], d["num_workers"], **shard)
        batches = len(self.train_loader.batch_sampler)
        self.val_loader = build_eval_loader(self.val_set, d["eval_batch_size"] or d["batch_size"], d["num_workers"],
                                            seed=t["seed"], **shard)
        self.steps_per_epoch = batches // self.accumulate
        if self.steps_per_epoch < 1:
            raise PDRError(f"an epoch of {batches} batches is shorter than train.accumulate_steps={self.accumulate}")
        self.total_steps = t["max_steps"] or t["epochs"] * self.steps_per_epoch
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.scheduler = build_scheduler(self.cfg, self.optimizer, self.total_steps)
        self.monitor = t["monitor"]
        self.higher_is_better = higher_is_better(self.monitor.split("/")[-1])  # checked when the config loaded
        self.early_stop = build_early_stopping(t)

    def _log_start(self) -> None:
        counts = self.model.parameter_summary()
        self.trainable_parameters = counts["trainable"]
        if self.model.backbone_frozen:
            self._info("backbone frozen: %s trainable parameters (the adapter's), %s frozen",
                       f"{counts['trainable']:,}", f"{counts['backbone']:,}")
        every = self.cfg["train"]["val_every_steps"]
        validation = (f"every {count(every, 'step')}" if every else
                      f"every {count(self.cfg['train']['val_every'], 'epoch')}")
        self._info(
            "run %s: %s on %s (%s), %d train / %d val sequences, %s (%s of %s), validation %s, "
            "precision %s, parameters: backbone %s, adapter %s",
            self.work_dir, self.cfg.filename, self.device, count(self.dist.world_size, "process"),
            len(self.train_set), len(self.val_set), count(self.total_steps, "step"), count(self.epochs, "epoch"),
            self.steps_per_epoch, validation, self.amp.precision, f"{counts['backbone']:,}", f"{counts['adapter']:,}",
        )

    def _info(self, *args) -> None:
        if self.is_main:
            log.info(*args)

    def _warn(self, *args) -> None:
        if self.is_main:
            log.warning(*args)

    # ------------------------------------------------------------------ checkpoints

    def _progress(self) -> dict:
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "global_step": self.global_step,
                "best": self.best, "history": self.history,
                "epoch_losses": list(self.epoch_losses), "since_validation": list(self.since_validation)}

    def save(self, name: str) -> Path:
        """Write checkpoints/<name>.pt atomically (rank 0 only). With an EMA, ``best`` holds the EMA weights."""
        return self.checkpoints.save(name, self._progress())

    def _resume(self, state: dict) -> None:
        """Continue from ``state``, the checkpoints/last.pt that ``check_resume`` accepted."""
        for key, value in self.checkpoints.restore(state).items():
            setattr(self, key, value)
        if self.global_step >= self.total_steps:
            return  # fit() says that the run is finished
        self._info("resumed from %s at step %d of %d (epoch %d of %d, %d of its %d steps done)",
                   self.checkpoints.path("last"), self.global_step, self.total_steps, self.epoch + 1, self.epochs,
                   self.batch_in_epoch, self.steps_per_epoch)
        saved = state.get("config", {}).get("train", {})
        before = saved.get("max_steps") or (saved.get("epochs") or 0) * self.steps_per_epoch
        if before != self.total_steps:
            self._stretch_schedule(before)

    def _stretch_schedule(self, before: int) -> None:
        """A resumed run's budget changed from ``before`` steps: lay the schedule out over the new budget, and say
        how the learning rate of the next step changes when it does."""
        old, new = stretch_schedule(self.scheduler, self.optimizer)
        if abs(new - old) <= 1e-6 * max(abs(old), abs(new)):
            return
        change = (f"it had ended at step {before}, and step {self.global_step + 1} runs at a learning rate of {new:.3g}"
                  if self.global_step >= before else
                  f"step {self.global_step + 1} runs at a learning rate of {new:.3g} instead of {old:.3g}")
        self._warn("the budget changed from %s to %s: the %s schedule is laid out again over %s; %s",
                   count(before, "step"), count(self.total_steps, "step"), self.cfg["schedule"]["name"],
                   count(self.total_steps, "step"), change)

    # ------------------------------------------------------------------ loop

    def _should_stop(self) -> bool:
        """Every process stops at the same step when any of them got a signal (``signals.StopSignals``)."""
        return self.signals.should_stop()

    def fit(self) -> dict:
        """Train to the budget; returns the last validation metrics."""
        try:
            with self.signals:
                return self._fit()
        finally:
            self.run_folder.close()

    def _fit(self) -> dict:
        self._last_val: dict = self.history[-1] if self.history else {}
        if self.global_step >= self.total_steps:
            self._info("run %s is finished (step %d of %d): nothing to train; to train longer, raise train.max_steps "
                       "or train.epochs and resume", self.work_dir, self.global_step, self.total_steps)
        by_steps = self.cfg["train"]["val_every_steps"] is not None
        while self.global_step < self.total_steps and not self._stopped_early():
            self.train_loader.set_epoch(self.epoch, self.batch_in_epoch * self.accumulate)
            train_loss = self._train_epoch()
            if self.signals.received is not None:
                path = self.save("last")
                name = signal.Signals(self.signals.received).name
                self._info("%s received: saved %s at step %d; the run can be resumed from it", name, path,
                           self.global_step)
                raise KeyboardInterrupt(f"stopped by {name}; checkpoint saved to {path}")
            self.epoch += 1
            self.batch_in_epoch, self.epoch_losses = 0, []
            if not by_steps and (self.epoch % self.cfg["train"]["val_every"] == 0
                                 or self.global_step >= self.total_steps):
                self.validate(train_loss)
            self.save("last")
        self.run_folder.plot_curves()
        return self._last_val

    def _train_epoch(self) -> float:
        """Steps to the end of the epoch, of the budget or to a stop signal; returns the mean train loss."""
        self.net.train()
        losses = self.epoch_losses
        bar = tqdm(total=self.steps_per_epoch, initial=self.batch_in_epoch, desc=f"epoch {self.epoch + 1}/{self.epochs}",
                   disable=None if self.show_progress else True, leave=False, dynamic_ncols=True)  # None: a terminal only
        start = time.perf_counter()
        logged = self.batch_in_epoch >= self.steps_per_epoch  # resumed after its last step: it was logged "done"
        batches = iter(self.train_loader)
        every = self.cfg["train"]["val_every_steps"]
        while self.batch_in_epoch < self.steps_per_epoch and self.global_step < self.total_steps:
            if self._should_stop() or (self.early_stop is not None and self.early_stop.should_stop):
                break
            terms, updated = self.train_step(batches)
            if updated:
                losses.append(terms["loss"].item())
                self.since_validation.append(terms["loss"].item())
            self.global_step += 1
            self.batch_in_epoch += 1
            bar.update(1)
            bar.set_postfix(loss=f"{terms['loss'].item():.4f}", lr=f"{self._step_lr:.2e}")
            self._after_step(terms)
            if every and (self.global_step % every == 0 or self.global_step >= self.total_steps):
                recent = self.since_validation
                self.validate(float(np.mean(recent)) if recent else float("nan"))
                self.net.train()
        bar.close()
        mean_loss = float(np.mean(losses)) if losses else float("nan")
        if not logged:
            self._log_epoch_end(mean_loss, time.perf_counter() - start)
        return mean_loss

    def _log_epoch_end(self, mean_loss: float, seconds: float) -> None:
        """"done" for an epoch that ran to its end (or the budget's); "interrupted" for one a stop signal cut short
        (a resume goes on with it and says "done" at its end); "stopped early" for one early stopping ended."""
        epoch, k, steps = self.epoch + 1, self.batch_in_epoch, self.steps_per_epoch
        if k >= steps or self.global_step >= self.total_steps:
            self._info("epoch %d done: mean train loss %.5f in %.1fs", epoch, mean_loss, seconds)
        elif self.signals.received is not None:
            self._info("epoch %d interrupted after %d of %d steps", epoch, k, steps)
        else:
            self._info("epoch %d stopped early after %d of %d steps: mean train loss %.5f in %.1fs", epoch, k, steps,
                       mean_loss, seconds)

    def _after_step(self, terms: dict) -> None:
        """Log the loss terms every ``train.log_every`` steps and at the last step of each epoch and of the budget
        (a run shorter than ``log_every`` still has its training curve); save last.pt every ``train.save_every``."""
        t, lr = self.cfg["train"], self._step_lr
        if (self.global_step % t["log_every"] == 0 or self.batch_in_epoch >= self.steps_per_epoch
                or self.global_step >= self.total_steps):
            self._info("step %d/%d epoch %d %s lr=%.3e", self.global_step, self.total_steps, self.epoch + 1,
                       " ".join(f"{k}={v.item():.5f}" for k, v in terms.items()), lr)
            self.run_folder.record_step({**{f"train/{k}": v.item() for k, v in terms.items()}, "lr": lr},
                                        self.epoch + 1, self.global_step)
        if t["save_every"] and self.global_step % t["save_every"] == 0:
            self.save("last")
