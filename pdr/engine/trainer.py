"""The training loop.

AdamW and a one-cycle/cosine schedule, validation each epoch, best/last checkpoints,
a progress bar, a plain-text log, a metrics CSV, TensorBoard and/or Weights & Biases
(``train.loggers``), early stopping (``train.early_stop``). Runs unchanged under
torchrun (DistributedDataParallel: NCCL on GPUs, gloo on CPUs), with mixed precision,
gradient clipping and accumulation, an optional EMA of the weights and torch.compile.

Run folder layout::

    <work_dir>/config.yaml          the resolved config
    <work_dir>/log.txt              what happened, readable
    <work_dir>/metrics.csv          one row per validation
    <work_dir>/curves.png           training loss and validation metrics per epoch
    <work_dir>/tb/                  TensorBoard events (scalars, learning rate, example predictions)
    <work_dir>/wandb/               the Weights & Biases run, with ``train.loggers: [..., wandb]``
    <work_dir>/checkpoints/last.pt  written atomically after every epoch, every ``train.save_every``
                                    steps and on SIGTERM/SIGINT
    <work_dir>/checkpoints/best.pt  the best validation by ``train.monitor``

Only the first process (rank 0) writes files and logs.
"""
from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import random
import shutil
import signal
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from .. import __version__
from ..config import Config
from ..data import build_dataset, split_batch
from ..errors import CheckpointError, PDRError
from ..losses import build_loss
from ..metrics import VALIDATION_METRICS
from ..metrics import MetricAccumulator, higher_is_better
from ..model import build_model
from ..pretrained import load_backbone_weights
from ..visualize import save_training_curves
from . import distributed as dist
from .checkpoint import config_differences, load_checkpoint, save_checkpoint
from .loggers import Loggers, build_loggers
from .optim import build_optimizer, build_scheduler, load_scheduler_state
from .stopping import EarlyStopping
from .sampler import EpochBatchSampler

log = logging.getLogger("pdr")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PDRError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu or auto")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def check_resume(work_dir: Path, cfg: Config) -> dict:
    """The state of ``<work_dir>/checkpoints/last.pt`` when ``--resume`` may continue it with ``cfg``.

    Called before anything is built or written: a refused resume leaves the run folder as it was.
    """
    if not work_dir.is_dir():
        raise CheckpointError(f"--resume: the run folder {work_dir} does not exist; start the run without --resume")
    path = work_dir / "checkpoints" / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"--resume: no checkpoint to resume from at {path}")
    state = load_checkpoint(path, map_location="cpu")
    diff = config_differences(state.get("config", {}), dict(cfg))
    if diff:
        raise CheckpointError(
            f"--resume: {path} was written with a different config; differing keys:\n  " + "\n  ".join(diff)
        )
    return state


def prepare_run_dir(work_dir: Path, resume: bool, overwrite: bool) -> None:
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


def _plain_stat(value):
    """A dataset's mean/std as a float, a list of floats or None (checkpoints hold plain values)."""
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64)
    return float(arr) if arr.ndim == 0 else [float(v) for v in arr.ravel()]


class NonFiniteLossError(PDRError):
    """Too many non-finite losses in a row."""


