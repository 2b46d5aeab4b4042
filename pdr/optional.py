"""Imports of the format-specific dependencies that are extras of the distribution (pyproject.toml)."""
from __future__ import annotations

import importlib

from .errors import PDRError

DISTRIBUTION = "pdr-predgs"


class MissingDependencyError(PDRError, ImportError):
    """A module of an extra is not installed; the message names the extra to install."""


def require(module: str, extra: str, purpose: str):
    """``import module``, or a MissingDependencyError that says which extra provides it.

    ``require("h5py", "taxibj", "reading TaxiBJ's h5 files")`` -> the h5py module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs the Python module {module!r}, which is not installed: "
            f"pip install '{DISTRIBUTION}[{extra}]' (or '{DISTRIBUTION}[all]')"
        ) from exc
