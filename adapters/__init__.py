"""Adapters that wrap a backbone's predictions, registered in ``pdr.registry.ADAPTERS``."""
from .base import Adapter
from .predgs import PredGS, base_grid

__all__ = ["Adapter", "PredGS", "base_grid"]
