"""Look instead of read: animated GIFs of shown test sequences and one HTML page comparing runs.

``save_run_gifs`` writes one GIF per sequence a run shows (``RunResult.shown``); ``write_report`` writes
``index.html`` into a folder together with every file the page shows (table, per-frame curves, each run's
prediction grid, GIFs side by side), referenced by relative paths, so the folder can be moved or served as is.
"""
from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import numpy as np

from ..visualize import save_metric_curves, save_sequence_gif
from .table import comparison_curves


def save_run_gifs(run, folder: str | Path, prefix: str = "sequence", fps: float = 4.0) -> list[Path]:
    """``folder/<prefix>_<i>.gif`` for each sequence i (from 1) in ``run.shown``; [] when it shows none."""
    if run.shown is None:
        return []
    inputs, truth, pred = run.shown
    return [save_sequence_gif(Path(folder) / f"{prefix}_{i + 1}.gif", inputs[i], truth[i], pred[i], fps=fps)
            for i in range(len(inputs))]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "run"


def same_sequences(results) -> bool:
    """Whether every run shows the same observed and true frames (so its GIFs can stand side by side)."""
    shown = [r.shown for r in results if r.shown is not None]
    return all(s[0].shape == shown[0][0].shape and s[1].shape == shown[0][1].shape
               and np.allclose(s[0], shown[0][0]) and np.allclose(s[1], shown[0][1]) for s in shown[1:])


def _run_line(folder: Path, slug: str, run) -> str:
    """The checkpoint a run's row shows (and its step) and a link to the run's training curves, copied into
    ``folder/slug`` when the run folder has a curves.png."""
    line = f"<b>{html.escape(run.name)}</b>: checkpoint {html.escape(str(run.checkpoint))}"
    if getattr(run, "checkpoint_step", None) is not None:
        line += f" (step {run.checkpoint_step})"
    checkpoint = Path(run.checkpoint)
    curves = checkpoint.parent.parent / "curves.png" if checkpoint.parent.name == "checkpoints" else None
    if curves is not None and curves.is_file():
        (folder / slug).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(curves, folder / slug / "curves.png")
        line += f' &middot; <a href="{slug}/curves.png">training curves</a>'
    return line


def _table_html(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.gifs td { text-align: center; vertical-align: top; }
img { max-width: 100%; }
.note { color: #555; font-size: 90%; }
"""


def _copied_figures(folder: Path, slugs: list[str], results, prefix: str) -> list[str]:
    """Copy each run's first image whose name starts with ``prefix`` into ``folder/<slug>/``; its HTML, per run."""
    parts = []
    for slug, r in zip(slugs, results):
        image = next((Path(p) for p in r.images if Path(p).name.startswith(prefix)), None)
        if image is not None and image.is_file():
            target = folder / slug / image.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image, target)
            parts.append(f'<h3>{html.escape(r.name)}</h3><img src="{slug}/{image.name}" alt="{html.escape(r.name)}">')
    return parts


def write_report(folder: str | Path, results, header: list[str], rows: list[list[str]], notes=(),
                 curves: dict | None = None, title: str = "PDR evaluation", fps: float = 4.0) -> Path:
    """Write ``folder/index.html`` and the files it shows; returns the page's path.

    ``results``: the RunResults of the runs, in table order; ``header`` and ``rows``: the metrics table as
    text cells; ``notes``: lines shown under the table; ``curves``: ``{metric: {label: per-frame values}}``
    (default: ``table.comparison_curves(results)``). The page has the table, the checkpoint of each run (its
    file and step) with a link to its training curves (curves.png), one figure of per-frame metrics
    with every run, a grid of GIFs with one row per shown test sequence and one column per run, each run's
    prediction grid (when evaluation wrote one) and, for SRVP runs, the content/dynamics swap figure.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    notes = list(notes)
    parts = [f"<h1>{html.escape(title)}</h1>", "<h2>Metrics</h2>", _table_html(header, rows)]
    parts += [f'<p class="note">Note: {html.escape(n)}</p>' for n in notes]

    slugs = [f"{i + 1}_{_slug(r.name)}" for i, r in enumerate(results)]
    runs = [_run_line(folder, slug, r) for slug, r in zip(slugs, results) if getattr(r, "checkpoint", None)]
    if runs:
        parts += ["<h2>Runs</h2>", "<ul>" + "".join(f"<li>{line}</li>" for line in runs) + "</ul>"]
    if curves is None:
        curves = comparison_curves(results)
    if curves:
        save_metric_curves(folder / "per_frame.png", curves, title="per predicted frame")
        parts += ["<h2>Per predicted frame</h2>", '<img src="per_frame.png" alt="metrics per predicted frame">']

    grids = _copied_figures(folder, slugs, results, "predictions_")
    swaps = _copied_figures(folder, slugs, results, "content_swap_")

    gifs = {slug: save_run_gifs(r, folder / slug, fps=fps) for slug, r in zip(slugs, results)}
    count = max((len(v) for v in gifs.values()), default=0)
    if count:
        parts.append("<h2>Test sequences</h2>")
        if not same_sequences(results):
            parts.append('<p class="note">The runs show different test sequences (their data settings differ): '
                         'a row compares the same position in each run\'s test split, not the same sequence.</p>')
        head = "<th>sequence</th>" + "".join(f"<th>{html.escape(r.name)}</th>" for r in results)
        body = ""
        for i in range(count):
            cells = "".join(
                f'<td><img src="{slug}/{gifs[slug][i].name}" alt="{html.escape(r.name)}, sequence {i + 1}"></td>'
                if i < len(gifs[slug]) else "<td>-</td>" for slug, r in zip(slugs, results))
            body += f"<tr><td>{i + 1}</td>{cells}</tr>"
        parts.append(f'<table class="gifs"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
        parts.append('<p class="note">Each GIF shows the observed frames, then the truth (left) and the prediction '
                     '(right) with the frame index in the whole sequence.</p>')

    if grids:
        parts += ["<h2>Prediction grids</h2>", *grids]
    if swaps:
        parts += ["<h2>Content / dynamics swap</h2>",
                  '<p class="note">Each block: the content of the first row decoded with the dynamics of the second '
                  '(observed frames, then one sample of the future).</p>', *swaps]

    page = folder / "index.html"
    page.write_text("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + html.escape(title)
                    + f"</title><style>{STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
    return page
