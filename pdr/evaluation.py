"""Evaluate trained runs on a split: metrics, a prediction grid and per-frame curves per run."""
from __future__ import annotations

import contextlib
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
from .errors import CheckpointError, ConfigError, PDRError
from .metrics import MetricAccumulator, summarise
from .model import PDRModel, build_model
from .visualize import save_metric_curves, save_prediction_grid

log = logging.getLogger("pdr")


@dataclass
class RunResult:
    name: str
    metrics: dict
    notes: dict = field(default_factory=dict)
    per_frame: dict = field(default_factory=dict)
    images: list = field(default_factory=list)
    # Stochastic protocol (num_samples > 1): ``metrics``/``per_frame`` hold the mean over the K samples,
    # these the best sample per sequence and per metric.
    num_samples: int = 1
    best_of_samples: dict = field(default_factory=dict)
    best_per_frame: dict = field(default_factory=dict)


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


# ----------------------------------------------------------------------------- stochastic models

BEST_IS_LOWEST = ("mse", "mae", "lpips")
BEST_IS_HIGHEST = ("psnr", "ssim")


def supports_sampling(model: PDRModel) -> bool:
    """Whether the model's backbone draws several futures: it has ``sample(x, num_samples, frame_rate)``."""
    return callable(getattr(model.backbone, "sample", None))


def sample_predictions(model: PDRModel, x: torch.Tensor, num_samples: int, frame_rate: int = 1) -> torch.Tensor:
    """``num_samples`` futures per sequence, each through the model's adapter when it has one.

    x (B, T_in, C, H, W) -> (B, K, T_out * frame_rate, C, H, W). Calls ``model.backbone.sample`` and then
    ``model.adapter`` on every sample (with the sample's backbone features for ``source: features``).
    The caller picks the mode (``model.eval()``) and the gradient context.
    """
    if not supports_sampling(model):
        raise PDRError(f"backbone {type(model.backbone).__name__} has no sample(x, num_samples, frame_rate) method: "
                       "it predicts one future; use model(x)")
    if x.dim() != 5 or tuple(x.shape[1:]) != tuple(model.in_shape):
        raise ValueError(f"x must have shape (B, {', '.join(map(str, model.in_shape))}) = (B, T_in, C, H, W), "
                         f"got {tuple(x.shape)}")
    adapter = model.adapter
    wants_features = adapter is not None and getattr(adapter, "source", "output") == "features"
    if wants_features:
        coarse, features = model.backbone.sample(x, num_samples, frame_rate=frame_rate, return_features=True)
    else:
        coarse, features = model.backbone.sample(x, num_samples, frame_rate=frame_rate), None
    if adapter is None:
        return coarse
    return torch.stack(
        [adapter(coarse[:, i], None if features is None else features[:, i]) for i in range(coarse.shape[1])], dim=1
    )


class _FrameValues(MetricAccumulator):
    """A MetricAccumulator that hands back the (N, T) values of one batch instead of adding them up.

    It overrides ``_add``, the one place where ``update`` stores a metric's per-frame values, so that every
    metric keeps MetricAccumulator's conventions; tests/test_srvp.py checks that mean of K equals
    MetricAccumulator on all samples.
    """

    def frame_values(self, pred, true) -> dict[str, np.ndarray]:
        self._batch_values: dict[str, np.ndarray] = {}
        self.update(pred, true)
        return self._batch_values

    def _add(self, name: str, per_frame: np.ndarray) -> None:
        self._batch_values[name] = np.asarray(per_frame, dtype=np.float64)


