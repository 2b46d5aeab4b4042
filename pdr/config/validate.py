"""Config validation: fill ``SCHEMA`` defaults, coerce types, and check every key, registry name and
component argument; each error names the file that set the key and its dotted path."""
from __future__ import annotations

import copy
import re
from typing import Iterable

from ..arg_types import signature
from ..errors import ConfigError
from ..registry import ADAPTERS, BACKBONES, DATASETS, LOSSES, RegistryError, closest_hint, import_modules
from .data_options import check_split_counts, rename_deprecated_data_keys
from .schema import COMPONENT, LOGGERS, NONE, REQUIRED, SCHEMA, Config, Field

# Arguments that build_model / the data module pass themselves; a config must not set them.
_COMPONENT_REGISTRIES = {
    "model.backbone": (BACKBONES, ("in_shape", "out_frames")),
    "model.adapter": (ADAPTERS, ("frame_shape", "feature_channels")),
    "loss": (LOSSES, ()),
}
_DATA_OWN_KEYS = ("split", "in_frames", "out_frames")
_MONITOR_KEYS = ("train.monitor", "train.early_stop.monitor")


def component_arguments(where: str, name: str) -> list[str] | None:
    """The arguments a config may give the component ``name`` at ``where`` (``loss``, ``model.backbone``,
    ``model.adapter``); None when it takes any. KeyError for another ``where``, RegistryError for an unknown name."""
    registry, own = _COMPONENT_REGISTRIES[where]
    return registry.argument_names(name, own)


def component_error(cfg: Config, where: str, message: str) -> ConfigError:
    """The constructor of the component at ``where`` (``model.backbone``, ``model.adapter``) refused its
    arguments with ``message``: an error that names where the value at fault was set (the argument the message
    names, else the component), and the ``--set`` values that shaped the data's frames the component was built for."""
    section = cfg.get_path(where) or {}
    named = [k for k in section if k != "name" and re.search(rf"\b{re.escape(str(k))}\b", message)]
    named.sort(key=lambda k: cfg.origin(f"{where}.{k}") != "--set")  # a value given on the command line first
    key = f"{where}.{named[0]}" if named else where
    return ConfigError(f"{cfg.origin(key)}: {where} ({section.get('name')}): {message}{frames_set_note(cfg, key)}")


def frames_set_note(cfg: Config, key: str) -> str:
    """`` (the data's frames come from --set data.size=30)`` when ``--set`` values other than ``key`` shaped the
    data's frames, else an empty string."""
    frame_keys = ["data.in_frames", "data.out_frames"]
    try:
        params = signature(DATASETS.get(cfg["data"]["name"]).frame_shape).parameters
        frame_keys += [f"data.{n}" for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD or p.kind is p.KEYWORD_ONLY]
    except RegistryError:
        pass
    given = [f"{k}={cfg.get_path(k)}" for k in frame_keys if cfg.origins.get(k) == "--set" and k != key]
    return f" (the data's frames come from --set {' '.join(given)})" if given else ""


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


def _check_loss(cfg: Config) -> None:
    """The loss's name and arguments, and its optional ``warmup`` (``pdr.losses.LossWarmup``)."""
    from ..losses import build_loss

    section = cfg["loss"]
    warmup = section.pop("warmup", None)
    _check_component(cfg, "loss", section)
    if isinstance(warmup, dict) and isinstance(warmup.get("start"), dict):  # the names and "20" -> 20.0
        try:
            warmup = {**warmup, "start": LOSSES.check_kwargs(section["name"], warmup["start"], "loss.warmup.start")}
        except ConfigError as exc:
            raise ConfigError(f"{cfg.origin('loss.warmup')}: {exc}") from None
    if warmup is not None:
        section["warmup"] = warmup
    try:  # the warm-up's shape and the loss's own checks (ranges), with the file named
        build_loss(section)
    except ValueError as exc:
        where = "loss.warmup" if str(exc).startswith("loss.warmup") else "loss"
        prefix = "" if where == "loss.warmup" else "loss: "
        raise ConfigError(f"{cfg.origin(where)}: {prefix}{exc}") from None
    if warmup is None:
        return
    for key in _MONITOR_KEYS:
        if cfg.get_path(key) in ("val/loss", "train/loss"):
            raise ConfigError(f"{cfg.origin(key)}: {key}: {cfg.get_path(key)} changes meaning along loss.warmup "
                              f"({cfg.origin('loss.warmup')}); monitor a metric such as val/mse")


def _check_metric_names(cfg: Config) -> None:
    """train.monitor must be a value that validation logs, eval.metrics registered metrics (pdr.metrics)."""
    from .. import metrics

    allowed = metrics.monitor_names()
    for key in _MONITOR_KEYS:
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


