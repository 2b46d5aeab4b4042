"""The one evaluation loop: training's validation and tools/eval.py both score a model with ``evaluate``."""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
from tqdm import tqdm

from ..data import split_batch
from ..metrics import VALIDATION_METRICS, MetricAccumulator
from . import distributed as dist


@torch.no_grad()
def evaluate(predict: Callable, loader, accumulator, device, max_batches: int | None = None, loss_fn=None,
             on_batch: Callable | None = None, distributed: bool = False, desc: str | None = None) -> dict:
    """Feed ``predict``'s output on each batch of ``loader`` (the first ``max_batches``) to ``accumulator``.

    Args:
        predict: ``predict(x, y)`` with inputs x (B, T_in, C, H, W) and targets y (B, T_out, C, H, W) on
            ``device`` returns what ``accumulator.update(prediction, y)`` takes: a prediction
            (B, T_out, C, H, W), or K samples (B, K, T_out, C, H, W) for ``pdr.results.evaluation.SampleMetrics``.
        loss_fn: when given, the result holds ``"loss"``, the mean of ``loss_fn(prediction, y)["loss"]``
            over sequences.
        on_batch: ``on_batch(i, x, y, prediction)`` after batch i is scored (example frames, collisions).
        distributed: sum the loss and the accumulator over every process (``accumulator.all_reduce``).
        desc: show a progress bar with this label (when stderr is a terminal).

    Returns:
        ``{"loss": value}`` with ``loss_fn``, else ``{}``; the metrics are in ``accumulator``.
    """
    total = torch.zeros(2, dtype=torch.float64)
    batches = loader
    if desc is not None:
        count = len(loader) if max_batches is None else min(len(loader), max_batches)
        batches = tqdm(loader, total=count, desc=desc, leave=False, dynamic_ncols=True, disable=None)  # a terminal only
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        x, y, _ = split_batch(batch, device)
        pred = predict(x, y)
        if loss_fn is not None:
            total += torch.tensor([loss_fn(pred, y)["loss"].item() * x.shape[0], x.shape[0]], dtype=torch.float64)
        accumulator.update(pred, y)
        if on_batch is not None:
            on_batch(i, x, y, pred)
    if distributed:
        total = dist.all_reduce_sum(total)
        accumulator.all_reduce()
    return {} if loss_fn is None else {"loss": (total[0] / total[1].clamp(min=1)).item()}


@torch.no_grad()
def validation_scores(model, loader, loss_fn, device, autocast: Callable = contextlib.nullcontext,
                      max_batches: int | None = None) -> tuple[dict, tuple | None]:
    """Loss and ``VALIDATION_METRICS`` of ``model`` on ``loader`` (a ``pdr.data.VideoLoader``), summed over every
    process, and the first sequence's (truth, prediction), each (T_out, C, H, W) on the CPU.

    Backbones with ``validates_reconstruction`` (latent_flow's VAE phase) are scored on
    ``backbone.reconstruct(targets)`` instead of a prediction, so the best checkpoint is the best auto-encoder.
    ``autocast()`` is the mixed-precision context of the forward passes.
    """
    model.eval()
    acc = MetricAccumulator(VALIDATION_METRICS, **loader.normalisation.metric_options())
    reconstructs = model.backbone.validates_reconstruction
    examples = []

    def predict(x, y):
        with autocast():  # a model still learning to encode frames is judged on its reconstructions
            return (model.reconstruct(y) if reconstructs else model(x)).float()

    def keep_example(i, x, y, pred):
        if i == 0:
            examples.append((y[0].cpu(), pred[0].cpu()))

    loss = evaluate(predict, loader, acc, device, max_batches, loss_fn=loss_fn, on_batch=keep_example,
                    distributed=True)
    return {**loss, **acc.compute()}, (examples[0] if examples else None)
