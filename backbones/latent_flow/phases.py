"""The ``latent_flow`` backbone as the factory builds it: the model, then the weights of earlier phases.

Phase ``temporal`` starts from the VAE of a vae-phase run (``vae_checkpoint``), phase ``joint`` from the VAE
and temporal model of a temporal-phase run (``temporal_checkpoint``, or only a VAE from ``vae_checkpoint``).
Both are Trainer checkpoints; the model itself (``LatentFlow``) takes no file paths. The paths are config
keys of ``model.backbone`` (read again whenever the model is built, as timm's ``checkpoint_path``).
"""
from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from pdr.arg_types import signature
from pdr.errors import CheckpointError, ConfigError
from pdr.registry import BACKBONES

from .model import LatentFlow

log = logging.getLogger("pdr")
CHECKPOINT_ARGS = ("vae_checkpoint", "temporal_checkpoint")


def load_backbone_state(path: str | Path, key: str = "model.backbone.vae_checkpoint") -> dict:
    """The backbone weights (prefix ``backbone.`` stripped) of a checkpoint written by the Trainer; errors
    name ``key``, the config key or option that gave ``path``."""
    from pdr.engine.checkpoint import load_checkpoint

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{key}: checkpoint not found: {path} (train the previous phase first, then pass "
                          f"--set {key}=<run>/checkpoints/best.pt)")
    try:
        state = load_checkpoint(path)
    except CheckpointError as exc:
        raise ConfigError(f"{key}: {exc}") from exc
    return {k[len("backbone."):]: v for k, v in state["model"].items() if k.startswith("backbone.")}


def load_part(module: nn.Module, state: dict, prefix: str, path) -> None:
    """Load the entries of ``state`` under ``prefix`` (``"vae."``, ``"temporal."``) into ``module``."""
    part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(part)
    except RuntimeError as exc:
        raise ConfigError(f"{path}: its '{prefix[:-1]}' weights do not fit this latent_flow configuration "
                          f"(different sizes?): {str(exc).splitlines()[0]}") from exc
    log.info("latent_flow: loaded the %s weights of %s", prefix[:-1], path)


def load_phase_weights(net: LatentFlow, vae_checkpoint: str | None = None,
                       temporal_checkpoint: str | None = None) -> None:
    """Give ``net`` the weights its phase starts from (module docstring)."""
    if net.phase == "temporal" and not vae_checkpoint:
        log.warning("latent_flow phase temporal without model.backbone.vae_checkpoint: the frozen VAE is "
                    "randomly initialised")
    if temporal_checkpoint:
        state = load_backbone_state(temporal_checkpoint, "model.backbone.temporal_checkpoint")
        load_part(net.vae, state, "vae.", temporal_checkpoint)
        load_part(net.temporal, state, "temporal.", temporal_checkpoint)
    elif vae_checkpoint:
        load_part(net.vae, load_backbone_state(vae_checkpoint), "vae.", vae_checkpoint)


def build_latent_flow(in_shape: Sequence[int], out_frames: int, vae_checkpoint: str | None = None,
                      temporal_checkpoint: str | None = None, **kwargs) -> LatentFlow:
    """Backbone latent_flow: ``LatentFlow(in_shape, out_frames, **kwargs)`` with the weights of the earlier
    phases. vae_checkpoint: a Trainer checkpoint of the vae phase (needed by phase temporal);
    temporal_checkpoint: a Trainer checkpoint of the temporal phase (phase joint)."""
    net = LatentFlow(in_shape, out_frames, **kwargs)
    load_phase_weights(net, vae_checkpoint, temporal_checkpoint)
    return net


# config keys are checked against LatentFlow's arguments and the two checkpoint paths
build_latent_flow.__signature__ = signature(LatentFlow).replace(parameters=[
    *signature(LatentFlow).parameters.values(),
    *(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=str | None)
      for name in CHECKPOINT_ARGS),
])
build_latent_flow.size_multiple = LatentFlow.size_multiple
BACKBONES.register("latent_flow")(build_latent_flow)
