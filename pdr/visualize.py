"""Pictures people would rather look at than numbers: prediction grids and per-frame metric curves."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _layout(fig, title: str):
    """Title and tight layout. The title gets a band of fixed height at the top: placed in fractions of
    the figure, as by default, it sinks into the first row of a tall figure."""
    if not title:
        fig.tight_layout()
        return fig
    height = fig.get_figheight()
    fig.suptitle(title, fontsize=9, y=1.0 - 0.05 / height, va="top")
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.25 / height))
    return fig


def _finish(fig, path: str | Path, title: str, dpi: int) -> Path:
    """Title, tight layout, write the PNG (creating its folder), close the figure."""
    _layout(fig, title)
    return _save(fig, path, dpi)


def _save(fig, path: str | Path, dpi: int) -> Path:
    plt = _pyplot()
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


def _wrap_label(label: str, width: int = 14) -> str:
    """Break a row label into lines of about ``width`` characters after ``_``, ``/``, ``-`` or spaces."""
    lines = [""]
    for token in re.split(r"(?<=[_/\- ])", label):
        if lines[-1] and len(lines[-1]) + len(token) > width:
            lines.append("")
        lines[-1] += token
    return "\n".join(line.strip() for line in lines)


def save_prediction_grid(
    path: str | Path,
    inputs: np.ndarray,
    truth: np.ndarray,
    pred: np.ndarray | dict[str, np.ndarray],
    title: str = "",
    max_frames: int = 10,
    row_labels: tuple[str, str] = ("input", "truth"),
) -> Path:
    """The figure of ``prediction_grid_figure`` written as a PNG at ``path``."""
    return _save(prediction_grid_figure(inputs, truth, pred, title, max_frames, row_labels), path, dpi=90)


def prediction_grid_figure(
    inputs: np.ndarray,
    truth: np.ndarray,
    pred: np.ndarray | dict[str, np.ndarray],
    title: str = "",
    max_frames: int = 10,
    row_labels: tuple[str, str] = ("input", "truth"),
):
    """One block of rows per sequence: input, truth, then one row per prediction (a laid-out Figure).

    inputs (S, T_in, C, H, W), truth (S, T_out, C, H, W), values in display range [0, 1]; ``pred`` is one
    (S, T_out, C, H, W) array (row label "prediction") or ``{row label: array}`` to show several models'
    predictions of the same sequences in adjacent rows. Data with neither 1 nor 3 channels shows channel 0
    with a colour map. ``row_labels``: the labels of the first two rows of a block. The first block's input and
    truth rows carry each frame's index in the whole sequence (inputs t=1..T_in, truth and predictions
    t=T_in+1...).
    """
    plt = _pyplot()
    preds = pred if isinstance(pred, dict) else {"prediction": pred}
    s, t_in = inputs.shape[:2]
    t_out = truth.shape[1]
    cols = min(max(t_in, t_out), max_frames)
    per_block = 2 + len(preds)
    vmin, vmax = float(min(inputs.min(), truth.min())), float(max(inputs.max(), truth.max()))
    fig, axes = plt.subplots(per_block * s, cols, figsize=(1.1 * cols, 1.2 * per_block * s), squeeze=False)
    for k in range(s):
        rows = [(row_labels[0], inputs[k]), (row_labels[1], truth[k])] + [(label, p[k]) for label, p in preds.items()]
        for r, (label, frames) in enumerate(rows):
            for c in range(cols):
                ax = axes[per_block * k + r, c]
                ax.set_xticks([])
                ax.set_yticks([])
                if c < frames.shape[0]:
                    image, cmap = _displayable(frames[c])
                    ax.imshow(image, cmap=cmap, vmin=vmin if cmap else None, vmax=vmax if cmap else None)
                else:
                    ax.axis("off")
                if c == 0:  # horizontal: a rotated label longer than the row is cut by its neighbours
                    ax.set_ylabel(_wrap_label(label), fontsize=7, rotation=0, ha="right", va="center")
                if k == 0 and r < 2 and c < frames.shape[0]:  # inputs are t=1..T_in, the future t=T_in+1...
                    ax.set_title(f"t={c + 1 + (t_in if r == 1 else 0)}", fontsize=7)
    return _layout(fig, title)


def save_metric_curves(path: str | Path, curves: dict, title: str = "") -> Path:
    """One panel per metric: value against the index of the predicted frame.

    ``curves`` maps a metric to its values, or to ``{run name: values}`` to compare runs in one figure.
    """
    return _save(metric_curves_figure(curves, title), path, dpi=100)


def metric_curves_figure(curves: dict, title: str = ""):
    """The figure of ``save_metric_curves``, laid out, not saved. A run keeps one colour and line style in every
    panel, and one legend beside the panels names every run of any panel."""
    plt = _pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    names = [k for k, v in curves.items() if len(v)]
    labels = list(dict.fromkeys(label for k in names if isinstance(curves[k], dict) for label in curves[k]))
    styles = {label: {"color": f"C{i % 10}", "linestyle": ("-", "--", ":", "-.")[i // 10 % 4]}
              for i, label in enumerate(labels)}
    fig, axes = plt.subplots(1, len(names), figsize=(3.0 * len(names), 2.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        series = curves[name] if isinstance(curves[name], dict) else {"": curves[name]}
        for label, values in series.items():
            ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, **styles.get(label, {"color": "C0"}))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("predicted frame", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if len(labels) > 1:
        handles = [Line2D([], [], marker="o", markersize=3, label=label, **styles[label]) for label in labels]
        axes[0][-1].legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.03, 1.0),
                           borderaxespad=0.0, ncol=-(-len(labels) // 8))
    return _layout(fig, title)


def save_training_curves(path: str | Path, rows: list[dict],
                         keys: Sequence[str] = ("train/loss", "val/loss", "val/mse", "val/psnr", "val/ssim")) -> Path:
    """One panel per logged value against the optimiser step; ``rows`` are those of metrics.csv (a row without a
    value for a key, or an empty one, adds no point to its panel). Panels without any point are left out."""
    plt = _pyplot()
    series = {}
    for key in keys:
        points = [(int(row["step"]), float(row[key])) for row in rows if row.get(key) not in (None, "")]
        if points:
            series[key] = sorted(points)
    series = series or {keys[0]: []}
    fig, axes = plt.subplots(1, len(series), figsize=(3.2 * len(series), 2.8), squeeze=False)
    for ax, (key, points) in zip(axes[0], series.items()):
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o" if len(points) <= 30 else None, markersize=3)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    return _finish(fig, path, "", dpi=100)


def frames_to_rgb8(frames: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """(T, C, H, W) in display range -> uint8 (T, H, W, 3): RGB as is (clipped to [0, 1]), 1 channel grey and other
    channel counts channel 0 in viridis, both scaled from [vmin, vmax]."""
    if frames.shape[1] == 3:
        rgb = np.clip(frames.transpose(0, 2, 3, 1), 0, 1)
    else:
        scaled = np.clip((frames[:, 0] - vmin) / max(vmax - vmin, 1e-12), 0, 1)
        if frames.shape[1] == 1:
            rgb = np.repeat(scaled[..., None], 3, axis=-1)
        else:
            import matplotlib

            rgb = matplotlib.colormaps["viridis"](scaled)[..., :3]
    return (rgb * 255 + 0.5).astype(np.uint8)


def save_sequence_gif(
    path: str | Path,
    inputs: np.ndarray,
    truth: np.ndarray | None,
    pred: np.ndarray,
    fps: float = 4.0,
    min_height: int = 128,
    value_range: tuple[float, float] | None = None,
) -> Path:
    """An animated GIF of one sequence: the observed frames, then truth and prediction side by side.

    inputs (T_in, C, H, W), pred (T_out, C, H, W), truth (T_true, C, H, W) with T_true <= T_out (predicted frames
    past the truth show an empty truth panel) or None (only the prediction is shown after the inputs); values in
    display range [0, 1] (colours as in ``save_prediction_grid``; grey and other channel counts are scaled from
    ``value_range``, by default the range of inputs and truth). Frames are enlarged by an integer factor to at least
    ``min_height`` pixels and each carries a caption with its index in the whole sequence ("observed t=3",
    "truth t=11"). The GIF loops and holds its last frame for a second.
    """
    import imageio.v3 as iio
    from PIL import Image, ImageDraw, ImageFont

    if (inputs.ndim != 4 or pred.ndim != 4 or inputs.shape[1:] != pred.shape[1:]
            or truth is not None and (truth.ndim != 4 or truth.shape[1:] != pred.shape[1:] or len(truth) > len(pred))):
        raise ValueError(f"expected inputs (T_in, C, H, W), pred (T_out, C, H, W) and truth (T <= T_out, C, H, W) or "
                         f"None with the same C, H, W, got {inputs.shape}, {None if truth is None else truth.shape}, "
                         f"{pred.shape}")
    shown = inputs if truth is None else np.concatenate([inputs, truth])
    vmin, vmax = value_range if value_range is not None else (float(shown.min()), float(shown.max()))
    observed, predicted = frames_to_rgb8(inputs, vmin, vmax), frames_to_rgb8(pred, vmin, vmax)
    true = None if truth is None else frames_to_rgb8(truth, vmin, vmax)
    h, w = inputs.shape[2:]
    scale = max(1, -(-min_height // h))
    panel_w, panel_h, gap, header = w * scale, h * scale, 6, 18
    panels = 1 if truth is None else 2
    font = ImageFont.load_default(size=12)

    def canvas(*columns: tuple[np.ndarray | None, str]) -> np.ndarray:
        image = Image.new("RGB", (panels * panel_w + (panels - 1) * gap, header + panel_h), "white")
        for i, (frame, text) in enumerate(columns):
            x = i * (panel_w + gap)
            if frame is not None:
                image.paste(Image.fromarray(frame).resize((panel_w, panel_h), Image.NEAREST), (x, header))
            else:
                image.paste((235, 235, 235), (x, header, x + panel_w, header + panel_h))
            ImageDraw.Draw(image).text((x + 2, 2), text, fill="black", font=font)
        return np.asarray(image)

    t_in = len(observed)
    frames = [canvas((f, f"observed t={t + 1}"), *[(None, "")] * (panels - 1)) for t, f in enumerate(observed)]
    for t, p in enumerate(predicted):
        caption = f"prediction t={t_in + t + 1}"
        if true is None:
            frames.append(canvas((p, caption)))
        else:
            frames.append(canvas((true[t], f"truth t={t_in + t + 1}") if t < len(true) else (None, "no truth"),
                                 (p, caption)))
    durations = [1000 / fps] * (len(frames) - 1) + [1000.0]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, np.stack(frames), extension=".gif", duration=durations, loop=0)
    return path


def save_validation_curve(path: str | Path, steps: Sequence[int], values: Sequence[float], name: str,
                          window: tuple[int, int] | None = None, title: str = "") -> Path:
    """One validation value against the training step, with the steps of ``window`` (first, last) shaded."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 3.0))
    ax.plot(list(steps), list(values), marker="o", markersize=3)
    if window is not None:
        ax.axvspan(window[0], window[1], color="C1", alpha=0.15, lw=0)
    ax.set_xlabel("training step", fontsize=8)
    ax.set_ylabel(name, fontsize=8)
    ax.grid(alpha=0.3)
    return _finish(fig, path, title, dpi=100)
