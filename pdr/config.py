"""YAML configs with ``_base_`` inheritance, ``--set`` overrides and validation.

A config file is a mapping of sections (see ``SCHEMA``). ``_base_`` names one file or a
list of files, relative to the file that names them; they are merged in order and the
file itself is merged last. Mappings merge key by key, except that a component mapping
(one with a ``name`` key) whose name changes, or a mapping with ``_delete_: true``,
replaces what it overrides. Every error names the file and the dotted key path.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from .errors import ConfigError
from .registry import ADAPTERS, BACKBONES, DATASETS, LOSSES, RegistryError, closest_hint, import_modules

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

SCHEMA: dict[str, Any] = {
    "imports": _f(list, [], help="modules to import first (they may register backbones, datasets, ...)"),
    "model": {
        "backbone": _f(COMPONENT, help="a backbone name or {name: ..., <its arguments>}"),
        "adapter": _f((COMPONENT, NONE), None, help="null, an adapter name (`predgs`) or {name: predgs, ...}"),
        "init_from": _f((str, NONE), None, help="load the backbone's weights before training: a PDR run folder or "
                        "checkpoint, or an OpenSTL .pth/.ckpt"),
        "init_strict": _f(bool, True, help="init_from: every key must fit (false: load what fits, log the rest)"),
        "freeze_backbone": _f(bool, False, help="train only the adapter"),
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
        "weight_decay": _f(float, 1e-2),
        "betas": _f(list, [0.9, 0.999]),
        "momentum": _f(float, 0.9),
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
        "val_every": _f(int, 1, help="validate every this many epochs"),
        "max_val_batches": _f((int, NONE), None),
        "deterministic": _f(bool, False),
        "monitor": _f(str, "val/mse", help="validation value that picks the best checkpoint (its direction comes from "
                      "pdr.metrics; one per benchmark, docs/datasets.md)"),
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

# Arguments that build_model / the data module pass themselves; a config must not set them.
_COMPONENT_REGISTRIES = {
    "model.backbone": (BACKBONES, ("in_shape", "out_frames")),
    "model.adapter": (ADAPTERS, ("frame_shape", "feature_channels")),
    "loss": (LOSSES, ()),
}
_DATA_OWN_KEYS = ("split", "in_frames", "out_frames")


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
    merged = _merge(node, {parts[-1]: value}, origins, "--set", prefix)  # same rules as a file's override
    node[parts[-1]] = merged[parts[-1]]
    origins[key] = "--set"


def load_config(path: str | os.PathLike, overrides: Iterable[str] = (), validate: bool = True) -> Config:
    """Load ``path`` with its bases, apply ``--set`` overrides, fill defaults and validate.

    A ``path`` that does not exist but names a shipped config (``configs/demo/simvp.yaml``) loads that one.
    """
    from .resources import find_config

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


def config_from_dict(data: dict, validate: bool = True, overrides: Iterable[str] = (),
                     filename: str = "<dict>") -> Config:
    """A Config from a resolved mapping (a checkpoint's copy, say), with ``--set`` overrides applied."""
    data, origins = copy.deepcopy(data), {}
    for text in overrides:
        key, value = parse_override(text)
        apply_override(data, key, value, origins)
    cfg = Config(data, filename=filename, origins=origins)
    return validate_config(cfg) if validate else cfg


# ----------------------------------------------------------------------------- validation


def _type_name(types: tuple) -> str:
    names = {int: "int", float: "float", str: "str", bool: "bool", list: "list", dict: "mapping", NONE: "null"}
    return " or ".join(names.get(t, str(t)) for t in types)


def _coerce(value, field: Field, where: str, cfg: Config):
    types = field.types
    if COMPONENT in types:
        if value is None and NONE in types:
            return None
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict):
            if "name" not in value or not isinstance(value["name"], str):
                raise ConfigError(f"{cfg.origin(where)}: {where}.name: missing; a component mapping needs a `name`")
            return dict(value)
        raise ConfigError(
            f"{cfg.origin(where)}: {where}: expected a name or a mapping with `name`, got {type(value).__name__} {value!r}"
        )
    if value is None and NONE in types:
        return None
    if bool in types and isinstance(value, bool):
        return value
    if int in types and isinstance(value, int) and not isinstance(value, bool):
        return value
    if float in types and not isinstance(value, bool):
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            try:
                return float(value)
            except ValueError:
                pass
    if str in types and isinstance(value, str):
        if field.choices and value not in field.choices:
            raise ConfigError(f"{cfg.origin(where)}: {where}: expected one of {list(field.choices)}, got {value!r}")
        return value
    if list in types and isinstance(value, (list, tuple)):
        return list(value)
    raise ConfigError(f"{cfg.origin(where)}: {where}: expected {_type_name(types)}, got {type(value).__name__} {value!r}")


