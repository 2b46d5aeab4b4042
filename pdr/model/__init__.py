"""The model: a backbone, optionally wrapped by an adapter (``pdr_model.PDRModel``), built from names or a
config (``build``), and backbone weights loaded from PDR or OpenSTL checkpoints (``pretrained``)."""
from .build import build_model, create_model, data_shape
from .pdr_model import ModelOutput, PDRModel, count_parameters
from .pretrained import load_backbone_weights

__all__ = ["ModelOutput", "PDRModel", "build_model", "count_parameters", "create_model", "data_shape",
           "load_backbone_weights"]
