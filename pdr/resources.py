"""Files that ship with PDR: the configs, found in an installed copy or in a source checkout.

An installed copy holds them as package data (``pdr/configs``, mapped from ``configs/`` by pyproject.toml);
a checkout has ``configs/`` beside ``pdr/``.
"""
from __future__ import annotations

from pathlib import Path

from .errors import ConfigError

PACKAGE = Path(__file__).resolve().parent


def config_dir() -> Path:
    """The folder of PDR's configs (``configs/_base_``, ``configs/<benchmark>/...``)."""
    installed = PACKAGE / "configs"
    return installed if installed.is_dir() else PACKAGE.parent / "configs"


def find_config(path: str | Path) -> Path:
    """A config file: ``path`` itself when it exists, else the shipped config it names.

    ``configs/demo/simvp.yaml`` (as the README writes it) and ``demo/simvp.yaml`` both name a shipped
    config, so the same command works in a checkout and with an installed copy from any folder.
    """
    path = Path(path)
    if path.is_file():
        return path
    parts = path.parts[1:] if path.parts[:1] == ("configs",) else path.parts
    shipped = config_dir().joinpath(*parts) if parts and not path.is_absolute() else None
    if shipped is not None and shipped.is_file():
        return shipped
    raise ConfigError(f"config file not found: {path}" + (f" (nor {shipped})" if shipped is not None else ""))
