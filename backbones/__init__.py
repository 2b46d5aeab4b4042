"""Backbones (pixel-space predictors), registered in ``pdr.registry.BACKBONES``."""
from .base import Backbone, BackboneOutput
from . import simvp  # noqa: F401  (registers "simvp" and "tau")
from . import convlstm  # noqa: F401  (registers "convlstm")
from . import predrnn  # noqa: F401  (registers "predrnn")
from . import openstl_bridge  # noqa: F401  (registers "openstl:<Method>")
from . import srvp  # noqa: F401  (registers "srvp")
from . import latent_flow  # noqa: F401  (registers "latent_flow")

__all__ = ["Backbone", "BackboneOutput"]