def _unknown_key(cfg: Config, where: str, key: str, known: Iterable[str]):
    known = list(known)
    hint = closest_hint(key, known)
    path = f"{where}.{key}" if where else key
    raise ConfigError(f"{cfg.origin(path)}: {path}: unknown key.{hint} Known keys: {', '.join(known)}")


def _validate_section(cfg: Config, data: dict, schema: dict, where: str, open_keys: bool = False) -> dict:
    out = {}
    for key, value in data.items():
        if key not in schema:
            if open_keys:
                out[key] = value
                continue
            _unknown_key(cfg, where, key, schema)
    for key, spec in schema.items():
        path = f"{where}.{key}" if where else key
        if isinstance(spec, dict):
            value = data.get(key, {})
            if not isinstance(value, dict):
                raise ConfigError(f"{cfg.origin(path)}: {path}: expected a mapping (a section), got {type(value).__name__}")
            out[key] = _validate_section(cfg, value, spec, path, open_keys=(path == "data"))
            continue
        if key in data:
            out[key] = _coerce(data[key], spec, path, cfg)
        elif spec.default is REQUIRED:
            raise ConfigError(f"{cfg.filename}: {path}: missing required value ({spec.help or _type_name(spec.types)})")
        else:
            out[key] = copy.deepcopy(spec.default)
            if COMPONENT in spec.types and isinstance(out[key], str):
                out[key] = {"name": out[key]}
    return out


def _check_component(cfg: Config, where: str, section: dict | None) -> None:
    if section is None:
        return
    registry, own = _COMPONENT_REGISTRIES[where]
    name = section["name"]
    try:
        registry.get(name)
    except RegistryError as exc:
        raise ConfigError(f"{cfg.origin(where + '.name')}: {where}.name: {exc}") from None
    kwargs = {k: v for k, v in section.items() if k != "name"}
    for key in own:
        if key in kwargs:
            raise ConfigError(f"{cfg.origin(where + '.' + key)}: {where}.{key}: set by pdr itself from the data section; remove it")
    try:
        section.update(registry.check_kwargs(name, kwargs, where, provided=own))
    except ConfigError as exc:
        raise ConfigError(f"{cfg.origin(getattr(exc, 'key', where))}: {exc}") from None


def _check_metric_names(cfg: Config) -> None:
    """train.monitor must be a value that validation logs, eval.metrics registered metrics (pdr.metrics)."""
    from . import metrics

    allowed = metrics.monitor_names()
    for key in ("train.monitor", "train.early_stop.monitor"):
        monitor = cfg.get_path(key)
        if monitor is not None and monitor not in allowed:
            hint = closest_hint(monitor, allowed, cutoff=0.5)
            raise ConfigError(f"{cfg.origin(key)}: {key}: {monitor!r} is not a value that validation "
                              f"logs.{hint} Valid: {', '.join(allowed)}")
    for name in cfg["eval"]["metrics"]:
        if name not in metrics.AVAILABLE:
            raise ConfigError(f"{cfg.origin('eval.metrics')}: eval.metrics: "
                              f"{metrics.unknown_metric_message(name, metrics.AVAILABLE)}")


