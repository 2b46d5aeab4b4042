"""``metrics.csv`` of a run: one row per logged training step (``train/...`` values and ``lr``) and one per
validation (``val/...`` values), each with its ``epoch`` and ``step``; a row leaves the other kind's columns
empty. Columns are added as values appear (the file is rewritten with the wider header, rarely: the first
validation, a new loss term), so a reader always finds one header for the whole file.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path


class MetricsFile:
    """The CSV at ``path``: ``append`` rows, ``rows`` to read them back, ``drop_after`` to forget rows past a step."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def header(self) -> list[str]:
        if not self.path.is_file():
            return []
        with self.path.open(newline="") as fh:
            return next(csv.reader(fh), [])

    def rows(self) -> list[dict]:
        """Every row as ``{column: value}``: numbers as floats (``step`` and ``epoch`` as ints), empty cells left out."""
        if not self.path.is_file():
            return []
        with self.path.open(newline="") as fh:
            return [{k: _number(k, v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(fh)]

    def append(self, row: dict) -> None:
        header = self.header()
        new = [k for k in row if k not in header]
        if new:
            self._rewrite(self._raw_rows(), header + new)
            header = header + new
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=header, restval="").writerow(row)

    def drop_after(self, step: int) -> None:
        """Forget the rows of steps after ``step`` (a resumed run logs them again from its checkpoint)."""
        rows = self._raw_rows()
        kept = [r for r in rows if not r.get("step") or int(float(r["step"])) <= step]
        if len(kept) < len(rows):
            self._rewrite(kept, self.header())

    def _raw_rows(self) -> list[dict]:
        if not self.path.is_file():
            return []
        with self.path.open(newline="") as fh:
            return list(csv.DictReader(fh))

    def _rewrite(self, rows: list[dict], header: list[str]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=header, restval="")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)


def _number(key: str, value: str):
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if key in ("step", "epoch") else number
