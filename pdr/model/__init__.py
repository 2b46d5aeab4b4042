"""The model: a backbone, optionally wrapped by an adapter (``pdr_model.PDRModel``), built from names or a
config, and backbone weights loaded from PDR or OpenSTL checkpoints (``pretrained``)."""
from .pdr_model import ModelOutput, PDRModel, build_model, count_parameters, create_model, data_shape
from .pretrained import load_backbone_weights

__all__ = ["ModelOutput", "PDRModel", "build_model", "count_parameters", "create_model", "data_shape",
           "load_backbone_weights"]
