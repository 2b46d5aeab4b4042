"""The training loop: AdamW, a cosine or one-cycle schedule, validation each epoch,
best/last checkpoints, a progress bar, a plain-text log and a metrics CSV.

Run folder layout::

    <work_dir>/config.yaml          the resolved config
    <work_dir>/log.txt              what happened, readable
    <work_dir>/metrics.csv          one row per validation
    <work_dir>/curves.png           training loss and validation metrics per epoch
    <work_dir>/checkpoints/last.pt  written atomically after every epoch (and on SIGTERM/SIGINT)
    <work_dir>/checkpoints/best.pt  the best epoch by ``train.monitor``
"""
from __future__ import annotations

import csv
import logging
import math
import os
import random
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from .. import __version__
from ..config import Config
from ..data import build_dataset
from ..errors import CheckpointError, PDRError
from ..losses import build_loss
from ..metrics import MetricAccumulator
from ..model import build_model
from .checkpoint import config_differences, load_checkpoint, save_checkpoint

log = logging.getLogger("pdr")
HIGHER_IS_BETTER = {"psnr", "ssim"}
VAL_METRICS = ("mse", "mae", "psnr", "ssim")


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


class EpochBatchSampler(Sampler[list[int]]):
    """Shuffled batches whose order depends only on (seed, epoch), so a run can resume mid-epoch."""

    def __init__(self, size: int, batch_size: int, seed: int, shuffle: bool = True, drop_last: bool = True):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.shuffle, self.drop_last = shuffle, drop_last and size >= batch_size
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return self.size // self.batch_size if self.drop_last else math.ceil(self.size / self.batch_size)

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100003 + self.epoch))
        else:
            order = torch.arange(self.size)
        for b in range(self.start_batch, len(self)):
            yield order[b * self.batch_size : (b + 1) * self.batch_size].tolist()


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    o = cfg["optim"]
    params = [p for p in model.parameters() if p.requires_grad]
    if o["name"] == "adamw":
        return torch.optim.AdamW(params, lr=o["lr"], weight_decay=o["weight_decay"], betas=tuple(o["betas"]))
    if o["name"] == "adam":
        return torch.optim.Adam(params, lr=o["lr"], weight_decay=o["weight_decay"], betas=tuple(o["betas"]))
    return torch.optim.SGD(params, lr=o["lr"], weight_decay=o["weight_decay"], momentum=o["momentum"])


def schedule_factor(cfg: Config, total_steps: int):
    """LR multiplier per step: linear warm-up then cosine decay, constant, or a one-cycle shape
    (cosine up from lr/25 over ``pct_start`` of the steps, then cosine down to lr/25e4, as torch's OneCycleLR)."""
    s = cfg["schedule"]
    warmup, floor = s["warmup_steps"], s["min_lr_ratio"]

    def cosine(start: float, end: float, progress: float) -> float:
        return end + (start - end) * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))

    def factor(step: int) -> float:
        if s["name"] == "onecycle":
            peak = max(1.0, s["pct_start"] * total_steps)
            if step < peak:
                return cosine(1 / 25, 1.0, step / peak)
            return cosine(1.0, 1 / 25e4, (step - peak) / max(1.0, total_steps - peak))
        if step < warmup:
            return (step + 1) / warmup
        if s["name"] == "constant":
            return 1.0
        return cosine(1.0, floor, (step - warmup) / max(1, total_steps - warmup))

    return factor


def build_scheduler(cfg: Config, optimizer: torch.optim.Optimizer, total_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule_factor(cfg, total_steps))


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


