"""Optimizers and learning-rate schedules from the ``optim`` and ``schedule`` sections, mixed precision
(``train.precision``) and the moving average of the weights (``train.ema_decay``)."""
from __future__ import annotations

import contextlib
import logging
import math
import warnings

import torch

from ..config import Config

log = logging.getLogger("pdr")


def parameter_groups(cfg: Config, model: torch.nn.Module) -> list[dict]:
    """The trainable parameters: one group at ``optim.lr``, or, with ``optim.adapter_lr_scale`` != 1 and an
    adapter, the backbone's group and the adapter's at ``lr * adapter_lr_scale``. The scale is ignored without an
    adapter, so that the arms of a comparison can share it. ``model``: a PDRModel."""
    o = cfg["optim"]
    adapter = getattr(model, "adapter", None)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if o["adapter_lr_scale"] == 1.0 or adapter is None:
        return [{"params": trainable, "lr": o["lr"]}]
    own = {id(p) for p in adapter.parameters()}
    return [{"params": [p for p in trainable if id(p) not in own], "lr": o["lr"]},
            {"params": [p for p in trainable if id(p) in own], "lr": o["lr"] * o["adapter_lr_scale"]}]


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    o = cfg["optim"]
    params = parameter_groups(cfg, model)
    if o["name"] == "adamw":
        return torch.optim.AdamW(params, lr=o["lr"], weight_decay=o["weight_decay"], betas=tuple(o["betas"]))
    if o["name"] == "adam":
        return torch.optim.Adam(params, lr=o["lr"], weight_decay=o["weight_decay"], betas=tuple(o["betas"]))
    momentum = 0.9 if o["momentum"] is None else o["momentum"]
    return torch.optim.SGD(params, lr=o["lr"], weight_decay=o["weight_decay"], momentum=momentum)


def schedule_factor(cfg: Config, total_steps: int):
    """LR multiplier per step of the ``cosine`` and ``constant`` schedules: linear warm-up, then cosine decay
    to ``min_lr_ratio`` or a constant."""
    s = cfg["schedule"]
    warmup, floor = s["warmup_steps"], s["min_lr_ratio"]

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if s["name"] == "constant":
            return 1.0
        progress = min(1.0, max(0.0, (step - warmup) / max(1, total_steps - warmup)))
        return floor + (1.0 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def describe_schedule(cfg: Config) -> str:
    """The schedule in words, for the log."""
    s, lr = cfg["schedule"], cfg["optim"]["lr"]
    if s["name"] == "onecycle":
        return f"onecycle: from lr {lr / 25:g} up to {lr:g} over {s['pct_start']:.0%} of the steps, then down"
    warmup = f"a warm-up of {s['warmup_steps']} steps to lr {lr:g}, then " if s["warmup_steps"] else f"lr {lr:g}, "
    return warmup + ("constant" if s["name"] == "constant" else f"cosine decay to {s['min_lr_ratio']:g} of it")


def restart_warning(cfg: Config) -> str | None:
    """For a run that starts from trained weights (``model.init_from``) and warms up to its learning rate: a fresh
    optimiser at the rate of training from scratch can wreck the trained model (docs/ablations.md, section 17)."""
    s = cfg["schedule"]
    if not cfg["model"]["init_from"] or (s["name"] != "onecycle" and not s["warmup_steps"]):
        return None
    return (f"model.init_from: the run starts from trained weights with a warm-up ({describe_schedule(cfg)}); at the "
            "rate of training from scratch a fresh optimiser can wreck them (docs/ablations.md, section 17); "
            "configs/_base_/finetune.yaml is the fine-tuning schedule: no warm-up, a tenth of the rate, cosine decay")


def build_scheduler(cfg: Config, optimizer: torch.optim.Optimizer, total_steps: int):
    """Stepped once per optimizer step. ``onecycle`` is torch's OneCycleLR as OpenSTL configures it: from
    lr/25 up to ``optim.lr`` over ``pct_start`` of the steps, then down to lr/25e4 (cosine), with the
    momentum (AdamW's beta1) cycled from 0.95 down to 0.85 and back."""
    if cfg["schedule"]["name"] == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[group.get("max_lr", group["lr"]) for group in optimizer.param_groups],
            total_steps=max(1, total_steps), pct_start=cfg["schedule"]["pct_start"],
            anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85, max_momentum=0.95, div_factor=25.0,
            final_div_factor=1e4,
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule_factor(cfg, total_steps))


def stretch_schedule(scheduler, optimizer: torch.optim.Optimizer) -> tuple[float, float]:
    """Set the learning rates (and the one-cycle momentum) to the schedule's values at its current step, for a
    schedule restored from a run whose budget differed (``load_scheduler_state`` keeps the step, the layout comes
    from the current budget). Returns the first group's learning rate (before, after)."""
    before = optimizer.param_groups[0]["lr"]
    with warnings.catch_warnings():  # get_lr outside step() warns; here it is what is wanted
        warnings.simplefilter("ignore")
        rates = scheduler.get_lr()
    for group, lr in zip(optimizer.param_groups, rates):
        group["lr"] = lr
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    return before, optimizer.param_groups[0]["lr"]


def build_ema(model: torch.nn.Module, decay: float | None):
    """An exponential moving average of the model's weights (timm's ModelEmaV3), or None without ``train.ema_decay``."""
    if decay is None:
        return None
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=decay)


def load_scheduler_state(scheduler, state: dict) -> None:
    """Continue a schedule from a checkpoint. The step count comes from the checkpoint; the schedule's
    length from the current budget, so that a resumed run whose ``train.max_steps``/``train.epochs`` grew
    runs its new budget (OneCycleLR would otherwise stop with an error at the old one)."""
    if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR):
        state = {k: v for k, v in state.items() if k not in ("total_steps", "_schedule_phases")}
    scheduler.load_state_dict(state)


class MixedPrecision:
    """``train.precision`` (fp32, bf16 or fp16): the autocast context of forward passes and the gradient scaler,
    which scales losses only under fp16."""

    DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

    def __init__(self, precision: str, device: torch.device):
        self.precision, self.device_type = precision, device.type
        if precision == "fp16" and device.type == "cpu":
            log.warning("train.precision fp16 on the CPU: most CPUs have no fast float16 arithmetic, so a step is "
                        "usually many times slower than in fp32 (the gradient scaler works all the same); on a CPU use "
                        "fp32 or bf16")
        self.dtype = self.DTYPES.get(precision)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)
