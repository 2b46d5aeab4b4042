"""One optimiser step of the training loop: the forward and backward of each micro-batch (mixed precision; DDP
syncs gradients on the last one only), the skip of a step whose loss is not finite, gradient clipping, the
optimiser and EMA updates and the schedule's step."""
from __future__ import annotations

import contextlib
import warnings

import torch

from ..data import split_batch
from . import distributed as dist


class OptimiserStep:
    """``Trainer``'s optimiser step (a mixin): it uses the trainer's ``net``, ``model``, ``loss_fn``, ``optimizer``,
    ``scheduler``, ``amp``, ``ema``, ``accumulate``, ``nonfinite``, ``dist``, ``device``, ``cfg`` and
    ``global_step``."""

    def _micro_step(self, x, y, sync: bool, extras: dict | None = None) -> dict:
        """Forward and backward of one micro-batch; returns its loss terms. Skips backward when non-finite."""
        context = contextlib.nullcontext() if sync or not self.dist.enabled else self.net.no_sync()
        with context:
            with self.amp.autocast():
                out = self.net(x, targets=y, step=self.global_step, extras=extras, return_output=True)
            # in float32 (SSIM's convolutions), against the targets of the frames predicted (a backbone may draw a
            # shorter horizon in training: latent_flow's train_out_frames)
            terms = self.loss_fn(out.frames.float(), y[:, :out.frames.shape[1]])
            extra = {k: v.float() for k, v in out.aux_losses.items()}
            if extra:
                terms = {**terms, **extra, "loss": terms["loss"] + sum(extra.values())}
            bad = torch.tensor(float(not torch.isfinite(terms["loss"]).item()))
            if self.dist.enabled:
                bad = dist.all_reduce_sum(bad)
            terms["nonfinite"] = bad
            if not bad.item():
                self.amp.scaler.scale(terms["loss"] / self.accumulate).backward()
        return terms

    def train_step(self, batches) -> tuple[dict, bool]:
        """One optimiser step over ``train.accumulate_steps`` micro-batches drawn from the iterator ``batches``.

        Returns the loss terms (means over the micro-batches) and whether the weights were updated: a step
        whose loss is not finite is skipped (``NonFinitePolicy``) but still advances the schedule.
        """
        self._ramp_loss()
        self.optimizer.zero_grad(set_to_none=True)
        skipped, step_terms = False, []
        for micro in range(self.accumulate):
            x, y, extras = split_batch(next(batches), self.device)
            terms = self._micro_step(x, y, sync=micro == self.accumulate - 1, extras=extras)
            step_terms.append(terms)
            skipped |= bool(terms["nonfinite"].item())
        terms = {k: torch.stack([s[k].detach().float() for s in step_terms]).mean() for k in step_terms[0]
                 if k != "nonfinite"}
        if skipped:
            self.optimizer.zero_grad(set_to_none=True)
            self.nonfinite.skipped(self.global_step, step_terms)
        else:
            self.nonfinite.finite()
            self._apply_update()
        self._step_lr = self.optimizer.param_groups[0]["lr"]  # the rate this step used (logged)
        with warnings.catch_warnings():  # a skipped update still advances the schedule: keep it on step
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
            self.scheduler.step()
        return terms, not skipped

    def _ramp_loss(self) -> None:
        """Give a loss with a warm-up (``loss.warmup``, ``pdr.losses.LossWarmup``) the current step."""
        if hasattr(self.loss_fn, "set_step"):
            self.loss_fn.set_step(self.global_step)

    def _apply_update(self) -> None:
        self.amp.scaler.unscale_(self.optimizer)
        if self.cfg["optim"]["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg["optim"]["grad_clip"])
        self.amp.scaler.step(self.optimizer)
        self.amp.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model, step=self.global_step)
