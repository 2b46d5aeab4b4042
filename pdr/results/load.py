"""A finished run as a Python object: ``pdr.load_run(path)`` -> PDRModel, ready for ``model.predict(frames)``."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from ..errors import CheckpointError, DataError
from ..model import PDRModel

log = logging.getLogger("pdr")


def _data_stats(state: dict, cfg) -> tuple:
    """(mean, std) of the run's dataset: stored in the checkpoint; for checkpoints written before it was
    stored, read from the dataset's test split (None, None when that cannot be built)."""
    stats = state.get("data_stats")
    if stats is not None:
        return stats.get("mean"), stats.get("std")
    from ..data import build_dataset

    try:
        dataset = build_dataset(cfg, "test")
    except DataError as exc:
        log.warning("the checkpoint holds no data normalisation and the data set cannot be read (%s): "
                    "predict() takes and returns the model's own (normalised) units", exc)
        return None, None
    return dataset.mean, dataset.std


def load_run(path: str | os.PathLike, checkpoint: str = "best", device: str | torch.device = "cpu",
             overrides=()) -> PDRModel:
    """The model of a finished run, in eval mode on ``device``, with its config as ``model.config``.

    path: a run folder of tools/train.py (``checkpoint`` picks ``checkpoints/<checkpoint>.pt``: best or
    last) or a checkpoint file. ``overrides``: ``--set`` style ``KEY=VALUE`` strings applied to the
    run's config (validated as in training). ``model.predict(frames)`` maps (B, T_in, C, H, W) frames in
    the data's units to (B, T_out, C, H, W) predictions in the same units.
    """
    from ..engine.checkpoint import load_checkpoint
    from .evaluation import locate_run, run_config
    from ..model import build_model

    ckpt_path, config_path, _ = locate_run(path, checkpoint)
    state = load_checkpoint(ckpt_path, map_location=device)
    cfg = run_config(state, ckpt_path, config_path, overrides)
    model = build_model(cfg)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{ckpt_path}: weights do not fit the model of its config: {str(exc).splitlines()[0]}") from exc
    model.config = cfg
    model.data_mean, model.data_std = _data_stats(state, cfg)
    model.checkpoint_path = Path(ckpt_path)
    model.resolved_in_training = state.get("resolved") or {}  # networks and methods the run picked when it began
    return model.to(device).eval()
