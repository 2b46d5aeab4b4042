"""Adapters that wrap a backbone's predictions, registered in ``pdr.registry.ADAPTERS``."""
from .predgs import PredGS, base_grid

__all__ = ["PredGS", "base_grid"]
