"""Evaluate trained runs on a split: metrics, a prediction grid and per-frame curves per run."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .config import config_from_dict, load_config
from .data import build_dataset
from .engine.checkpoint import load_checkpoint
from .errors import CheckpointError, ConfigError
from .metrics import MetricAccumulator
from .model import build_model
from .visualize import save_metric_curves, save_prediction_grid

log = logging.getLogger("pdr")


@dataclass
class RunResult:
    name: str
    metrics: dict
    notes: dict = field(default_factory=dict)
    per_frame: dict = field(default_factory=dict)
    images: list = field(default_factory=list)


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


def _denormalise_for_display(x: np.ndarray, dataset) -> np.ndarray:
    mean, std = dataset.mean, dataset.std
    c = x.shape[2]
    if std is not None:
        x = x * np.asarray(std, dtype=np.float64).reshape(1, 1, -1, 1, 1)[:, :, :c]
    if mean is not None:
        x = x + np.asarray(mean, dtype=np.float64).reshape(1, 1, -1, 1, 1)[:, :, :c]
    return x


@torch.no_grad()
def evaluate_run(
    path: str | Path,
    split: str = "test",
    checkpoint: str = "best",
    metrics=None,
    device: str = "cpu",
    num_vis: int | None = None,
    max_batches: int | None = None,
    batch_size: int | None = None,
    overrides=(),
    save_images: bool = True,
    lpips_model=None,
) -> RunResult:
    ckpt_path, config_path, out_dir = locate_run(path, checkpoint)
    state = load_checkpoint(ckpt_path, map_location=device)
    if config_path is not None:
        cfg = load_config(config_path, overrides)
    elif "config" in state:
        cfg = config_from_dict(state["config"])
    else:
        raise ConfigError(f"{ckpt_path}: the checkpoint holds no config and there is no config.yaml beside it")
    model = build_model(cfg).to(device)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{ckpt_path}: weights do not fit the model of its config: {str(exc).splitlines()[0]}") from exc
    model.eval()

    metrics = list(metrics or cfg["eval"]["metrics"])
    num_vis = cfg["eval"]["num_vis"] if num_vis is None else num_vis
    max_batches = cfg["eval"]["max_batches"] if max_batches is None else max_batches
    dataset = build_dataset(cfg, split)
    loader = DataLoader(dataset, batch_size=batch_size or cfg["data"]["eval_batch_size"] or cfg["data"]["batch_size"],
                        shuffle=False, num_workers=cfg["data"]["num_workers"])
    acc = MetricAccumulator(metrics, mean=dataset.mean, std=dataset.std, lpips_model=lpips_model, device=device)
    shown: list[tuple] = []
    name = Path(path).name if Path(path).is_dir() else Path(path).stem
    total = len(loader) if max_batches is None else min(len(loader), max_batches)
    for i, (x, y) in enumerate(tqdm(loader, total=total, desc=f"eval {name}", leave=False, dynamic_ncols=True)):
        if max_batches is not None and i >= max_batches:
            break
        pred = model(x.to(device)).cpu()
        acc.update(pred, y)
        if sum(len(s[0]) for s in shown) < num_vis:
            shown.append((x.numpy(), y.numpy(), pred.numpy()))
    result = acc.compute(per_frame=True)
    scalars = {k: v for k, v in result.items() if not k.endswith("_per_frame")}
    curves = {m: result[f"{m}_per_frame"] for m in metrics if result.get(f"{m}_per_frame") is not None}
    run = RunResult(name=name, metrics=scalars, notes=dict(acc.notes), per_frame=curves)

    if save_images and shown:
        out_dir.mkdir(parents=True, exist_ok=True)
        xs, ys, ps = (np.concatenate([s[j] for s in shown])[:num_vis] for j in range(3))
        xs, ys, ps = (_denormalise_for_display(a, dataset) for a in (xs, ys, ps))
        title = f"{name}: {cfg['model']['backbone']['name']}" + (
            f" + {cfg['model']['adapter']['name']}" if cfg["model"].get("adapter") else "")
        run.images.append(save_prediction_grid(out_dir / f"predictions_{split}.png", xs, ys, ps, title=title))
        run.images.append(save_metric_curves(out_dir / f"metrics_per_frame_{split}.png", curves, title=title))
        (out_dir / f"metrics_{split}.json").write_text(json.dumps({"run": name, **result, "notes": run.notes}, indent=2))
    return run
