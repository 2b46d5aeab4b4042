"""Where a run executes and how its random numbers start: the device and the seeds."""
from __future__ import annotations

import random

import numpy as np
import torch

from .errors import PDRError


def resolve_device(name: str) -> torch.device:
    """``"auto"`` (CUDA when torch sees it, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``... as a torch device;
    asking for CUDA where there is none is a PDRError that says what to pass instead."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PDRError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu or auto")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python's, NumPy's and torch's generators; ``deterministic`` also asks torch for deterministic
    kernels (a warning, not an error, where one has none)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
