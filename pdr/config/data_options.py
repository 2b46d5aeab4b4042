"""One vocabulary for the data options of every dataset.

* ``image_size``: the frame size (one int, or [H, W] where the dataset allows it). Older names are still read,
  with a deprecation note: ``size`` (bouncing_sprites, advected_fields) and ``img_size`` (clevrer). When configs
  are merged, a name and its old names are one key: the one set later (a file over its ``_base_``, ``--set``
  over the files) wins; one mapping setting both is an error.
* ``num_train``, ``num_val``, ``num_test``: sequences per split. Generated datasets take them as arguments (how
  many to generate); every other dataset accepts them too, and ``pdr.data`` keeps the first ``num_<split>``
  sequences of the split (all when unset or null).
"""
from __future__ import annotations

import logging

from ..arg_types import signature
from ..errors import ConfigError
from ..registry import DATASETS
from .schema import Config

log = logging.getLogger("pdr")

DATA_RENAMED = {"size": "image_size", "img_size": "image_size"}  # old name -> the one name
SPLIT_COUNTS = ("num_train", "num_val", "num_test")
_noted: set[tuple[str, str]] = set()  # (origin, key) already given a deprecation note in this process


def same_data_key(key: str) -> set[str]:
    """``key`` and its other names (``image_size``, ``size``, ``img_size``), for merging configs."""
    new = DATA_RENAMED.get(key, key)
    return {new, *(old for old, renamed in DATA_RENAMED.items() if renamed == new)}


def dataset_takes(name: str, key: str) -> bool:
    """Whether dataset ``name``'s constructor has an argument ``key``."""
    return key in signature(DATASETS.get(name)).parameters


def rename_deprecated_data_keys(cfg: Config) -> None:
    """``data.size: 32`` -> ``data.image_size: 32`` (and the other ``DATA_RENAMED``), with a note naming the file;
    only where the dataset takes the new name and not the old one. Both names at once are an error."""
    data = cfg["data"]
    for old, new in DATA_RENAMED.items():
        if old not in data or dataset_takes(data["name"], old) or not dataset_takes(data["name"], new):
            continue
        origin = cfg.origin(f"data.{old}")
        if new in data:
            raise ConfigError(f"{origin}: data.{old} and data.{new} ({cfg.origin(f'data.{new}')}) are both set; "
                              f"data.{old} is the old name of data.{new}: keep data.{new} alone")
        data[new] = data.pop(old)
        cfg.origins[f"data.{new}"] = origin
        if (origin, old) not in _noted:
            _noted.add((origin, old))
            log.warning("%s: data.%s is deprecated, read as data.%s (the frame size has that name for every "
                        "dataset); rename it", origin, old, new)


def check_split_counts(cfg: Config, extra: dict) -> dict:
    """``extra`` (the data keys for the dataset) without the split counts its dataset does not take itself, after
    checking them: each null or an int >= 0."""
    name = cfg["data"]["name"]
    rest = dict(extra)
    for key in SPLIT_COUNTS:
        if key not in rest or dataset_takes(name, key):
            continue
        value = rest.pop(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ConfigError(f"{cfg.origin(f'data.{key}')}: data.{key}: expected an int >= 0 (use at most this "
                              f"many sequences of the split) or null (all of them), got {value!r}")
    return rest
