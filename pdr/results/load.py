"""A finished run as a Python object: ``pdr.load_run(path)`` -> PDRModel, ready for ``model.predict(frames)``;
its checkpoint and config files (``locate_run``) and the config its weights were trained with (``run_config``)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from ..config import config_from_dict, load_config, parse_override
from ..data.statistics import with_stored_statistics
from ..errors import CheckpointError, ConfigError, DataError
from ..model import PDRModel
from ..wording import count

log = logging.getLogger("pdr")


def locate_run(path: str | Path, checkpoint: str = "best") -> tuple[Path, Path | None, Path]:
    """(checkpoint file, config file or None, folder for the outputs) of a run folder or a checkpoint file."""
    path = Path(path)
    if path.is_file():
        return path, None, path.parent / f"{path.stem}_eval"
    if path.is_dir():
        ckpt = path / "checkpoints" / f"{checkpoint}.pt"
        if not ckpt.is_file():
            found = sorted(p.name for p in (path / "checkpoints").glob("*.pt")) if (path / "checkpoints").is_dir() else []
            raise CheckpointError(
                f"{path}: no checkpoints/{checkpoint}.pt" + (f" (found: {', '.join(found)})" if found else
                                                            " (is it a run folder of tools/train.py?)")
            )
        config = path / "config.yaml"
        return ckpt, config if config.is_file() else None, path / "eval"
    raise CheckpointError(f"not a run folder or a checkpoint file: {path}")


def pick_checkpoint(path: str | Path, checkpoint: str | None) -> tuple[str, str | None]:
    """The checkpoint of a run folder to use and a note for the reader, or None. ``checkpoint`` None means best,
    else last: a run whose best.pt is missing falls back to last.pt, with a note that says why it is missing."""
    path = Path(path)
    if checkpoint is not None:
        return checkpoint, None
    last = path / "checkpoints" / "last.pt"
    if path.is_dir() and not (path / "checkpoints" / "best.pt").is_file() and last.is_file():
        return "last", (f"{path.name}: no checkpoints/best.pt{_why_no_best(last)}: evaluated checkpoints/last.pt "
                        "instead")
    return "best", None


def _why_no_best(last: Path) -> str:
    """`` (<why>)`` from the progress that ``last`` holds (its validations, the best value), or an empty string."""
    from ..engine.checkpoint import read_torch_file

    try:
        state = read_torch_file(last)
        history, best, train = state.get("history", []), state["best"], state["config"]["train"]
    except (CheckpointError, KeyError, TypeError, AttributeError):
        return ""  # reading last.pt says what is wrong with it
    if not history:
        return " (no validation of the run finished yet)"
    if best is None:
        return (f" (its {count(len(history), 'validation')} came before train.monitor_after="
                f"{train['monitor_after']}, which keeps them out of best.pt)")
    return f" (the run wrote it for its best {train['monitor']}, {best:.5g}; it has been deleted or moved since)"


def run_config(state: dict, ckpt_path: Path, config_path: Path | None, overrides=()):
    """The config the checkpoint's weights were trained with (its stored copy), plus ``overrides``.

    A ``config.yaml`` beside the checkpoint must agree with that copy (up to the keys a resume may change):
    evaluating another setup than the trained one is refused, not done silently. Checkpoints without a copy
    fall back to ``config.yaml``.
    """
    from ..engine.checkpoint import config_differences

    saved = state.get("config")
    if saved is None:
        if config_path is None:
            raise ConfigError(f"{ckpt_path}: the checkpoint holds no config and there is no config.yaml beside it")
        return load_config(config_path, overrides)
    cfg = config_from_dict(saved, overrides=overrides, filename=str(ckpt_path))
    if config_path is not None:  # both resolved by this version of pdr: keys added since compare as defaults
        diff = config_differences(dict(config_from_dict(saved)), dict(load_config(config_path)))
        if diff:
            raise ConfigError(
                f"{config_path} disagrees with the config stored in {ckpt_path}, which its weights were trained "
                f"with: " + "; ".join(diff) + ". Restore config.yaml, or evaluate the checkpoint file itself"
            )
    return cfg


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


def _uint8_scale(cfg) -> float | None:
    """Data units per 8-bit level of the run's dataset (``VideoDataset.uint8_scale_of``), None for data that are
    not 8-bit images."""
    from ..config import dataset_kwargs
    from ..registry import DATASETS

    of = getattr(DATASETS.get(cfg["data"]["name"]), "uint8_scale_of", None)
    return None if of is None else of(**dataset_kwargs(cfg))


def load_run(path: str | os.PathLike, checkpoint: str = "best", device: str | torch.device = "cpu",
             overrides=()) -> PDRModel:
    """The model of a finished run, in eval mode on ``device``, with its config as ``model.config``.

    path: a run folder of tools/train.py (``checkpoint`` picks ``checkpoints/<checkpoint>.pt``: best or
    last) or a checkpoint file. ``overrides``: ``--set`` style ``KEY=VALUE`` strings applied to the
    run's config (validated as in training). ``model.predict(frames, num_frames=N)`` maps (B, T_in, C, H, W)
    frames in the data's units (or uint8 images, for data read from 8-bit images) to (B, N, C, H, W) predictions
    in the same units and type.
    """
    from ..engine.checkpoint import load_checkpoint
    from ..model import build_model

    ckpt_path, config_path, _ = locate_run(path, checkpoint)
    state = load_checkpoint(ckpt_path, map_location=device)
    cfg = run_config(state, ckpt_path, config_path, overrides)
    model = build_model(cfg)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(_misfit_message(ckpt_path, state, model, overrides)) from exc
    model.config = cfg
    model.checkpoint_step = state.get("global_step")
    model.data_mean, model.data_std = _data_stats(state, cfg)
    with_stored_statistics(cfg["data"], model.data_mean, model.data_std)  # normalise: standard, as trained
    model.data_uint8_scale = _uint8_scale(cfg)
    model.checkpoint_path = Path(ckpt_path)
    model.resolved_in_training = state.get("resolved") or {}  # networks and methods the run picked when it began
    return model.to(device).eval()


def _misfit_message(ckpt_path: Path, state: dict, model: PDRModel, overrides) -> str:
    """Why the checkpoint's weights do not fit the model built from its config: what differs (counts and the first
    few names) and the ``--set`` overrides that changed the model, when there are any."""
    from ..model.pretrained import mismatch_summary

    given, target = state["model"], model.state_dict()
    summary = mismatch_summary(
        [k for k in target if k not in given], [k for k in given if k not in target],
        [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}" for k, v in given.items()
         if k in target and tuple(v.shape) != tuple(target[k].shape)])
    changed = [text for text in overrides if parse_override(text)[0].split(".")[0] == "model"]
    if not changed:
        return f"{ckpt_path}: its weights do not fit the model of its config: {summary}"
    backbone = (state.get("config") or {}).get("model", {}).get("backbone", {})
    trained = backbone.get("name", "?") if isinstance(backbone, dict) else backbone
    return (f"{ckpt_path}: its weights were trained for backbone {trained!r}; --set {' '.join(changed)} builds another "
            f"network, which they do not fit: {summary}. A run's network is fixed by its checkpoint: --set may change "
            "the data and evaluation settings, not the model's shape")