class SampleMetrics:
    """Metrics of K sampled futures per sequence: the best sample and the mean over samples.

    The protocol of SVG and SRVP: per sequence and per metric, the sample with the lowest MSE, MAE or LPIPS
    (highest PSNR or SSIM), averaged over its frames, is that sequence's best; "best of K" averages the best
    samples over sequences, "mean of K" averages every sample. RMSE is the square root of the (best or mean)
    MSE; sharpness (a ratio of gradient energies, with no "best") is reported for the mean only.

    ``update(samples (B, K, T, C, H, W), true (B, T, C, H, W))``; ``compute()`` -> (best, mean) dicts in the
    format of ``MetricAccumulator.compute``. Same conventions (normalisation, clipping) as MetricAccumulator.
    """

    def __init__(self, metrics=("mse", "mae"), mean=None, std=None, clip_range=(0.0, 1.0), lpips_model=None,
                 device="cpu"):
        self.metrics = list(metrics)
        self._values = _FrameValues(self.metrics, mean=mean, std=std, clip_range=clip_range,
                                    lpips_model=lpips_model, device=device)
        self.notes = self._values.notes
        self._best: dict[str, np.ndarray] = {}
        self._all: dict[str, np.ndarray] = {}
        self._sequences = 0
        self._samples = 0
        self.num_samples: int | None = None

    def update(self, samples, true) -> None:
        samples = samples.detach().cpu() if isinstance(samples, torch.Tensor) else torch.as_tensor(samples)
        true = true.detach().cpu() if isinstance(true, torch.Tensor) else torch.as_tensor(true)
        if samples.dim() != 6 or true.dim() != 5 or samples.shape[:1] + samples.shape[2:] != true.shape:
            raise ValueError(f"samples must be (B, K, T, C, H, W) and true (B, T, C, H, W) with the same B, T, C, H, W, "
                             f"got {tuple(samples.shape)} and {tuple(true.shape)}")
        b, k = samples.shape[:2]
        self.num_samples = k if self.num_samples is None else self.num_samples
        truth = true.unsqueeze(1).expand_as(samples)
        values = self._values.frame_values(samples.flatten(0, 1), truth.flatten(0, 1))
        rows = np.arange(b)
        for name, v in values.items():
            v = v.reshape(b, k, -1)  # (B, K, T)
            self._all[name] = self._all.get(name, 0) + v.sum(axis=(0, 1))
            if name in BEST_IS_LOWEST or name in BEST_IS_HIGHEST:
                score = v.mean(axis=2)
                if np.isnan(score).all():
                    pick = np.zeros(b, dtype=int)
                else:
                    score = np.where(np.isnan(score), np.inf if name in BEST_IS_LOWEST else -np.inf, score)
                    pick = score.argmin(axis=1) if name in BEST_IS_LOWEST else score.argmax(axis=1)
                self._best[name] = self._best.get(name, 0) + v[rows, pick].sum(axis=0)
        self._sequences += b
        self._samples += b * k

    def compute(self, per_frame: bool = False) -> tuple[dict, dict]:
        """(best of K, mean of K): ``{metric: value}`` plus ``<metric>_per_frame`` lists when ``per_frame``."""
        if not self._sequences:
            raise ValueError("no batches were added")
        best = {k: v / self._sequences for k, v in self._best.items()}
        mean = {k: v / self._samples for k, v in self._all.items()}
        return summarise(self.metrics, best, per_frame), summarise(self.metrics, mean, per_frame)


