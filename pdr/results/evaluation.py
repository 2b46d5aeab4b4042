"""Evaluate trained runs on a split: metrics, a prediction grid and per-frame curves per run."""
from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data import build_dataset, build_eval_loader
from ..engine.evaluate import evaluate
from ..errors import ConfigError, DataError, PDRError
from ..metrics import METRICS, CollisionAccumulator, MetricAccumulator, summarise
from ..model import PDRModel
from ..visualize import save_metric_curves, save_prediction_grid
from .load import load_run, locate_run, pick_checkpoint

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
    # (inputs, truth, prediction) of the first num_vis sequences, in display range: (S, T, C, H, W) arrays.
    shown: tuple | None = None
    checkpoint: Path | None = None  # the checkpoint file evaluated, and its training step when it says
    checkpoint_step: int | None = None
    out_dir: Path | None = None  # where the run's pictures go (<run>/eval)
    unwritten: list = field(default_factory=list)  # "path: reason" of each output that could not be written


def _denormalise_for_display(x: np.ndarray, dataset) -> np.ndarray:
    mean, std = dataset.mean, dataset.std
    c = x.shape[2]
    if std is not None:
        x = x * np.asarray(std, dtype=np.float64).reshape(1, 1, -1, 1, 1)[:, :, :c]
    if mean is not None:
        x = x + np.asarray(mean, dtype=np.float64).reshape(1, 1, -1, 1, 1)[:, :, :c]
    return x


# ----------------------------------------------------------------------------- stochastic models

def supports_sampling(model: PDRModel) -> bool:
    """Whether the model's backbone draws several futures (it declares ``can_sample``)."""
    return model.backbone.can_sample


def sample_predictions(model: PDRModel, x: torch.Tensor, num_samples: int, frame_rate: int = 1) -> torch.Tensor:
    """``num_samples`` futures per sequence, each through the model's adapter when it has one:
    x (B, T_in, C, H, W) -> (B, K, T_out * frame_rate, C, H, W); ``PDRModel.sample``.
    The caller picks the mode (``model.eval()``) and the gradient context.
    """
    return model.sample(x, num_samples, frame_rate)


class SampleMetrics:
    """Metrics of K sampled futures per sequence: the best sample and the mean over samples.

    The protocol of SVG and SRVP: per sequence and per metric, the sample whose frames score best by the
    metric's direction (``pdr.metrics.higher_is_better``: lowest MSE, MAE or LPIPS, highest PSNR or SSIM, ...)
    is that sequence's best; "best of K" averages the best samples over sequences, "mean of K" averages
    every sample. RMSE is the square root of the (best or mean) MSE; sharpness (a ratio of gradient
    energies, with no "best") and set metrics (FVD) are reported for the mean only.

    ``update(samples (B, K, T, C, H, W), true (B, T, C, H, W))``; ``compute()`` -> (best, mean) dicts in the
    format of ``MetricAccumulator.compute``. Arguments and conventions as MetricAccumulator's.
    """

    def __init__(self, metrics=("mse", "mae"), mean=None, std=None, clip_range=(0.0, 1.0), lpips_model=None,
                 device="cpu", **options):
        self.metrics = list(metrics)
        self._acc = MetricAccumulator(self.metrics, mean=mean, std=std, clip_range=clip_range,
                                      lpips_model=lpips_model, device=device, **options)
        self.notes = self._acc.notes
        self._best: dict[str, dict[str, np.ndarray]] = {}
        self._sequences = 0
        self.num_samples: int | None = None

    def update(self, samples, true) -> None:
        samples = samples.detach().cpu() if isinstance(samples, torch.Tensor) else torch.as_tensor(samples)
        true = true.detach().cpu() if isinstance(true, torch.Tensor) else torch.as_tensor(true)
        if samples.dim() != 6 or true.dim() != 5 or samples.shape[:1] + samples.shape[2:] != true.shape:
            raise ValueError(f"samples must be (B, K, T, C, H, W) and true (B, T, C, H, W) with the same B, T, C, H, W, "
                             f"got {tuple(samples.shape)} and {tuple(true.shape)}")
        b, k = samples.shape[:2]
        self.num_samples = k if self.num_samples is None else self.num_samples
        flat, truth = samples.flatten(0, 1), true.unsqueeze(1).expand_as(samples).flatten(0, 1)
        batch = self._acc.prepare(flat, truth)
        values = self._acc.values_of(batch)
        self._acc.add(values, b * k)
        self._acc.feed_sets(batch)
        rows = np.arange(b)
        for group, keyed in values.items():
            for name, v in keyed.items():
                higher = METRICS[name].higher_is_better if name in METRICS else None
                if higher is None:
                    continue
                v = v.reshape(b, k, -1)  # (B, K, T)
                score = v.mean(axis=2)
                if np.isnan(score).all():
                    pick = np.zeros(b, dtype=int)
                else:
                    score = np.where(np.isnan(score), -np.inf if higher else np.inf, score)
                    pick = score.argmax(axis=1) if higher else score.argmin(axis=1)
                best = self._best.setdefault(group, {})
                best[name] = best.get(name, 0) + v[rows, pick].sum(axis=0)
        self._sequences += b

    def compute(self, per_frame: bool = False) -> tuple[dict, dict]:
        """(best of K, mean of K): ``{metric: value}`` plus ``<metric>_per_frame`` lists when ``per_frame``."""
        if not self._sequences:
            raise ValueError("no batches were added")
        best = {g: {k: v / self._sequences for k, v in keyed.items()} for g, keyed in self._best.items()}
        return summarise(self.metrics, best, per_frame, self._acc.channel_names), self._acc.compute(per_frame)


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


