"""Configs: YAML files with ``_base_`` inheritance and ``--set`` overrides (``load``), what a config may
hold (``schema``) and how it is checked and completed with defaults (``validate``)."""
from .load import apply_override, component_kwargs, config_from_dict, dataset_kwargs, load_config, parse_override
from .schema import REQUIRED, SCHEMA, Config, Field
from .validate import validate_config

__all__ = [
    "REQUIRED", "SCHEMA", "Config", "Field", "apply_override", "component_kwargs", "config_from_dict",
    "dataset_kwargs", "load_config", "parse_override", "validate_config",
]