class Trainer:
    """Trains the model a config describes into ``work_dir``."""

    def __init__(self, cfg: Config, work_dir: str | os.PathLike, device: str | None = None,
                 resume: bool = False, overwrite: bool = False, show_progress: bool = True):
        self.cfg = cfg
        t, d = cfg["train"], cfg["data"]
        self.work_dir = Path(work_dir)
        resume_state = check_resume(self.work_dir, cfg) if resume else None
        self.dist, self.device = dist.init_distributed(resolve_device(device or t["device"]))
        self.is_main = self.dist.is_main
        self.show_progress = show_progress and self.is_main
        self._log_handler = None
        self.loggers = Loggers()
        if self.is_main:
            prepare_run_dir(self.work_dir, resume, overwrite)
            self._log_handler = _attach_log_file(self.work_dir)
            cfg.save(self.work_dir / "config.yaml")
        dist.barrier()

        seed_everything(t["seed"], t["deterministic"])
        self.train_set = build_dataset(cfg, "train")  # data problems first: they are the most common
        self.val_set = build_dataset(cfg, "val")
        if len(self.train_set) == 0:
            raise PDRError("the train split is empty (data.num_train or the data root)")

        self.model = build_model(cfg).to(self.device)
        self.resolved = self.model.resolved_choices()
        if self.resolved:
            self._record_resolved()
        self.model.data_mean, self.model.data_std = _plain_stat(self.train_set.mean), _plain_stat(self.train_set.std)
        m = cfg["model"]
        if m["init_from"] and resume_state is None:  # a resumed run has its weights in last.pt
            load_backbone_weights(self.model, m["init_from"], strict=m["init_strict"])
        if m["freeze_backbone"]:
            self.model.freeze_backbone()
        self.loss_fn = build_loss(cfg["loss"])
        self.net = self._wrap_model(t)
        self.optimizer = build_optimizer(cfg, self.model)
        self.precision = t["precision"]
        self.autocast_dtype = AUTOCAST_DTYPES.get(self.precision)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.ema = None
        if t["ema_decay"] is not None:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=t["ema_decay"])

        self.accumulate = t["accumulate_steps"]
        if self.accumulate < 1:
            raise PDRError(f"train.accumulate_steps must be >= 1, got {self.accumulate}")
        try:
            self.sampler = EpochBatchSampler(len(self.train_set), d["batch_size"], t["seed"],
                                             rank=self.dist.rank, world_size=self.dist.world_size)
        except ValueError as exc:
            raise PDRError(str(exc)) from None
        # Loaders get their own generators: starting an epoch must not draw from the global RNG that
        # dropout uses, or a resumed run would diverge from an uninterrupted one.
        self.train_loader = DataLoader(self.train_set, batch_sampler=self.sampler, num_workers=d["num_workers"],
                                       generator=torch.Generator().manual_seed(t["seed"]))
        val_indices = range(self.dist.rank, len(self.val_set), self.dist.world_size)
        self.val_loader = DataLoader(
            Subset(self.val_set, val_indices), batch_size=d["eval_batch_size"] or d["batch_size"], shuffle=False,
            num_workers=d["num_workers"], generator=torch.Generator().manual_seed(t["seed"]),
        )
        self.steps_per_epoch = len(self.sampler) // self.accumulate
        if self.steps_per_epoch < 1:
            raise PDRError(f"an epoch of {len(self.sampler)} batches is shorter than train.accumulate_steps={self.accumulate}")
        self.total_steps = t["max_steps"] or t["epochs"] * self.steps_per_epoch
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.scheduler = build_scheduler(cfg, self.optimizer, self.total_steps)
        self.monitor = t["monitor"]
        self.higher_is_better = higher_is_better(self.monitor.split("/")[-1])  # checked when the config loaded
        stop = t["early_stop"]
        self.early_stop = None
        if stop["patience"] is not None:
            watched = stop["monitor"] or self.monitor
            self.early_stop = EarlyStopping(watched, stop["patience"], stop["min_delta"],
                                            higher_is_better(watched.split("/")[-1]))
        self.best = None
        self.epoch, self.batch_in_epoch, self.global_step = 0, 0, 0
        self.nonfinite_in_a_row = 0
        self.history: list[dict] = []
        self._stop_signal = None
        counts = self.model.parameter_summary()
        self.trainable_parameters = counts["trainable"]
        if self.model.backbone_frozen:
            self._info("backbone frozen: %s trainable parameters (the adapter's), %s frozen",
                       f"{counts['trainable']:,}", f"{counts['backbone']:,}")
        self._info(
            "run %s: %s on %s (%d process%s), %d train / %d val sequences, %d steps (%d epochs of %d), "
            "precision %s, parameters: backbone %s, adapter %s",
            self.work_dir, cfg.filename, self.device, self.dist.world_size, "es" if self.dist.enabled else "",
            len(self.train_set), len(self.val_set), self.total_steps, self.epochs, self.steps_per_epoch,
            self.precision, f"{counts['backbone']:,}", f"{counts['adapter']:,}",
        )
        if resume_state is not None:
            self._load(resume_state, self.work_dir / "checkpoints" / "last.pt")
        if self.is_main:
            self.loggers = build_loggers(cfg, self.work_dir, resume=resume_state is not None)

    def _record_resolved(self) -> None:
        """Say which network or method the model picked where its config leaves a choice, and keep it as
        comments at the top of config.yaml (the checkpoints keep it under ``resolved``)."""
        lines = [f"{key}: {value}" for key, value in self.resolved.items()]
        self._info("resolved at the start of the run: %s", "; ".join(lines))
        if self.is_main:
            header = "# resolved at the start of the run:\n" + "".join(f"#   {line}\n" for line in lines)
            (self.work_dir / "config.yaml").write_text(header + self.cfg.to_yaml())

    def _info(self, *args) -> None:
        if self.is_main:
            log.info(*args)

    def _wrap_model(self, t: dict) -> torch.nn.Module:
        net = self.model
        if self.dist.enabled:
            if self.device.type == "cuda":
                net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
            net = torch.nn.parallel.DistributedDataParallel(
                net, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if t["compile"]:
            net = torch.compile(net)
        return net

    # ------------------------------------------------------------------ checkpoints

    def _state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "global_step": self.global_step,
            "best": self.best,
            "history": self.history,
            "config": dict(self.cfg),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
            "data_stats": {"mean": self.model.data_mean, "std": self.model.data_std},
            "early_stop": self.early_stop.state_dict() if self.early_stop is not None else None,
            "pdr_version": __version__,
            "resolved": self.resolved,
        }

    def save(self, name: str) -> Path | None:
        """Write checkpoints/<name>.pt atomically (rank 0 only). With an EMA, ``best`` holds the EMA weights."""
        path = self.work_dir / "checkpoints" / f"{name}.pt"
        if self.is_main:
            state = self._state()
            if name == "best" and self.ema is not None:
                state["model"] = state["ema"]
            save_checkpoint(state, path)
        dist.barrier()
        return path

    def _load(self, state: dict, path: Path) -> None:
        """Continue from ``state``, the checkpoint at ``path`` that ``check_resume`` accepted."""
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.module.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        load_scheduler_state(self.scheduler, state["scheduler"])
        if self.early_stop is not None and state.get("early_stop") is not None:
            self.early_stop.load_state_dict(state["early_stop"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.batch_in_epoch = state["epoch"], state["batch_in_epoch"]
        self.global_step, self.best, self.history = state["global_step"], state["best"], state.get("history", [])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        self._info("resumed from %s at epoch %d, batch %d, step %d", path, self.epoch, self.batch_in_epoch,
                   self.global_step)

    # ------------------------------------------------------------------ loop

    def _on_signal(self, signum, frame) -> None:
        self._stop_signal = signum

    def _should_stop(self) -> bool:
        """Every process stops at the same step when any of them got a signal."""
        flag = torch.tensor(float(self._stop_signal is not None))
        if self.dist.enabled:
            flag = dist.all_reduce_sum(flag)
        if flag.item() and self._stop_signal is None:
            self._stop_signal = signal.SIGTERM
        return bool(flag.item())

    def fit(self) -> dict:
        """Train to the budget; returns the last validation metrics."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            return self._fit()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            if self._log_handler is not None:
                log.removeHandler(self._log_handler)
                self._log_handler.close()
            self.loggers.close()

    def _fit(self) -> dict:
        last_val: dict = self.history[-1] if self.history else {}
        while self.global_step < self.total_steps and not self._stopped_early():
            self.sampler.set_epoch(self.epoch, self.batch_in_epoch * self.accumulate)
            if callable(getattr(self.train_set, "set_epoch", None)):  # datasets that draw new clips per epoch
                self.train_set.set_epoch(self.epoch)  # workers are forked per epoch, so they see it
            train_loss = self._train_epoch()
            if self._stop_signal is not None:
                path = self.save("last")
                name = signal.Signals(self._stop_signal).name
                self._info("%s received: saved %s at step %d; continue with --resume", name, path, self.global_step)
                raise KeyboardInterrupt(f"stopped by {name}; checkpoint saved to {path}")
            self.epoch += 1
            self.batch_in_epoch = 0
            if self.epoch % self.cfg["train"]["val_every"] == 0 or self.global_step >= self.total_steps:
                last_val = self._validate(train_loss)
            self.save("last")
        if self.is_main:
            self._plot_curves()
        return last_val

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _micro_step(self, x, y, sync: bool, extras: dict | None = None) -> dict:
        """Forward and backward of one micro-batch; returns its loss terms. Skips backward when non-finite."""
        context = contextlib.nullcontext() if sync or not self.dist.enabled else self.net.no_sync()
        with context:
            with self._autocast():
                pred = self.net(x, targets=y, step=self.global_step, extras=extras)
            terms = self.loss_fn(pred.float(), y)  # the loss (SSIM's convolutions) in float32
            extra = {k: v.float() for k, v in self.model.auxiliary_losses().items()}
            if extra:
                terms = {**terms, **extra, "loss": terms["loss"] + sum(extra.values())}
            bad = torch.tensor(float(not torch.isfinite(terms["loss"]).item()))
            if self.dist.enabled:
                bad = dist.all_reduce_sum(bad)
            terms["nonfinite"] = bad
            if not bad.item():
                self.scaler.scale(terms["loss"] / self.accumulate).backward()
        return terms

    def _train_epoch(self) -> float:
        self.net.train()
        t = self.cfg["train"]
        losses = []
        bar = tqdm(total=self.steps_per_epoch, initial=self.batch_in_epoch, desc=f"epoch {self.epoch + 1}/{self.epochs}",
                   disable=not self.show_progress, leave=False, dynamic_ncols=True)
        start = time.perf_counter()
        batches = iter(self.train_loader)
        while self.batch_in_epoch < self.steps_per_epoch and self.global_step < self.total_steps:
            if self._should_stop():
                break
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
                self._on_nonfinite(step_terms)
            else:
                self.nonfinite_in_a_row = 0
                self.scaler.unscale_(self.optimizer)
                if self.cfg["optim"]["grad_clip"]:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg["optim"]["grad_clip"])
                self.scaler.step(self.optimizer)
                self.scaler.update()
                if self.ema is not None:
                    self.ema.update(self.model, step=self.global_step)
                losses.append(terms["loss"].item())
            self._step_lr = lr = self.optimizer.param_groups[0]["lr"]  # the rate this step used (logged)
            with warnings.catch_warnings():  # a skipped update still advances the schedule: keep it on step
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
                self.scheduler.step()
            self.global_step += 1
            self.batch_in_epoch += 1
            bar.update(1)
            bar.set_postfix(loss=f"{terms['loss'].item():.4f}", lr=f"{lr:.2e}")
            if self.global_step % t["log_every"] == 0:
                self._info("step %d/%d epoch %d %s lr=%.3e", self.global_step, self.total_steps, self.epoch + 1,
                           " ".join(f"{k}={v.item():.5f}" for k, v in terms.items()), lr)
                self.loggers.log_scalars({**{f"train/{k}": v.item() for k, v in terms.items()}, "train/lr": lr},
                                         self.global_step)
            if t["save_every"] and self.global_step % t["save_every"] == 0:
                self.save("last")
        bar.close()
        mean_loss = float(np.mean(losses)) if losses else float("nan")
        self._info("epoch %d done: mean train loss %.5f in %.1fs", self.epoch + 1, mean_loss,
                   time.perf_counter() - start)
        return mean_loss

    def _on_nonfinite(self, step_terms: list[dict]) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite_in_a_row += 1
        bad = sorted({k for s in step_terms for k, v in s.items()
                      if k not in ("loss", "nonfinite") and not torch.isfinite(v).all()})
        log.warning("step %d: non-finite loss (terms: %s); update skipped (%d in a row)", self.global_step,
                    ", ".join(bad) or "loss", self.nonfinite_in_a_row)
        limit = self.cfg["train"]["max_nonfinite_steps"]
        if self.nonfinite_in_a_row >= limit:
            last = self.work_dir / "checkpoints" / "last.pt"
            kept = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written yet"
            raise NonFiniteLossError(
                f"stopped at step {self.global_step}: {self.nonfinite_in_a_row} non-finite losses in a row "
                f"(terms: {', '.join(bad) or 'loss'}; train.max_nonfinite_steps={limit}); {kept}. Lower optim.lr, "
                "set optim.grad_clip or check the data"
            )

    @torch.no_grad()
    def evaluate_split(self, loader: DataLoader, max_batches: int | None = None) -> dict:
        """Loss and metrics of the EMA (or plain) model on ``loader``, summed over every process.

        Backbones with ``validates_reconstruction`` (latent_flow's VAE phase) are scored on
        ``backbone.reconstruct(targets)`` instead of a prediction, so the best checkpoint is the best auto-encoder.
        """
        model = self.ema.module if self.ema is not None else self.model
        model.eval()
        dataset = loader.dataset.dataset if isinstance(loader.dataset, Subset) else loader.dataset
        acc = MetricAccumulator(VALIDATION_METRICS, mean=dataset.mean, std=dataset.std, spatial_norm=dataset.spatial_norm,
                                channel_names=dataset.channel_names)
        reconstructs = getattr(model.backbone, "validates_reconstruction", False)
        total = torch.zeros(2, dtype=torch.float64)
        example = None
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            x, y, _ = split_batch(batch, self.device)
            with self._autocast():  # a model still learning to encode frames is judged on its reconstructions
                pred = (model.backbone.reconstruct(y) if reconstructs else model(x)).float()
            total += torch.tensor([self.loss_fn(pred, y)["loss"].item() * x.shape[0], x.shape[0]], dtype=torch.float64)
            acc.update(pred, y)
            if example is None:
                example = (y[0].cpu(), pred[0].cpu())
        total = dist.all_reduce_sum(total)
        acc.all_reduce()
        self._last_example = example
        return {"loss": (total[0] / total[1].clamp(min=1)).item(), **acc.compute()}

    def _validate(self, train_loss: float) -> dict:
        res = self.evaluate_split(self.val_loader, self.cfg["train"]["max_val_batches"])
        row = {"epoch": self.epoch, "step": self.global_step, "train/loss": train_loss,
               "lr": getattr(self, "_step_lr", self.optimizer.param_groups[0]["lr"]),
               **{f"val/{k}": v for k, v in res.items()}}
        if self.monitor not in row:
            raise PDRError(f"train.monitor: {self.monitor!r} is not among the logged values {sorted(row)}")
        value = row[self.monitor]
        improved = self.best is None or (value > self.best if self.higher_is_better else value < self.best)
        self.history.append(row)
        if self.is_main:
            self._write_csv(row)
            self._log_validation(row)
        self._info("validation epoch %d: %s", self.epoch,
                   " ".join(f"{k}={v:.5g}" for k, v in row.items() if k.startswith("val/")))
        if improved:
            self.best = value
            self.save("best")
            self._info("new best %s = %.5g: saved checkpoints/best.pt", self.monitor, value)
        if self.early_stop is not None:
            self.early_stop.update(row)
        return row

    def _stopped_early(self) -> bool:
        if self.early_stop is None or not self.early_stop.should_stop:
            return False
        stop = self.early_stop
        self._info("early stop at step %d of %d: %s has not improved by more than %g in %d validations (best %.5g)",
                   self.global_step, self.total_steps, stop.monitor, stop.min_delta, stop.bad_validations, stop.best)
        return True

    def _log_validation(self, row: dict) -> None:
        self.loggers.log_scalars({k: v for k, v in row.items() if k.startswith("val/")}, self.global_step)
        if getattr(self, "_last_example", None) is not None:
            truth, pred = self._last_example  # (T, C, H, W)
            frames = torch.cat([truth, pred.clamp(0, 1)], dim=0)
            if frames.shape[1] not in (1, 3):
                frames = frames[:, :1]
            self.loggers.log_images("val/truth_then_prediction", frames.clamp(0, 1), self.global_step)
        self.loggers.flush()

    def _write_csv(self, row: dict) -> None:
        path = self.work_dir / "metrics.csv"
        new = not path.exists()
        with path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    def _plot_curves(self) -> None:
        if self.history:
            save_training_curves(self.work_dir / "curves.png", self.history)
