"""The trivial-prediction rows of a comparison (``TRIVIAL_ROWS``): every pixel the background value, or the last
input frame repeated: predictions without a model, scored on the same test sequences as the arms."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..config import Config

TRIVIAL_ROWS = {
    "background": "all background (no model)",
    "last_input": "last input repeated (no model)",
}


def background_value(dataset) -> np.ndarray:
    """The value of an empty frame in the dataset's units, per channel: ``dataset.background`` (raw units,
    a float or one per channel; 0 when the dataset does not say) normalised like the data."""
    raw = getattr(dataset, "background", None)
    raw = np.asarray(0.0 if raw is None else raw, dtype=np.float64).reshape(-1)
    mean = np.asarray(0.0 if dataset.mean is None else dataset.mean, dtype=np.float64).reshape(-1)
    std = np.asarray(1.0 if dataset.std is None else dataset.std, dtype=np.float64).reshape(-1)
    return (raw - mean) / std


def trivial_predictions(x: torch.Tensor, y: torch.Tensor, background: np.ndarray) -> dict[str, torch.Tensor]:
    """Predictions without a model, for inputs x (B, T_in, C, H, W) and targets y (B, T_out, C, H, W):
    ``background`` every pixel the background value (C,) or scalar, ``last_input`` the last observed frame."""
    fill = torch.as_tensor(background, dtype=y.dtype).reshape(1, 1, -1, 1, 1)
    return {"background": fill.expand_as(y).clone(), "last_input": x[:, -1:].expand_as(y).clone()}


@torch.no_grad()
def evaluate_trivial(cfg: Config, metrics: Sequence[str], split: str = "test", device="cpu", lpips_model=None,
                     num_vis: int = 0) -> list:
    """RunResults of the trivial predictions on the sequences ``evaluate_run`` uses for ``cfg``."""
    from ..data import build_dataset, build_eval_loader, split_batch
    from ..results.evaluation import RunResult, _denormalise_for_display
    from ..metrics import MetricAccumulator

    dataset = build_dataset(cfg, split)
    background = background_value(dataset)
    loader = build_eval_loader(dataset, cfg["data"]["eval_batch_size"] or cfg["data"]["batch_size"],
                               cfg["data"]["num_workers"])
    options = {"lpips_model": lpips_model, "device": device, **loader.normalisation.metric_options()}
    accs = {k: MetricAccumulator(metrics, **options) for k in TRIVIAL_ROWS}
    shown: dict[str, list] = {k: [] for k in TRIVIAL_ROWS}
    max_batches = cfg["eval"]["max_batches"]
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        x, y, _ = split_batch(batch)
        for key, pred in trivial_predictions(x, y, background).items():
            accs[key].update(pred, y)
            if sum(len(p) for p in shown[key]) < num_vis:
                shown[key].append(pred.numpy())
    results = []
    for key, label in TRIVIAL_ROWS.items():
        values = accs[key].compute(per_frame=True)
        scalars = {m: v for m, v in values.items() if not m.endswith("_per_frame")}
        curves = {m: values[f"{m}_per_frame"] for m in metrics if values.get(f"{m}_per_frame") is not None}
        run = RunResult(name=label, metrics=scalars, notes=dict(accs[key].notes), per_frame=curves)
        if shown[key]:
            run.shown = (None, None, _denormalise_for_display(np.concatenate(shown[key])[:num_vis], dataset))
        results.append(run)
    return results
