"""YAML configs with ``_base_`` inheritance, ``--set`` overrides and validation.

A config file is a mapping of sections (see ``SCHEMA``). ``_base_`` names one file or a
list of files, relative to the file that names them; they are merged in order and the
file itself is merged last. Mappings merge key by key, except that a component mapping
(one with a ``name`` key) whose name changes, or a mapping with ``_delete_: true``,
replaces what it overrides. Every error names the file and the dotted key path.

What a config may hold is ``pdr.config.schema``; how it is checked, ``pdr.config.validate``.
"""
from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any, Iterable

import yaml

from ..errors import ConfigError
from .data_options import same_data_key
from .schema import SCHEMA, Config
from .validate import validate_config

log = logging.getLogger("pdr")


# ----------------------------------------------------------------------------- loading


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of sections, got {type(data).__name__}")
    return data


def _is_component(value) -> bool:
    return isinstance(value, dict) and "name" in value


def _merge(base: dict, override: dict, origins: dict, source: str, prefix: str = "") -> dict:
    out = dict(base)
    for key, value in override.items():
        path = f"{prefix}{key}"
        if prefix == "data.":  # a data key and its old names are one key: the later one replaces the earlier
            for alias in same_data_key(key) - set(override):
                out.pop(alias, None)
        old = out.get(key)
        if isinstance(value, dict) and value.get("_delete_"):
            value = {k: v for k, v in value.items() if k != "_delete_"}
            out[key] = copy.deepcopy(value)
            _mark(origins, path, value, source)
        elif isinstance(value, dict) and isinstance(old, dict) and not (
            _is_component(value) and _is_component(old) and value["name"] != old["name"]
        ):
            out[key] = _merge(old, value, origins, source, path + ".")
        elif isinstance(value, dict) and isinstance(old, str) and value.get("name", old) == old:
            # `adapter: predgs` in a base, `adapter: {num_gaussians: 8}` here: arguments for the same component
            out[key] = _merge({"name": old}, value, origins, source, path + ".")
        else:
            out[key] = copy.deepcopy(value)
            _mark(origins, path, value, source)
    return out


def _mark(origins: dict, path: str, value, source: str) -> None:
    origins[path] = source
    if isinstance(value, dict):
        for k, v in value.items():
            _mark(origins, f"{path}.{k}", v, source)


def _load_file(path: Path, origins: dict, chain: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise ConfigError(f"{chain[-1]}: _base_ inheritance forms a cycle: {cycle}")
    data = _read_yaml(path)
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a file name or a list of file names, got {bases!r}")
    merged: dict = {}
    for base in bases:
        base_path = (path.parent / base)
        if not base_path.is_file():
            raise ConfigError(f"{path}: _base_ file not found: {base} (looked in {base_path.resolve()})")
        merged = _merge(merged, _load_file(base_path, origins, (*chain, path)), origins, str(base_path.resolve()))
    return _merge(merged, data, origins, str(path))


def parse_override(text: str) -> tuple[str, Any]:
    """``"model.adapter.num_gaussians=300"`` -> ("model.adapter.num_gaussians", 300)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. train.epochs=5")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: the key must be a dotted path such as model.adapter.num_gaussians")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML: {exc}") from exc
    return key, value


def apply_override(data: dict, key: str, value, origins: dict) -> None:
    node = data
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if isinstance(child, str):  # `adapter: predgs` -> {name: predgs} so that its arguments can be set
            child = node[part] = {"name": child}
        elif child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {'.'.join(parts[: i + 1])} is a {type(child).__name__}, not a section")
        node = child
    prefix = key[: -len(parts[-1])]
    if parts[-1] == "name" and isinstance(node.get("name"), str) and value != node["name"]:
        _drop_arguments_of_replaced(node, prefix[:-1], value, origins)
    merged = _merge(node, {parts[-1]: value}, origins, "--set", prefix)  # same rules as a file's override
    node.clear()  # the merge may also drop a key's old name (data.size for data.image_size)
    node.update(merged)
    origins[key] = "--set"


def _drop_arguments_of_replaced(node: dict, where: str, new_name, origins: dict) -> None:
    """``--set loss.name=mse`` where the loss was ``l1_ssim``: the arguments of the old component that the new
    one does not take (``lam``) are dropped with a note, as a file's ``loss: {name: mse}`` replaces the whole
    mapping. Arguments given with ``--set`` stay (a wrong one is then reported), as does anything of a
    component whose arguments are not known here (an unknown name, ``**kwargs``)."""
    from ..registry import RegistryError
    from .validate import component_arguments

    try:
        accepted = component_arguments(where, new_name)
    except (KeyError, RegistryError):  # not a component, or a name that validation will report
        return
    if accepted is None:
        return
    dropped = []
    for key in [k for k in node if k != "name" and origins.get(f"{where}.{k}") != "--set"]:
        keep = key in accepted
        if key == "warmup" and where == "loss":  # the loss's own option: kept when the new loss has what it ramps
            start = node[key].get("start") if isinstance(node[key], dict) else None
            keep = not isinstance(start, dict) or set(start) <= set(accepted)
        if not keep:
            dropped.append(f"{key}={_flow_value(node.pop(key))}")
    if dropped:
        log.warning("--set %s.name=%s replaces %s %r: dropped %s, which %r does not take", where, new_name,
                    where.split(".")[-1], node["name"], ", ".join(dropped), new_name)


def _flow_value(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...").strip()


def load_config(path: str | os.PathLike, overrides: Iterable[str] = (), validate: bool = True) -> Config:
    """Load ``path`` with its bases, apply ``--set`` overrides, fill defaults and validate.

    A ``path`` that does not exist but names a shipped config (``configs/demo/simvp.yaml``) loads that one.
    """
    from ..resources import find_config

    path = find_config(path)
    origins: dict[str, str] = {}
    data = _load_file(path, origins)
    for text in overrides:
        key, value = parse_override(text)
        apply_override(data, key, value, origins)
    cfg = Config(data, filename=str(path), origins=origins)
    if validate:
        cfg = validate_config(cfg)
    return cfg


def upgrade_stored(data: dict) -> dict:
    """A resolved config that an earlier version stored (a checkpoint's copy) in today's form: ``optim.momentum``
    was filled with 0.9 for every optimiser, where only sgd uses it (and takes 0.9 when it is null)."""
    optim = data.get("optim")
    if isinstance(optim, dict) and "momentum" in optim and (optim.get("name") != "sgd" or optim["momentum"] == 0.9):
        data = {**data, "optim": {k: v for k, v in optim.items() if k != "momentum"}}
    return data


def config_from_dict(data: dict, validate: bool = True, overrides: Iterable[str] = (),
                     filename: str = "<dict>") -> Config:
    """A Config from a resolved mapping (a checkpoint's copy, say), with ``--set`` overrides applied."""
    data, origins = copy.deepcopy(upgrade_stored(data)), {}
    for text in overrides:
        key, value = parse_override(text)
        apply_override(data, key, value, origins)
    cfg = Config(data, filename=filename, origins=origins)
    return validate_config(cfg) if validate else cfg


def dataset_kwargs(cfg: Config) -> dict:
    """The data section's keys that go to the dataset class itself."""
    return {k: v for k, v in cfg["data"].items() if k not in SCHEMA["data"]}


def component_kwargs(section: dict | None) -> dict:
    return {} if section is None else {k: v for k, v in section.items() if k != "name"}
