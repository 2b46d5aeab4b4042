"""The arms of a comparison (``pdr.compare``): what an arm is, the paper's ablation arms (``paper``), arms from a
YAML file, and the checks every arm passes (a folder-safe, unique name; no override of ``SHARED_KEYS``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import yaml

from ..config import Config, load_config, parse_override
from ..errors import ConfigError
from ..model import data_shape

BUILTIN_ARM_SETS = ("paper", "finetune")
# Keys (and their sub-keys) that every arm takes from the base config: an arm may not set them.
SHARED_KEYS = ("data", "train.seed", "train.epochs", "train.max_steps", "train.accumulate_steps", "train.monitor",
               "train.deterministic", "train.max_val_batches", "train.val_every", "train.val_every_steps", "eval")
# PredGS settings of the paper arms when the base config has no adapter, by the larger frame side: those of
# the benchmark configs (configs/*/simvp_predgs.yaml); pool brings every frame to 16x16 before the heads.
DEFAULT_PREDGS = {
    32: {"name": "predgs", "num_gaussians": 300, "kernel_size": 15, "pool": 2, "hidden": 128},
    64: {"name": "predgs", "num_gaussians": 400, "kernel_size": 15, "pool": 4, "hidden": 128},
    128: {"name": "predgs", "num_gaussians": 400, "kernel_size": 51, "pool": 8, "hidden": 128},
    256: {"name": "predgs", "num_gaussians": 400, "kernel_size": 51, "pool": 16, "hidden": 128},
}
PAPER_L1_SSIM = {"name": "l1_ssim", "lam": 0.5}
_ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class Arm:
    """One variant: ``name`` (its run folder and table row), its ``--set`` overrides, what it is in words."""

    name: str
    overrides: tuple[str, ...] = ()
    description: str = ""


def _flow(value) -> str:
    """A value as one line of YAML, for a ``KEY=VALUE`` override."""
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6).strip()


def paper_adapter(cfg: Config, adapter_overrides: Sequence[str] = ()) -> dict:
    """PredGS settings of the paper arms: the base config's adapter, else ``DEFAULT_PREDGS`` for its frame size;
    ``adapter_overrides`` (``KEY=VALUE`` such as ``pool=4``) change single settings of either."""
    spec = cfg["model"].get("adapter")
    if spec is None:
        c, h, w = data_shape(cfg)
        if max(h, w) not in DEFAULT_PREDGS and not adapter_overrides:
            raise ConfigError(
                f"{cfg.filename}: the paper arms need PredGS settings: the base config has no model.adapter and there "
                f"is no default for {h}x{w} frames (defaults for sides {sorted(DEFAULT_PREDGS)}); give them with "
                "--adapter KEY=VALUE ..., e.g. --adapter num_gaussians=400 kernel_size=15 pool=4 hidden=128"
            )
        spec = DEFAULT_PREDGS.get(max(h, w), {"name": "predgs"})
    spec = dict(spec)
    for text in adapter_overrides:
        key, value = parse_override(text)
        if "." in key:
            raise ConfigError(f"--adapter {text!r}: expected a PredGS argument such as pool=4, not a dotted key")
        spec[key] = value
    return spec


def paper_arms(cfg: Config, adapter_overrides: Sequence[str] = ()) -> list[Arm]:
    """The paper's ablation: backbone + MSE, + L1/SSIM, + PredGS + L1/SSIM, + PredGS + MSE.

    L1/SSIM is the base config's ``l1_ssim`` loss when it has one, else ``PAPER_L1_SSIM``; PredGS as
    ``paper_adapter``."""
    backbone = cfg["model"]["backbone"]["name"]
    adapter = _flow(paper_adapter(cfg, adapter_overrides))
    l1_ssim = _flow(cfg["loss"] if cfg["loss"]["name"] == "l1_ssim" else PAPER_L1_SSIM)
    mse = _flow({"name": "mse"})
    return [
        Arm("mse", ("model.adapter=null", f"loss={mse}"), f"{backbone} + MSE"),
        Arm("l1_ssim", ("model.adapter=null", f"loss={l1_ssim}"), f"{backbone} + L1/SSIM"),
        Arm("predgs_l1_ssim", (f"model.adapter={adapter}", f"loss={l1_ssim}"), f"{backbone} + PredGS + L1/SSIM"),
        Arm("predgs_mse", (f"model.adapter={adapter}", f"loss={mse}"), f"{backbone} + PredGS + MSE"),
    ]


def arms_from_file(path: str | Path) -> list[Arm]:
    """Arms from a YAML mapping ``{arm name: [KEY=VALUE, ...]}`` or ``{arm name: {set: [...], description: ...}}``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--arms {path}: no such file (built-in arm sets: {', '.join(BUILTIN_ARM_SETS)})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: expected a mapping of arm names to lists of KEY=VALUE overrides")
    arms = []
    for name, spec in data.items():
        description = ""
        if isinstance(spec, dict):
            unknown = set(spec) - {"set", "description"}
            if unknown:
                raise ConfigError(f"{path}: arm {name!r}: unknown keys {sorted(unknown)} (expected set, description)")
            description, spec = str(spec.get("description", "")), spec.get("set", [])
        if spec is None:
            spec = []
        if not isinstance(spec, list) or not all(isinstance(s, str) for s in spec):
            raise ConfigError(f"{path}: arm {name!r}: expected a list of KEY=VALUE strings, got {spec!r}")
        arms.append(Arm(str(name), tuple(spec), description))
    return arms


def _check_arms(arms: Sequence[Arm]) -> None:
    if not arms:
        raise ConfigError("no arms to compare: give --arms paper, --arms FILE.yaml or --arm NAME KEY=VALUE ...")
    seen = set()
    for arm in arms:
        if not _ARM_NAME.match(arm.name):
            raise ConfigError(f"arm {arm.name!r}: a name is a folder name: letters, digits and _ . + - only")
        if arm.name in seen:
            raise ConfigError(f"arm {arm.name!r} is given twice; arm names must be unique")
        seen.add(arm.name)
        for text in arm.overrides:
            key, _ = parse_override(text)
            for shared in SHARED_KEYS:
                if key == shared or key.startswith(shared + ".") or shared.startswith(key + "."):
                    raise ConfigError(
                        f"arm {arm.name!r}: --set {text!r}: {shared} is shared by every arm (data, seed, budget and "
                        "checkpoint rule keep the comparison fair); set it with --set for all arms instead"
                    )

