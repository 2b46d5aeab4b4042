"""The latent flow video model (docs/latent_flow.md): registers the ``latent_flow`` backbone."""
from . import phases  # noqa: F401  (registers "latent_flow")
from .model import LatentFlow

__all__ = ["LatentFlow"]
