"""Validation inside the training loop: the val split scored with the EMA (or plain) model, the row of metrics.csv
and the loggers, the best checkpoint by ``train.monitor`` (after ``train.monitor_after``), early stopping and the
collapse warning."""
from __future__ import annotations

from torch.utils.data import DataLoader

from ..errors import PDRError
from .collapse import warn_on_collapse
from .evaluate import validation_scores
from .stopping import improves


class Validation:
    """``Trainer``'s validation (a mixin): it uses the trainer's model, EMA, loss, loaders, checkpoints, run folder,
    history and early stopping."""

    def evaluate_split(self, loader: DataLoader, max_batches: int | None = None) -> dict:
        """Loss and metrics of the EMA (or plain) model on ``loader`` (``evaluate.validation_scores``)."""
        model = self.ema.module if self.ema is not None else self.model
        self._ramp_loss()
        scores, self._last_example = validation_scores(model, loader, self.loss_fn, self.device, self.amp.autocast,
                                                       max_batches)
        return scores

    def validate(self, train_loss: float) -> dict:
        """Score the val split, record the row (metrics.csv, loggers, history), keep the best checkpoint."""
        res = self.evaluate_split(self.val_loader, self.cfg["train"]["max_val_batches"])
        self.since_validation = []
        epoch = self.epoch + (self.batch_in_epoch > 0)  # the epoch the step belongs to, from 1 (as the bar shows)
        row = {"epoch": epoch, "step": self.global_step, "train/loss": train_loss,
               "lr": getattr(self, "_step_lr", self.optimizer.param_groups[0]["lr"]),
               **{f"val/{k}": v for k, v in res.items()}}
        if self.monitor not in row:
            raise PDRError(f"train.monitor: {self.monitor!r} is not among the logged values {sorted(row)}")
        value = row[self.monitor]
        # before train.monitor_after (e.g. inside a loss warm-up) a validation neither competes for best.pt nor
        # counts for early stopping; the final one competes when nothing did before it
        eligible = self.global_step >= self.cfg["train"]["monitor_after"] or (
            self.best is None and self.global_step >= self.total_steps)
        improved = eligible and improves(value, self.best, self.higher_is_better)
        self.history.append(row)
        self.run_folder.record_validation(row, self._last_example, self.global_step)
        self._info("validation at step %d (epoch %d): %s", self.global_step, epoch,
                   " ".join(f"{k}={v:.5g}" for k, v in row.items() if k.startswith("val/")))
        if self.is_main:
            warn_on_collapse(self.history, self.work_dir.name)
        if improved:
            self.best = value
            self.save("best")
            self._info("new best %s = %.5g: saved checkpoints/best.pt", self.monitor, value)
        if self.early_stop is not None and eligible:
            self.early_stop.update(row)
        self._last_val = row
        return row

    def _stopped_early(self) -> bool:
        if self.early_stop is None or not self.early_stop.should_stop:
            return False
        stop = self.early_stop
        self._info("early stop at step %d of %d: %s has not improved by more than %g in %d validations (best %.5g)",
                   self.global_step, self.total_steps, stop.monitor, stop.min_delta, stop.bad_validations, stop.best)
        return True