@contextlib.contextmanager
def _sampling_seed(enabled: bool, seed: int, device):
    """Draw samples from a fixed seed without touching the caller's random state."""
    if not enabled:
        yield
        return
    dev = torch.device(device)
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def _resolve_num_samples(num_samples: int | None, cfg, model: PDRModel, ckpt_path: Path) -> int:
    source = "--samples" if num_samples is not None else "eval.num_samples"
    k = cfg["eval"].get("num_samples", 1) if num_samples is None else num_samples
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"{source}: the number of samples per sequence must be an int >= 1, got {k!r}")
    if k > 1 and not supports_sampling(model):
        name = cfg["model"]["backbone"]["name"]
        raise PDRError(
            f"{ckpt_path}: {source}={k} needs a stochastic model, but backbone {name!r} is deterministic (it has no "
            f"sample method: every sample would be the same prediction); evaluate it with --samples 1"
        )
    return k


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
    num_samples: int | None = None,
) -> RunResult:
    """Metrics of a run on ``split``. ``num_samples`` K (default: the config's ``eval.num_samples``, else 1)
    above 1 draws K futures per sequence (models with a ``sample`` method only) and reports best of K and
    mean of K (``RunResult.best_of_samples`` and ``RunResult.metrics``)."""
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
    k = _resolve_num_samples(num_samples, cfg, model, ckpt_path)

    metrics = list(metrics or cfg["eval"]["metrics"])
    num_vis = cfg["eval"]["num_vis"] if num_vis is None else num_vis
    max_batches = cfg["eval"]["max_batches"] if max_batches is None else max_batches
    dataset = build_dataset(cfg, split)
    loader = DataLoader(dataset, batch_size=batch_size or cfg["data"]["eval_batch_size"] or cfg["data"]["batch_size"],
                        shuffle=False, num_workers=cfg["data"]["num_workers"])
    if k > 1:
        acc = SampleMetrics(metrics, mean=dataset.mean, std=dataset.std, lpips_model=lpips_model, device=device)
    else:
        acc = MetricAccumulator(metrics, mean=dataset.mean, std=dataset.std, lpips_model=lpips_model, device=device)
    shown: list[tuple] = []
    name = Path(path).name if Path(path).is_dir() else Path(path).stem
    total = len(loader) if max_batches is None else min(len(loader), max_batches)
    with _sampling_seed(k > 1, cfg["train"]["seed"], device):  # the same command gives the same samples
        for i, (x, y, *_) in enumerate(tqdm(loader, total=total, desc=f"eval {name}", leave=False, dynamic_ncols=True)):
            if max_batches is not None and i >= max_batches:
                break
            if k > 1:
                samples = sample_predictions(model, x.to(device), k).cpu()
                acc.update(samples, y)
                pred = samples[:, 0]  # the grid shows the first sample
            else:
                pred = model(x.to(device)).cpu()
                acc.update(pred, y)
            if sum(len(s[0]) for s in shown) < num_vis:
                shown.append((x.numpy(), y.numpy(), pred.numpy()))
    best = {}
    if k > 1:
        best, result = acc.compute(per_frame=True)
    else:
        result = acc.compute(per_frame=True)
    scalars = {key: v for key, v in result.items() if not key.endswith("_per_frame")}
    curves = {m: result[f"{m}_per_frame"] for m in metrics if result.get(f"{m}_per_frame") is not None}
    run = RunResult(name=name, metrics=scalars, notes=dict(acc.notes), per_frame=curves, num_samples=k)
    if k > 1:
        run.best_of_samples = {key: v for key, v in best.items() if not key.endswith("_per_frame")}
        run.best_per_frame = {m: best[f"{m}_per_frame"] for m in metrics if best.get(f"{m}_per_frame") is not None}

    if save_images and shown:
        out_dir.mkdir(parents=True, exist_ok=True)
        xs, ys, ps = (np.concatenate([s[j] for s in shown])[:num_vis] for j in range(3))
        xs, ys, ps = (_denormalise_for_display(a, dataset) for a in (xs, ys, ps))
        title = f"{name}: {cfg['model']['backbone']['name']}" + (
            f" + {cfg['model']['adapter']['name']}" if cfg["model"].get("adapter") else "")
        grid_title = title + (f" (sample 1 of {k})" if k > 1 else "")
        run.images.append(save_prediction_grid(out_dir / f"predictions_{split}.png", xs, ys, ps, title=grid_title))
        if k > 1:
            title += f" ({k} samples)"
            shown_curves = {m: {f"best of {k}": run.best_per_frame[m], f"mean of {k}": curves[m]} if m in run.best_per_frame
                            else curves[m] for m in curves}
        else:
            shown_curves = curves
        run.images.append(save_metric_curves(out_dir / f"metrics_per_frame_{split}.png", shown_curves, title=title))
        record = {"run": name, **result, "notes": run.notes}
        if k > 1:
            record = {"run": name, "samples": k, **result, "best_of_samples": best, "notes": run.notes}
        (out_dir / f"metrics_{split}.json").write_text(json.dumps(record, indent=2))
    return run
