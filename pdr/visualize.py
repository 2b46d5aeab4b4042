"""Pictures people would rather look at than numbers: prediction grids and per-frame metric curves."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, path: str | Path, title: str, dpi: int) -> Path:
    """Title, tight layout, write the PNG (creating its folder), close the figure."""
    plt = _pyplot()
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _displayable(frame: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(C, H, W) -> an image for imshow and its colormap (RGB for 3 channels, else channel 0)."""
    if frame.shape[0] == 3:
        return np.clip(frame.transpose(1, 2, 0), 0, 1), None
    return frame[0], "gray" if frame.shape[0] == 1 else "viridis"


def save_prediction_grid(
    path: str | Path,
    inputs: np.ndarray,
    truth: np.ndarray,
    pred: np.ndarray,
    title: str = "",
    max_frames: int = 10,
) -> Path:
    """One block of three rows (input / truth / prediction) per sequence.

    inputs (S, T_in, C, H, W), truth and pred (S, T_out, C, H, W), values in display range [0, 1].
    Data with neither 1 nor 3 channels shows channel 0 with a colour map.
    """
    plt = _pyplot()
    s, t_in = inputs.shape[:2]
    t_out = truth.shape[1]
    cols = min(max(t_in, t_out), max_frames)
    vmin, vmax = float(min(inputs.min(), truth.min())), float(max(inputs.max(), truth.max()))
    fig, axes = plt.subplots(3 * s, cols, figsize=(1.1 * cols, 1.2 * 3 * s), squeeze=False)
    for k in range(s):
        for r, (label, frames) in enumerate((("input", inputs[k]), ("truth", truth[k]), ("prediction", pred[k]))):
            for c in range(cols):
                ax = axes[3 * k + r, c]
                ax.set_xticks([])
                ax.set_yticks([])
                if c < frames.shape[0]:
                    image, cmap = _displayable(frames[c])
                    ax.imshow(image, cmap=cmap, vmin=vmin if cmap else None, vmax=vmax if cmap else None)
                else:
                    ax.axis("off")
                if c == 0:
                    ax.set_ylabel(label, fontsize=7)
                if k == 0 and r == 0:
                    ax.set_title(f"t={c + 1}", fontsize=7)
    return _finish(fig, path, title, dpi=90)


def save_metric_curves(path: str | Path, curves: dict, title: str = "") -> Path:
    """One panel per metric: value against the index of the predicted frame.

    ``curves`` maps a metric to its values, or to ``{run name: values}`` to compare runs in one figure.
    """
    plt = _pyplot()
    names = [k for k, v in curves.items() if v]
    fig, axes = plt.subplots(1, len(names), figsize=(3.0 * len(names), 2.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        series = curves[name] if isinstance(curves[name], dict) else {"": curves[name]}
        for label, values in series.items():
            ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=label or None)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("predicted frame", fontsize=8)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7)
    return _finish(fig, path, title, dpi=100)


def save_training_curves(path: str | Path, history: list[dict],
                         keys: Sequence[str] = ("train/loss", "val/loss", "val/mse", "val/psnr", "val/ssim")) -> Path:
    """One panel per logged value against the epoch; ``history`` holds the rows of metrics.csv."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        ax.plot(epochs, [row.get(key, float("nan")) for row in history], marker="o")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.grid(alpha=0.3)
    return _finish(fig, path, "", dpi=100)
