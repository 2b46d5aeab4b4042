"""Predictions of a trained run on new clips (pdr-predict): read, predict in batches, write frames, GIFs and the
metrics of the clips that hold frames after the observed ones."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from ..errors import DataError, PDRError
from ..metrics import evaluate
from ..model import PDRModel
from .clip_io import Clip, FrameSpec, find_sources, read_clips, write_json, write_prediction

log = logging.getLogger("pdr")

CLIP_METRICS = ("mse", "mae", "psnr", "ssim")


def frame_spec(model: PDRModel) -> FrameSpec:
    """The frames a model takes: its (C, H, W) and its data's 8-bit scaling."""
    _, c, h, w = model.in_shape
    return FrameSpec(c, h, w, model.data_uint8_scale)


def _batches(clips: Iterable[Clip], size: int) -> Iterator[list[Clip]]:
    batch: list[Clip] = []
    for clip in clips:
        batch.append(clip)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _spatial_norm(model: PDRModel) -> bool:
    from ..registry import DATASETS

    cfg = model.config
    return bool(cfg is not None and getattr(DATASETS.get(cfg["data"]["name"]), "spatial_norm", False))


def clip_metrics(pred: np.ndarray, truth: np.ndarray, spatial_norm: bool = False) -> dict:
    """``CLIP_METRICS`` of one clip's first len(truth) predicted frames: pred and truth (T, C, H, W), data units."""
    scores = evaluate(pred[None, : len(truth)], truth[None], metrics=CLIP_METRICS, spatial_norm=spatial_norm)
    return {k: v for k, v in scores.items() if k != "notes"}


def predict_clips(model: PDRModel, inputs, out_dir: str | Path, num_frames: int | None = None, fmt: str = "png",
                  batch_size: int = 8, progress: bool = True) -> dict:
    """Predict ``num_frames`` (default: the run's T_out) frames after the first T_in of every clip of ``inputs``
    (paths: ``clip_io.find_sources``) and write them to ``out_dir`` (``clip_io.write_prediction``), with
    ``out_dir/metrics.json`` when some clip has frames after its observed ones. Returns the report: per clip its
    frame counts and metrics, and their mean over the scored clips."""
    if model.backbone.validates_reconstruction:
        raise PDRError("this run's model reconstructs frames and predicts none yet (a latent_flow vae-phase run); "
                       "predict with the run of a later phase")
    if batch_size < 1:
        raise PDRError(f"--batch-size must be >= 1, got {batch_size}")
    t_in, spec = model.in_frames, frame_spec(model)
    n = model.out_frames if num_frames is None else int(num_frames)
    if n < 1:
        raise PDRError(f"--frames must be >= 1, got {n}")
    sources = find_sources(inputs)
    out_dir = Path(out_dir)
    spatial_norm = _spatial_norm(model)
    rows: dict[str, dict] = {}
    bar = tqdm(total=len(sources), unit="input", desc="predict", disable=not progress or len(sources) < 2)

    def clips() -> Iterator[Clip]:
        for source in sources:
            yield from read_clips(source, spec, max_frames=t_in + n)
            bar.update(1)

    for batch in _batches(clips(), batch_size):
        for clip in batch:
            if len(clip.frames) < t_in:
                raise DataError(f"{clip.source}: {len(clip.frames)} frames, fewer than the {t_in} observed frames the "
                                "run predicts from")
            if clip.name in rows:
                raise DataError(f"{clip.source}: two inputs are named {clip.name!r}; their outputs would overwrite "
                                "each other")
            rows[clip.name] = {}
        pred = model.predict(np.stack([clip.frames[:t_in] for clip in batch]), num_frames=n)
        for clip, p in zip(batch, pred):
            truth = clip.frames[t_in: t_in + n]
            write_prediction(out_dir, clip.name, clip.frames[:t_in], p, truth if len(truth) else None, spec, fmt)
            row = {"source": str(clip.source), "observed_frames": t_in, "predicted_frames": n}
            if len(truth):
                row.update(compared_frames=len(truth), **clip_metrics(p, truth, spatial_norm))
            rows[clip.name] = row
    bar.close()
    scored = [r for r in rows.values() if "compared_frames" in r]
    mean = {k: float(np.mean([r[k] for r in scored if r.get(k) is not None]))
            for k in CLIP_METRICS if any(r.get(k) is not None for r in scored)}
    report = {"checkpoint": str(getattr(model, "checkpoint_path", "")), "observed_frames": t_in,
              "predicted_frames": n, "clips": rows, "mean": mean}
    if scored:
        write_json(out_dir / "metrics.json", report)
    return report
