"""The arm sets ``--arms`` names: a built-in set or a YAML file of arms."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..config import load_config
from ..errors import ConfigError
from .arms import BUILTIN_ARM_SETS, Arm, arms_from_file, paper_arms
from .finetune import finetune_arms


def resolve_arms(spec: str, config: str | Path, overrides: Sequence[str] = (),
                 adapter_overrides: Sequence[str] = ()) -> list[Arm]:
    """The arms ``--arms`` names: a built-in set (``paper``; ``finetune``, ``pdr.compare.finetune``) for this base
    config, or a YAML file of arms."""
    if spec == "paper":
        return paper_arms(load_config(config, overrides), adapter_overrides)
    if spec == "finetune":
        return finetune_arms(load_config(config, overrides), adapter_overrides)
    if spec.endswith((".yaml", ".yml")) or Path(spec).is_file():
        return arms_from_file(spec)
    raise ConfigError(f"--arms {spec!r}: not a built-in arm set ({', '.join(BUILTIN_ARM_SETS)}) nor a YAML file")