def _scores_collisions(model: PDRModel, dataset) -> bool:
    """Whether the model predicts collisions and the dataset has labels for some of its clips (CLEVRER)."""
    return (model.backbone.predicts_collisions
            and callable(getattr(dataset, "collision_labels", None))
            and any(a is not None for a in getattr(dataset, "annotations", ())))


def _add_collisions(acc: CollisionAccumulator, model: PDRModel, dataset, x: torch.Tensor, first: int) -> None:
    """Score the predicted collisions of the batch x (B, T_in, C, H, W) of dataset items first, first + 1, ...
    against the labels of those that have an annotation."""
    annotated = [j for j in range(len(x)) if dataset.annotations[first + j] is not None]
    if not annotated:
        return
    prob = model.collision_probabilities(x[annotated])
    if prob is None:
        return
    labels = torch.stack([dataset.collision_labels(first + j) for j in annotated])
    acc.update(prob.cpu(), labels)


def _compute(acc, collisions: CollisionAccumulator | None, k: int) -> tuple[dict, dict, int | None]:
    """(metrics with per-frame curves, best of K or {}, the number of collision steps scored or None)."""
    best, result = acc.compute(per_frame=True) if k > 1 else ({}, acc.compute(per_frame=True))
    collision_counts = None
    if collisions is not None and not collisions.empty:
        scores = collisions.compute()
        collision_counts = scores.pop("collision_count")
        result.update(scores)
    return result, best, collision_counts


def _add_notes(run: RunResult, model: PDRModel, dataset, split: str, checkpoint: str, collision_counts) -> None:
    """What a reader of the table needs to know: choices resolved in training, collision scores, test-data selection."""
    name, cfg = run.name, model.config
    for key, value in model.resolved_in_training.items():
        run.notes[key] = f"{name}: {key}: {value}"
    if collision_counts is not None:
        run.notes["collision"] = (f"collision scores over {collision_counts} predicted steps of the annotated {split} "
                                  f"clips; a step is a predicted collision when its probability is >= 0.5")
    if checkpoint == "best" and getattr(dataset, "validation_is_test", False):
        run.notes["validation"] = (f"{name}: its best checkpoint was selected on the test data (the "
                                   f"{cfg['data']['name']} validation split is the test split unless set otherwise, as "
                                   f"in OpenSTL); the config's comments show how to hold out a validation split")


def _save_outputs(run: RunResult, result: dict, best: dict, cfg, out_dir: Path, split: str) -> None:
    """The prediction grid, the per-frame curves and metrics_<split>.json of ``run`` in ``out_dir``."""
    name, k, curves = run.name, run.num_samples, run.per_frame
    out_dir.mkdir(parents=True, exist_ok=True)
    xs, ys, ps = run.shown
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


