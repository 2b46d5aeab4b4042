"""What a config is: its sections and fields (``SCHEMA``, with types, defaults and help) and ``Config``,
the resolved nested mapping that remembers which file (or ``--set``) set each key.

``pdr.config.load`` reads and merges config files; ``pdr.config.validate`` checks them against ``SCHEMA``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REQUIRED = object()


@dataclass(frozen=True)
class Field:
    types: tuple
    default: Any = REQUIRED
    choices: tuple | None = None
    help: str = ""


def _f(types, default=REQUIRED, choices=None, help=""):
    types = types if isinstance(types, tuple) else (types,)
    return Field(types, default, choices, help)


NONE = type(None)
COMPONENT = "component"  # a registry name, or a mapping with `name` and the entry's arguments
LOGGERS = ("tensorboard", "wandb")  # what train.loggers may name; pdr.engine.loggers builds each

SCHEMA: dict[str, Any] = {
    "imports": _f(list, [], help="modules to import first (they may register backbones, datasets, ...)"),
    "model": {
        "backbone": _f(COMPONENT, help="a backbone name or {name: ..., <its arguments>}"),
        "adapter": _f((COMPONENT, NONE), None, help="null, an adapter name (`predgs`) or {name: predgs, ...}"),
        "init_from": _f((str, NONE), None, help="load the backbone's weights before training: a PDR run folder or "
                        "checkpoint, or an OpenSTL .pth/.ckpt"),
        "init_strict": _f(bool, True, help="init_from: every key must fit (false: load what fits, log the rest)"),
        "freeze_backbone": _f(bool, False, help="train only the adapter"),
        "pad": _f(str, "auto", choices=("auto", "none"), help="auto: frames of a size the backbone or adapter does "
                  "not divide are padded to the next multiple and predictions cropped back; none: refuse such sizes"),
        "pad_mode": _f(str, "replicate", choices=("replicate", "reflect"), help="how model.pad: auto fills the border"),
    },
    "data": {
        "name": _f(str, help="a registered dataset"),
        "in_frames": _f(int),
        "out_frames": _f(int),
        "batch_size": _f(int, 16),
        "eval_batch_size": _f((int, NONE), None),
        "num_workers": _f(int, 0),
        # any other key is passed to the dataset and checked against its signature
    },
    "loss": _f(COMPONENT, {"name": "mse"}),
    "optim": {
        "name": _f(str, "adamw", choices=("adamw", "adam", "sgd")),
        "lr": _f(float, 1e-3),
        "adapter_lr_scale": _f(float, 1.0, help="the adapter's learning rate is lr times this"),
        "weight_decay": _f(float, 1e-2),
        "betas": _f(list, [0.9, 0.999]),
        "momentum": _f((float, NONE), None, help="sgd only (null: 0.9); adam and adamw take theirs from betas[0]"),
        "grad_clip": _f((float, NONE), None),
    },
    "schedule": {
        "name": _f(str, "cosine", choices=("cosine", "onecycle", "constant")),
        "warmup_steps": _f(int, 0),
        "min_lr_ratio": _f(float, 0.0),
        "pct_start": _f(float, 0.3),
    },
    "train": {
        "epochs": _f((int, NONE), 10, help="budget in epochs; max_steps, when set, wins"),
        "max_steps": _f((int, NONE), None),
        "seed": _f(int, 0),
        "device": _f(str, "auto", choices=("auto", "cpu", "cuda")),
        "log_every": _f(int, 10),
        "val_every": _f(int, 1, help="validate every this many epochs; not with val_every_steps"),
        "val_every_steps": _f((int, NONE), None, help="validate every this many optimiser steps, and after the last "
                              "one, instead of val_every (which then keeps its default, 1)"),
        "max_val_batches": _f((int, NONE), None),
        "deterministic": _f(bool, False),
        "monitor": _f(str, "val/mse", help="validation value that picks the best checkpoint (its direction comes from "
                      "pdr.metrics; one per benchmark, docs/datasets.md)"),
        "monitor_after": _f(int, 0, help="validations before this optimiser step do not compete for best.pt nor count "
                            "for early stopping (e.g. the length of loss.warmup); the last one competes if none did"),
        "precision": _f(str, "fp32", choices=("fp32", "bf16", "fp16"), help="autocast precision; fp16 uses a grad scaler"),
        "accumulate_steps": _f(int, 1, help="micro-batches per optimizer step"),
        "ema_decay": _f((float, NONE), None, help="keep an EMA of the weights (validated and saved) when set"),
        "compile": _f(bool, False, help="torch.compile the model"),
        "max_nonfinite_steps": _f(int, 5, help="stop after this many non-finite losses in a row"),
        "save_every": _f((int, NONE), None, help="also write checkpoints/last.pt every this many steps"),
        "tensorboard": _f(bool, True, help="write TensorBoard logs to <run>/tb when tensorboard is installed "
                          "(used when train.loggers is not set)"),
        "loggers": _f((list, NONE), None, help="experiment loggers, e.g. [tensorboard, wandb]; default: [tensorboard] "
                      "as train.tensorboard says"),
        "wandb_project": _f(str, "pdr", help="the Weights & Biases project of the wandb logger"),
        "early_stop": {
            "monitor": _f((str, NONE), None, help="validation value to watch (default: train.monitor)"),
            "patience": _f((int, NONE), None, help="stop after this many validations without improvement (null: off)"),
            "min_delta": _f(float, 0.0, help="a change smaller than this is no improvement"),
        },
    },
    "eval": {
        "metrics": _f(list, ["mse", "mae", "rmse", "psnr", "ssim", "lpips"]),
        "num_vis": _f(int, 4, help="test sequences drawn in the PNG grid"),
        "max_batches": _f((int, NONE), None),
        "num_samples": _f(int, 1, help="futures drawn per test sequence for stochastic models (best/mean of K)"),
    },
}


class Config(dict):
    """A resolved config: a plain nested dict plus where each key came from."""

    def __init__(self, data: dict, filename: str | None = None, origins: dict[str, str] | None = None):
        super().__init__(data)
        self.filename = filename
        self.origins = origins or {}

    def origin(self, path: str) -> str:
        """The file (or ``--set``) that set ``path`` or its nearest parent."""
        parts = path.split(".")
        while parts:
            key = ".".join(parts)
            if key in self.origins:
                return self.origins[key]
            parts.pop()
        return self.filename or "<config>"

    def get_path(self, path: str, default=None):
        node: Any = self
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def to_yaml(self) -> str:
        return yaml.safe_dump(_plain(self), sort_keys=False)

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(self.to_yaml())


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
