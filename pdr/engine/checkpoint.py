"""Checkpoints that are never half-written: temporary file, fsync, atomic rename."""
from __future__ import annotations

import io
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError

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


def read_torch_file(path: str | os.PathLike, map_location="cpu") -> Any:
    """``torch.load`` of any checkpoint (PDR's, OpenSTL's, Lightning's); a missing, truncated or corrupt
    file is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): it was truncated")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except ModuleNotFoundError as exc:  # a Lightning checkpoint pickles objects of its own packages
        raise CheckpointError(
            f"checkpoint {path} holds objects of the module {exc.name!r}, which is not installed: install it, or "
            f"save the weights alone where it is: torch.save(torch.load(path)['state_dict'], 'weights.pth')"
        ) from exc
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        ) from exc


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
    a, b = _flatten(saved), _flatten(current)
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
