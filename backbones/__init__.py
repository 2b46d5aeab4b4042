"""Backbones (pixel-space predictors), registered in ``pdr.registry.BACKBONES``."""
from .base import Backbone
from . import simvp  # noqa: F401  (registers "simvp")

__all__ = ["Backbone"]
