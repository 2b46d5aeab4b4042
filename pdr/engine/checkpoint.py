"""Checkpoints that are never half-written (temporary file, fsync, atomic rename), what a training run's
checkpoints hold, and the checks before a run continues from one."""
from __future__ import annotations

import io
import os
import pickle
import random
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from . import distributed as dist
from .optim import load_scheduler_state

# Keys whose change does not make a checkpoint belong to another experiment.
RESUMABLE_CHANGES = ("train.epochs", "train.max_steps", "train.device", "train.log_every", "data.num_workers", "eval.",
                     "train.early_stop.", "train.loggers", "train.tensorboard", "train.wandb_project")


def _umask() -> int:
    """The process's file-creation mask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically. On any error (a full disk, say) the previous file is intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide the checkpoint from the user's group
        with os.fdopen(fd, "wb") as fh:
            buffer = io.BytesIO()
            torch.save(state, buffer)
            fh.write(buffer.getbuffer())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise CheckpointError(f"could not write checkpoint {path}: {exc.strerror or exc}; the previous one is intact") from exc
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


# The first bytes of every file torch.save writes: a zip archive (since torch 1.6), else a pickle (protocol >= 2).
TORCH_FILE_STARTS = (b"PK\x03\x04", b"\x80")
_KNOWN_STARTS = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
                 b"%PDF": "a PDF document", b"\x89HDF": "an HDF5 file", b"\x93NUMPY": "a NumPy .npy array",
                 b"\x1f\x8b": "a gzip file"}


def _looks_like(head: bytes) -> str:
    """What a file whose first bytes are ``head`` appears to be, in words."""
    for start, what in _KNOWN_STARTS.items():
        if head.startswith(start):
            return f"it is {what}"
    if all(b in b"\t\n\r" or 32 <= b < 127 or b >= 0x80 for b in head):  # >= 0x80: UTF-8 beyond ASCII
        return "it is a text file (a YAML config, a log?)"
    return "it starts with " + repr(head[:4])


def read_torch_file(path: str | os.PathLike, map_location="cpu") -> Any:
    """``torch.load`` of any checkpoint (PDR's, OpenSTL's, Lightning's); a missing, truncated or corrupt
    file is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): it was truncated")
    with path.open("rb") as fh:
        head = fh.read(8)
    if not head.startswith(TORCH_FILE_STARTS):
        raise CheckpointError(f"{path} is not a checkpoint: {_looks_like(head)}, where a file of torch.save (a .pt, "
                              ".pth or .ckpt) was expected")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except ModuleNotFoundError as exc:  # a Lightning checkpoint pickles objects of its own packages
        raise CheckpointError(
            f"checkpoint {path} holds objects of the module {exc.name!r}, which is not installed: install it, or "
            f"save the weights alone where it is: torch.save(torch.load(path)['state_dict'], 'weights.pth')"
        ) from exc
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated (torch could not read it: {_first_sentence(exc)})"
        ) from exc


def _first_sentence(exc: BaseException, limit: int = 300) -> str:
    """The first sentence of an exception's message, whole (torch's go on with advice that does not apply here):
    ``PytorchStreamReader failed reading zip archive: failed finding central directory``."""
    lines = str(exc).strip().splitlines()
    text = re.split(r"(?<=[.!?])\s", lines[0], maxsplit=1)[0].rstrip(".") if lines else type(exc).__name__
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``; a missing, truncated or corrupt file is a CheckpointError."""
    state = read_torch_file(path, map_location)
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"checkpoint {path} is not a PDR checkpoint (no 'model' entry)")
    return state


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _schema_default(key: str):
    """The schema's default for a dotted key (inside a mapping default too), or "<unset>" when it has none."""
    from ..config import REQUIRED, SCHEMA, Field

    node: Any = SCHEMA
    for part in key.split("."):
        if isinstance(node, Field):
            node = node.default
        if not isinstance(node, dict) or part not in node:
            return "<unset>"
        node = node[part]
    node = node.default if isinstance(node, Field) else node
    return "<unset>" if node is REQUIRED or isinstance(node, dict) else node


def config_differences(saved: dict, current: dict, ignore=RESUMABLE_CHANGES) -> list[str]:
    """Dotted keys whose values differ between two configs, as 'key: saved -> current' lines."""
    from ..config.load import upgrade_stored

    a, b = _flatten(upgrade_stored(saved)), _flatten(upgrade_stored(current))
    lines = []
    for key in sorted(set(a) | set(b)):
        if any(key == i or (i.endswith(".") and key.startswith(i)) for i in ignore):
            continue
        if key not in a or key not in b:  # a key added to the schema since: unset means its default
            default = _schema_default(key)
            a.setdefault(key, default)
            b.setdefault(key, default)
        if a.get(key, "<unset>") != b.get(key, "<unset>"):
            lines.append(f"{key}: {a.get(key, '<unset>')!r} -> {b.get(key, '<unset>')!r}")
    return lines


def check_resume(work_dir: Path, cfg) -> dict:
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


def _rng_state() -> dict:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def _set_rng_state(rng: dict) -> None:
    torch.set_rng_state(rng["torch"].cpu())
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])


class CheckpointManager:
    """``<directory>/<name>.pt`` of a training run: the weights (and their EMA), the optimiser, schedule, gradient
    scaler and early-stopping states, the progress, the config and every random generator's state.

    ``save`` writes on the first process only (atomically) and then waits for every process; ``restore``
    puts a checkpoint's state back and returns its progress.
    """

    def __init__(self, directory: Path, cfg, model, optimizer, scheduler, scaler, ema=None, early_stop=None,
                 resolved: dict | None = None, is_main: bool = True):
        self.directory, self.cfg, self.model = Path(directory), cfg, model
        self.optimizer, self.scheduler, self.scaler = optimizer, scheduler, scaler
        self.ema, self.early_stop, self.resolved, self.is_main = ema, early_stop, resolved, is_main

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.pt"

    def state(self, progress: dict) -> dict:
        """Everything a run continues from; ``progress``: epoch, batch_in_epoch, global_step, best and history."""
        from .. import __version__

        return {
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            **progress,
            "config": dict(self.cfg),
            "rng": _rng_state(),
            "data_stats": {"mean": self.model.data_mean, "std": self.model.data_std},
            "early_stop": self.early_stop.state_dict() if self.early_stop is not None else None,
            "pdr_version": __version__,
            "resolved": self.resolved,
        }

    def save(self, name: str, progress: dict) -> Path:
        """Write ``<name>.pt`` atomically (first process only). With an EMA, ``best`` holds the EMA weights."""
        path = self.path(name)
        if self.is_main:
            state = self.state(progress)
            if name == "best" and self.ema is not None:
                state["model"] = state["ema"]
            save_checkpoint(state, path)
        dist.barrier()
        return path

    def restore(self, state: dict) -> dict:
        """Continue from ``state`` (a checkpoint ``check_resume`` accepted); returns its progress."""
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.module.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        load_scheduler_state(self.scheduler, state["scheduler"])
        if self.early_stop is not None and state.get("early_stop") is not None:
            self.early_stop.load_state_dict(state["early_stop"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        progress = {"epoch": state["epoch"], "batch_in_epoch": state["batch_in_epoch"],
                    "global_step": state["global_step"], "best": state["best"], "history": state.get("history", []),
                    "epoch_losses": state.get("epoch_losses", []),  # absent from older checkpoints
                    "since_validation": state.get("since_validation", [])}
        _set_rng_state(state["rng"])
        return progress