def _check_loggers_and_early_stop(cfg: Config) -> None:
    from .engine.loggers import LOGGERS

    train = cfg["train"]
    for name in train["loggers"] or []:
        if name not in LOGGERS:
            hint = closest_hint(str(name), LOGGERS)
            raise ConfigError(f"{cfg.origin('train.loggers')}: train.loggers: unknown logger {name!r}.{hint} "
                              f"Known: {', '.join(LOGGERS)}")
    if train["loggers"] is not None and "tensorboard" in train["loggers"] and not train["tensorboard"]:
        raise ConfigError(f"{cfg.origin('train.tensorboard')}: train.tensorboard: false, but train.loggers "
                          f"({cfg.origin('train.loggers')}) names tensorboard; keep one of the two")
    stop = train["early_stop"]
    if stop["patience"] is not None and stop["patience"] < 1:
        raise ConfigError(f"{cfg.origin('train.early_stop.patience')}: train.early_stop.patience: must be >= 1 "
                          f"(validations without improvement), or null to turn early stopping off; got {stop['patience']}")
    if stop["min_delta"] < 0:
        raise ConfigError(f"{cfg.origin('train.early_stop.min_delta')}: train.early_stop.min_delta: must be >= 0, "
                          f"got {stop['min_delta']}")


def validate_config(cfg: Config) -> Config:
    """Fill defaults, coerce types and check every key; return a new Config."""
    out = _validate_section(cfg, dict(cfg), SCHEMA, "")
    resolved = Config(out, filename=cfg.filename, origins=cfg.origins)
    import_modules(resolved["imports"], where=f"{cfg.origin('imports')}: imports")
    _check_component(resolved, "model.backbone", resolved["model"]["backbone"])
    _check_component(resolved, "model.adapter", resolved["model"]["adapter"])
    _check_component(resolved, "loss", resolved["loss"])

    data = resolved["data"]
    try:
        DATASETS.get(data["name"])
    except RegistryError as exc:
        raise ConfigError(f"{resolved.origin('data.name')}: data.name: {exc}") from None
    extra = {k: v for k, v in data.items() if k not in SCHEMA["data"]}
    for key in _DATA_OWN_KEYS:
        if key in extra:
            raise ConfigError(f"{resolved.origin('data.' + key)}: data.{key}: set by pdr itself; remove it")
    try:
        data.update(DATASETS.check_kwargs(data["name"], extra, "data", provided=_DATA_OWN_KEYS))
    except ConfigError as exc:
        raise ConfigError(f"{resolved.origin(getattr(exc, 'key', 'data'))}: {exc}") from None
    for key in ("in_frames", "out_frames", "batch_size"):
        if data[key] < 1:
            raise ConfigError(f"{resolved.origin('data.' + key)}: data.{key}: must be >= 1, got {data[key]}")
    train = resolved["train"]
    if train["epochs"] is None and train["max_steps"] is None:
        raise ConfigError(f"{resolved.origin('train')}: train: set train.epochs or train.max_steps (the budget)")
    _check_metric_names(resolved)
    _check_loggers_and_early_stop(resolved)
    if resolved["model"]["freeze_backbone"] and resolved["model"]["adapter"] is None:
        raise ConfigError(f"{resolved.origin('model.freeze_backbone')}: model.freeze_backbone: true trains only the "
                          "adapter, but model.adapter is null; set an adapter or freeze_backbone: false")
    return resolved


def dataset_kwargs(cfg: Config) -> dict:
    """The data section's keys that go to the dataset class itself."""
    return {k: v for k, v in cfg["data"].items() if k not in SCHEMA["data"]}


def component_kwargs(section: dict | None) -> dict:
    return {} if section is None else {k: v for k, v in section.items() if k != "name"}
