"""PDR: Predictive Differentiable Rendering for video and spatio-temporal prediction."""
from .config import Config, load_config
from .errors import ConfigError, DataError, PDRError
from .model import PDRModel, build_model, create_model, load_backbone_weights
from .registry import ADAPTERS, BACKBONES, DATASETS, LOSSES
from .results.load import load_run

__version__ = "0.1.0"

__all__ = [
    "ADAPTERS", "BACKBONES", "DATASETS", "LOSSES", "Config", "ConfigError", "DataError", "PDRError",
    "PDRModel", "build_model", "create_model", "load_backbone_weights", "load_config", "load_run", "__version__",
]