# Numbers of the schema with a valid range: (dotted key, test, the range in words). null passes (where allowed).
_RANGES = (
    *((f"data.{k}", lambda v: v >= 1, ">= 1") for k in ("in_frames", "out_frames", "batch_size", "eval_batch_size")),
    ("data.num_workers", lambda v: v >= 0, ">= 0"),
    ("optim.lr", lambda v: v > 0, "> 0"),
    ("optim.adapter_lr_scale", lambda v: v > 0, "> 0"),
    ("optim.weight_decay", lambda v: v >= 0, ">= 0"),
    ("optim.momentum", lambda v: v >= 0, ">= 0"),
    ("optim.grad_clip", lambda v: v > 0, "> 0 (the largest gradient norm), or null for no clipping"),
    ("schedule.warmup_steps", lambda v: v >= 0, ">= 0"),
    ("schedule.min_lr_ratio", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("schedule.pct_start", lambda v: 0 < v < 1, "in (0, 1) (the share of the steps that raise the rate)"),
    *((f"train.{k}", lambda v: v >= 1, ">= 1") for k in (
        "epochs", "max_steps", "accumulate_steps", "log_every", "val_every", "val_every_steps", "max_val_batches",
        "save_every", "max_nonfinite_steps")),
    ("train.monitor_after", lambda v: v >= 0, ">= 0"),
    ("eval.num_vis", lambda v: v >= 0, ">= 0"),
    ("eval.max_batches", lambda v: v >= 1, ">= 1"),
    ("eval.num_samples", lambda v: v >= 1, ">= 1"),
)


def _check_ranges(cfg: Config) -> None:
    for key, test, expected in _RANGES:
        value = cfg.get_path(key)
        if value is not None and not test(value):
            raise ConfigError(f"{cfg.origin(key)}: {key}: must be {expected}, got {value}")


def _check_validation_unit(cfg: Config) -> None:
    """Validation counts epochs (``val_every``) or steps (``val_every_steps``), not both: a ``val_every`` other
    than its default next to ``val_every_steps`` would be ignored."""
    t = cfg["train"]
    if t["val_every_steps"] is not None and t["val_every"] != SCHEMA["train"]["val_every"].default:
        raise ConfigError(f"{cfg.origin('train.val_every')}: train.val_every: {t['val_every']} and "
                          f"train.val_every_steps: {t['val_every_steps']} ({cfg.origin('train.val_every_steps')}) are "
                          "both set; validation counts epochs (val_every) or optimiser steps (val_every_steps), not "
                          "both: remove one")


def _check_optimizer(cfg: Config) -> None:
    """What torch would refuse only when training starts: betas, and a momentum that the optimiser does not use."""
    o = cfg["optim"]
    betas = o["betas"]
    if len(betas) != 2 or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas):
        raise ConfigError(f"{cfg.origin('optim.betas')}: optim.betas: expected two numbers in [0, 1), e.g. [0.9, 0.999]; "
                          f"got {betas!r}")
    o["betas"] = [float(b) for b in betas]
    if o["momentum"] is not None and o["name"] != "sgd":
        raise ConfigError(f"{cfg.origin('optim.momentum')}: optim.momentum: only sgd uses it; {o['name']}'s momentum "
                          "is optim.betas[0]. Remove optim.momentum or set optim.name: sgd")


def validate_config(cfg: Config) -> Config:
    """Fill defaults, coerce types and check every key; return a new Config."""
    out = _validate_section(cfg, dict(cfg), SCHEMA, "")
    resolved = Config(out, filename=cfg.filename, origins=cfg.origins)
    import_modules(resolved["imports"], where=f"{cfg.origin('imports')}: imports")
    _check_component(resolved, "model.backbone", resolved["model"]["backbone"])
    _check_component(resolved, "model.adapter", resolved["model"]["adapter"])
    _check_loss(resolved)

    data = resolved["data"]
    try:
        DATASETS.get(data["name"])
    except RegistryError as exc:
        raise ConfigError(f"{resolved.origin('data.name')}: data.name: {exc}") from None
    rename_deprecated_data_keys(resolved)
    extra = {k: v for k, v in data.items() if k not in SCHEMA["data"]}
    for key in _DATA_OWN_KEYS:
        if key in extra:
            raise ConfigError(f"{resolved.origin('data.' + key)}: data.{key}: set by pdr itself; remove it")
    dataset_keys = check_split_counts(resolved, extra)  # its errors name where the key was set already
    try:
        data.update(DATASETS.check_kwargs(data["name"], dataset_keys, "data", provided=_DATA_OWN_KEYS))
    except ConfigError as exc:
        raise ConfigError(f"{resolved.origin(getattr(exc, 'key', 'data'))}: {exc}") from None
    train = resolved["train"]
    if train["epochs"] is None and train["max_steps"] is None:
        raise ConfigError(f"{resolved.origin('train')}: train: set train.epochs or train.max_steps (the budget)")
    _check_ranges(resolved)
    _check_validation_unit(resolved)
    _check_optimizer(resolved)
    _check_metric_names(resolved)
    _check_loggers_and_early_stop(resolved)
    if resolved["model"]["freeze_backbone"] and resolved["model"]["adapter"] is None:
        raise ConfigError(f"{resolved.origin('model.freeze_backbone')}: model.freeze_backbone: true trains only the "
                          "adapter, but model.adapter is null; set an adapter or freeze_backbone: false")
    return resolved
