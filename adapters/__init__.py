"""Adapters that wrap a backbone's predictions, registered in ``pdr.registry.ADAPTERS``."""
from .base import Adapter
from .predgs import PredGS, base_grid
from .refiner import ConvRefiner

__all__ = ["Adapter", "ConvRefiner", "PredGS", "base_grid"]