@torch.no_grad()
def evaluate_run(
    path: str | Path,
    split: str = "test",
    checkpoint: str | None = "best",
    metrics=None,
    device: str = "cpu",
    num_vis: int | None = None,
    max_batches: int | None = None,
    batch_size: int | None = None,
    overrides=(),
    save_images: bool = True,
    lpips_model=None,
    num_samples: int | None = None,
    ttt_steps: int = 0,
    ttt_lr: float = 1e-4,
    show_progress: bool = True,
) -> RunResult:
    """Metrics of a run on ``split``. ``checkpoint``: best or last, or None for best falling back to last (with
    a note) when the run has no best.pt. ``num_samples`` K (default: the config's ``eval.num_samples``, else 1)
    above 1 draws K futures per sequence (models with a ``sample`` method only) and reports best of K and
    mean of K (``RunResult.best_of_samples`` and ``RunResult.metrics``). ``ttt_steps`` > 0 (latent_flow runs):
    each test sequence is predicted after that many test-time training steps of the flow head on it
    (``pdr.backbones.latent_flow.ttt``); the run's name and output files say so. Pictures that cannot be written
    are listed in ``RunResult.unwritten``; the metrics are returned all the same."""
    checkpoint, checkpoint_note = pick_checkpoint(path, checkpoint)
    ckpt_path, _, out_dir = locate_run(path, checkpoint)
    model = load_run(path, checkpoint, device=device, overrides=overrides)
    cfg = model.config
    k = _resolve_num_samples(num_samples, cfg, model, ckpt_path)
    ttt = None
    if ttt_steps:
        from ..backbones.latent_flow.ttt import ttt_predictor

        ttt = ttt_predictor(model, ttt_steps, ttt_lr, source=str(ckpt_path))

    metrics = list(metrics or cfg["eval"]["metrics"])
    num_vis = cfg["eval"]["num_vis"] if num_vis is None else num_vis
    max_batches = cfg["eval"]["max_batches"] if max_batches is None else max_batches
    dataset = build_dataset(cfg, split)
    if len(dataset) == 0:
        given = [text for text in overrides if text.startswith("data.")]
        raise DataError(f"{ckpt_path}: the {split} split of {cfg['data']['name']} holds no sequences"
                        + (f" with --set {' '.join(given)}" if given else "") + ": nothing to evaluate")
    loader = build_eval_loader(dataset, batch_size or cfg["data"]["eval_batch_size"] or cfg["data"]["batch_size"],
                               cfg["data"]["num_workers"])
    options = {"lpips_model": lpips_model, "device": device, **loader.normalisation.metric_options()}
    acc = SampleMetrics(metrics, **options) if k > 1 else MetricAccumulator(metrics, **options)
    collisions = CollisionAccumulator() if _scores_collisions(model, dataset) else None
    shown: list[tuple] = []
    name = Path(path).name if Path(path).is_dir() else Path(path).stem
    if ttt is not None:
        name += f" (TTT {ttt_steps} steps)"

    def predict(x, y):
        if ttt is not None:
            return ttt(x).cpu()
        return (sample_predictions(model, x, k) if k > 1 else model(x)).cpu()

    def observe(i, x, y, pred):
        if collisions is not None:
            _add_collisions(collisions, model, dataset, x, i * loader.batch_size)
        if sum(len(s[0]) for s in shown) < num_vis:  # the grid shows the first sample
            shown.append((x.cpu().numpy(), y.cpu().numpy(), (pred[:, 0] if k > 1 else pred).numpy()))

    with _sampling_seed(k > 1, cfg["train"]["seed"], device):  # the same command gives the same samples
        evaluate(predict, loader, acc, device, max_batches, on_batch=observe,
                 desc=f"eval {name}" if show_progress else None)
    result, best, collision_counts = _compute(acc, collisions, k)
    scalars = {key: v for key, v in result.items() if not key.endswith("_per_frame")}
    curves = {m: result[f"{m}_per_frame"] for m in metrics if result.get(f"{m}_per_frame") is not None}
    run = RunResult(name=name, metrics=scalars, notes=dict(acc.notes), per_frame=curves, num_samples=k,
                    checkpoint=Path(ckpt_path), checkpoint_step=model.checkpoint_step, out_dir=out_dir)
    if checkpoint_note:
        run.notes["checkpoint"] = checkpoint_note
    _add_notes(run, model, dataset, split, checkpoint, collision_counts)
    if k > 1:
        run.best_of_samples = {key: v for key, v in best.items() if not key.endswith("_per_frame")}
        run.best_per_frame = {m: best[f"{m}_per_frame"] for m in metrics if best.get(f"{m}_per_frame") is not None}

    if shown:
        xs, ys, ps = (np.concatenate([s[j] for s in shown])[:num_vis] for j in range(3))
        run.shown = tuple(_denormalise_for_display(a, dataset) for a in (xs, ys, ps))
    if save_images and shown:
        try:
            _save_outputs(run, result, best, cfg, out_dir, f"{split}_ttt{ttt_steps}" if ttt is not None else split)
            if callable(getattr(model.backbone, "content_swap", None)):  # SRVP: the content/dynamics swap figure
                from ..backbones.srvp_swap import save_content_swap_figure

                swap = save_content_swap_figure(out_dir / f"content_swap_{split}.png", model.backbone, xs, ys,
                                                lambda a: _denormalise_for_display(a, dataset), device,
                                                cfg["train"]["seed"])
                run.images += [swap] if swap is not None else []
        except OSError as exc:
            run.unwritten.append(f"{exc.filename or out_dir}: {exc.strerror or exc}")
    return run
