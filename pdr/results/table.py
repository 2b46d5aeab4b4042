"""The results table of tools/eval.py and tools/compare.py: one row per run (two for a run of K sampled
futures: best of K and mean of K) as md, csv or json, and the per-frame curves of the same rows.

``results``: RunResults (``pdr.results.evaluation``) in row order.
"""
from __future__ import annotations

import csv
import io
import json

from ..metrics import METRICS

COLUMNS = tuple(METRICS)  # the table keeps the registry's order and shows the metrics that were computed


def table_columns(results) -> list[str]:
    """The computed metrics in ``COLUMNS`` order, each followed by its per-variable values (``mse_t2m``, ...)."""
    present = [key for r in results for key in r.metrics]
    columns = []
    for name in COLUMNS:
        if name in present:
            columns.append(name)
        if METRICS[name].per_variable:
            columns += sorted({key for key in present if key.startswith(f"{name}_") and key not in METRICS},
                              key=present.index)
    return columns


def _cell(value, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 100:
        return f"{value:.2f}"
    return f"{value:.{digits}f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"


def table_rows(results) -> list[tuple[str, dict]]:
    """(row label, metrics) per table row: one per run, two ("best of K", "mean of K") for a sampled run."""
    rows = []
    for r in results:
        k = getattr(r, "num_samples", 1)
        if k > 1:
            rows += [(f"{r.name} (best of {k})", r.best_of_samples), (f"{r.name} (mean of {k})", r.metrics)]
        else:
            rows.append((r.name, r.metrics))
    return rows


def format_table(results, fmt: str = "md") -> str:
    columns = table_columns(results)
    if fmt == "json":
        records = []
        for r in results:
            record = {"run": r.name, **r.metrics, "notes": r.notes}
            if getattr(r, "num_samples", 1) > 1:  # top-level values: mean of K
                record = {"run": r.name, "samples": r.num_samples, **r.metrics,
                          "best_of_samples": r.best_of_samples, "notes": r.notes}
            records.append(record)
        return json.dumps(records, indent=2)
    rows = table_rows(results)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["run", *columns])
        for label, values in rows:
            writer.writerow([label, *("" if values.get(c) is None else values[c] for c in columns)])
        return buf.getvalue().rstrip("\n")
    header, cells = table_cells(results)
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines + [f"\nNote: {n}" for n in table_notes(results)])


def table_cells(results) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the table as the text cells of the md format."""
    columns = table_columns(results)
    rows = [[label, *(_cell(values.get(c)) for c in columns)] for label, values in table_rows(results)]
    return ["run", *(c.upper() for c in columns)], rows


def table_notes(results) -> list[str]:
    """The lines printed as "Note: ..." under the table."""
    notes = sorted({note for r in results for note in r.notes.values()})
    sampled = sorted({r.num_samples for r in results if getattr(r, "num_samples", 1) > 1})
    if sampled:
        notes.append("best of K: per sequence and per metric, the sample closest to the truth by the metric's "
                     "direction (lowest MSE/MAE/LPIPS, highest PSNR/SSIM, ...; RMSE from the best MSE); mean of K: "
                     "the average over all samples; sharpness and FVD are reported for the mean only")
    return notes


def comparison_curves(results) -> dict:
    """``{metric: {row label: per-frame values}}`` with every run; a sampled run has a best-of-K and a mean-of-K curve."""
    metrics = [m for m in COLUMNS if any(m in r.per_frame for r in results)]
    curves = {m: {r.name: r.per_frame[m] for r in results if m in r.per_frame} for m in metrics}
    for r in results:
        for m in metrics:
            if getattr(r, "num_samples", 1) > 1 and m in r.best_per_frame:
                curves[m][f"{r.name} (best of {r.num_samples})"] = r.best_per_frame[m]
                curves[m][f"{r.name} (mean of {r.num_samples})"] = curves[m].pop(r.name)
    return curves