class Trainer:
    """Trains the model a config describes into ``work_dir``."""

    def __init__(self, cfg: Config, work_dir: str | os.PathLike, device: str | None = None,
                 resume: bool = False, overwrite: bool = False, show_progress: bool = True):
        self.cfg = cfg
        self.work_dir = Path(work_dir)
        self.resume = resume
        self.show_progress = show_progress
        prepare_run_dir(self.work_dir, resume, overwrite)
        self._log_handler = _attach_log_file(self.work_dir)
        cfg.save(self.work_dir / "config.yaml")

        t = cfg["train"]
        self.device = resolve_device(device or t["device"])
        seed_everything(t["seed"], t["deterministic"])
        self.train_set = build_dataset(cfg, "train")  # data problems first: they are the most common
        self.val_set = build_dataset(cfg, "val")
        if len(self.train_set) == 0:
            raise PDRError("the train split is empty (data.num_train or the data root)")
        self.model = build_model(cfg).to(self.device)
        self.loss_fn = build_loss(cfg["loss"])
        d = cfg["data"]
        self.sampler = EpochBatchSampler(len(self.train_set), d["batch_size"], t["seed"])
        # Loaders get their own generators: starting an epoch must not draw from the global RNG that
        # dropout uses, or a resumed run would diverge from an uninterrupted one.
        self.train_loader = DataLoader(self.train_set, batch_sampler=self.sampler, num_workers=d["num_workers"],
                                       generator=torch.Generator().manual_seed(t["seed"]))
        self.val_loader = DataLoader(
            self.val_set, batch_size=d["eval_batch_size"] or d["batch_size"], shuffle=False, num_workers=d["num_workers"],
            generator=torch.Generator().manual_seed(t["seed"]),
        )
        self.steps_per_epoch = len(self.sampler)
        self.total_steps = t["max_steps"] or t["epochs"] * self.steps_per_epoch
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.optimizer = build_optimizer(cfg, self.model)
        self.scheduler = build_scheduler(cfg, self.optimizer, self.total_steps)
        self.monitor = t["monitor"]
        self.higher_is_better = self.monitor.split("/")[-1] in HIGHER_IS_BETTER
        self.best = None
        self.epoch, self.batch_in_epoch, self.global_step = 0, 0, 0
        self.history: list[dict] = []
        self._stop_signal = None
        counts = self.model.parameter_summary()
        log.info(
            "run %s: %s on %s, %d train / %d val sequences, %d steps (%d epochs of %d), parameters: backbone %s, adapter %s",
            self.work_dir, cfg.filename, self.device, len(self.train_set), len(self.val_set), self.total_steps,
            self.epochs, self.steps_per_epoch, f"{counts['backbone']:,}", f"{counts['adapter']:,}",
        )
        if resume:
            self._load(self.work_dir / "checkpoints" / "last.pt")

    # ------------------------------------------------------------------ checkpoints

    def _state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
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
            "pdr_version": __version__,
        }

    def save(self, name: str) -> Path:
        return save_checkpoint(self._state(), self.work_dir / "checkpoints" / f"{name}.pt")

    def _load(self, path: Path) -> None:
        if not path.is_file():
            raise CheckpointError(f"--resume: no checkpoint to resume from at {path}")
        state = load_checkpoint(path, map_location=self.device)
        diff = config_differences(state.get("config", {}), dict(self.cfg))
        if diff:
            raise CheckpointError(
                f"--resume: {path} was written with a different config; differing keys:\n  " + "\n  ".join(diff)
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.batch_in_epoch = state["epoch"], state["batch_in_epoch"]
        self.global_step, self.best, self.history = state["global_step"], state["best"], state.get("history", [])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        log.info("resumed from %s at epoch %d, batch %d, step %d", path, self.epoch, self.batch_in_epoch, self.global_step)

    # ------------------------------------------------------------------ loop

    def _on_signal(self, signum, frame) -> None:
        self._stop_signal = signum

    def fit(self) -> dict:
        """Train to the budget; returns the last validation metrics."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            return self._fit()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            log.removeHandler(self._log_handler)
            self._log_handler.close()

    def _fit(self) -> dict:
        last_val: dict = self.history[-1] if self.history else {}
        while self.global_step < self.total_steps:
            self.sampler.set_epoch(self.epoch, self.batch_in_epoch)
            train_loss = self._train_epoch()
            if self._stop_signal is not None:
                path = self.save("last")
                name = signal.Signals(self._stop_signal).name
                log.info("%s received: saved %s at step %d; continue with --resume", name, path, self.global_step)
                raise KeyboardInterrupt(f"stopped by {name}; checkpoint saved to {path}")
            self.epoch += 1
            self.batch_in_epoch = 0
            if self.epoch % self.cfg["train"]["val_every"] == 0 or self.global_step >= self.total_steps:
                last_val = self._validate(train_loss)
            self.save("last")
        self._plot_curves()
        return last_val

    def _train_epoch(self) -> float:
        self.model.train()
        t = self.cfg["train"]
        losses = []
        bar = tqdm(
            total=self.steps_per_epoch, initial=self.batch_in_epoch, desc=f"epoch {self.epoch + 1}/{self.epochs}",
            disable=not self.show_progress, leave=False, dynamic_ncols=True,
        )
        start = time.perf_counter()
        for x, y in self.train_loader:
            if self.global_step >= self.total_steps or self._stop_signal is not None:
                break
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            pred = self.model(x, targets=y, step=self.global_step)
            terms = self.loss_fn(pred, y)
            loss = terms["loss"]
            if not torch.isfinite(loss):
                bad = [k for k, v in terms.items() if k != "loss" and not torch.isfinite(v)]
                log.warning("step %d: non-finite loss (terms: %s); update skipped", self.global_step, ", ".join(bad) or "loss")
                self.optimizer.zero_grad(set_to_none=True)
            else:
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.cfg["optim"]["grad_clip"]:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg["optim"]["grad_clip"])
                self.optimizer.step()
                losses.append(loss.item())
            self.scheduler.step()
            self.global_step += 1
            self.batch_in_epoch += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
            if self.global_step % t["log_every"] == 0:
                parts = " ".join(f"{k}={v.item():.5f}" for k, v in terms.items())
                log.info("step %d/%d epoch %d %s lr=%.3e", self.global_step, self.total_steps, self.epoch + 1, parts,
                         self.scheduler.get_last_lr()[0])
        bar.close()
        mean_loss = float(np.mean(losses)) if losses else float("nan")
        log.info("epoch %d done: mean train loss %.5f in %.1fs", self.epoch + 1, mean_loss, time.perf_counter() - start)
        return mean_loss

    @torch.no_grad()
    def evaluate_split(self, loader: DataLoader, max_batches: int | None = None) -> dict:
        self.model.eval()
        acc = MetricAccumulator(VAL_METRICS, mean=loader.dataset.mean, std=loader.dataset.std)
        total, count = 0.0, 0
        for i, (x, y) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            x, y = x.to(self.device), y.to(self.device)
            pred = self.model(x)
            total += self.loss_fn(pred, y)["loss"].item() * x.shape[0]
            count += x.shape[0]
            acc.update(pred, y)
        res = {"loss": total / max(count, 1), **acc.compute()}
        return res

    def _validate(self, train_loss: float) -> dict:
        res = self.evaluate_split(self.val_loader, self.cfg["train"]["max_val_batches"])
        row = {"epoch": self.epoch, "step": self.global_step, "train/loss": train_loss,
               "lr": self.scheduler.get_last_lr()[0], **{f"val/{k}": v for k, v in res.items()}}
        if self.monitor not in row:
            raise PDRError(f"train.monitor: {self.monitor!r} is not among the logged values {sorted(row)}")
        value = row[self.monitor]
        improved = self.best is None or (value > self.best if self.higher_is_better else value < self.best)
        self.history.append(row)
        self._write_csv(row)
        log.info("validation epoch %d: %s", self.epoch, " ".join(f"{k}={v:.5g}" for k, v in row.items()
                                                                   if k.startswith("val/")))
        if improved:
            self.best = value
            self.save("best")
            log.info("new best %s = %.5g: saved checkpoints/best.pt", self.monitor, value)
        return row

    def _write_csv(self, row: dict) -> None:
        path = self.work_dir / "metrics.csv"
        new = not path.exists()
        with path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    def _plot_curves(self) -> None:
        if not self.history:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = [r["epoch"] for r in self.history]
        keys = ["train/loss", "val/loss", "val/mse", "val/psnr", "val/ssim"]
        fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8))
        for ax, key in zip(axes, keys):
            ax.plot(epochs, [r.get(key, float("nan")) for r in self.history], marker="o")
            ax.set_title(key)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.work_dir / "curves.png", dpi=100)
        plt.close(fig)
