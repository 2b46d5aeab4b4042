"""What a benchmark download holds: files present and missing, and the sequences each split will have.

``inventory(name, root, **data_kwargs)`` returns lines for a person to read; tools/prepare_data.py
prints them. The split sizes come from building the real datasets, so every problem a training run
would hit (a corrupt file, a size mismatch) shows up here with the same message.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from ..errors import DataError
from ..registry import DATASETS
from .base import SPLITS

BENCHMARKS = ("moving_mnist", "taxibj", "weatherbench", "kth", "human36m")


def _mark(path: Path) -> str:
    if path.is_file():
        return f"  [present] {path.name} ({path.stat().st_size / 2**20:.1f} MiB)"
    return f"  [missing] {path.name}"


def _files_moving_mnist(root: Path, **_) -> list[str]:
    from .moving_mnist import find_idx

    lines = []
    for prefix in ("train", "t10k"):
        found = find_idx(root, prefix)
        lines.append(_mark(found) if found else f"  [missing] {prefix}-images-idx3-ubyte[.gz]")
    lines.append(_mark(root / "mnist_test_seq.npy") + ("" if (root / "mnist_test_seq.npy").is_file()
                                                      else " (optional: the test set is generated instead)"))
    return lines


def _files_taxibj(root: Path, **_) -> list[str]:
    from .taxibj import H5_NAMES, NPZ_NAME

    lines = [_mark(root / NPZ_NAME)] + [_mark(root / name) for name in H5_NAMES]
    lines.append("  (either dataset.npz or the h5 files are enough)")
    return lines


def _files_weatherbench(root: Path, variable="t2m", train_years=(2010, 2015), val_years=(2016, 2016),
                        test_years=(2017, 2018), **_) -> list[str]:
    from .weatherbench import VARIABLES, _years

    lines = []
    for short in [variable] if isinstance(variable, str) else variable:
        folder = VARIABLES.get(short, short)
        for split, years in (("train", train_years), ("val", val_years), ("test", test_years)):
            for year in _years(years, f"{split}_years"):
                name = f"{folder}_{year}_5.625deg.nc"
                path = root / folder / name if (root / folder / name).is_file() or not (root / name).is_file() else root / name
                lines.append(_mark(path) + f"  [{split}]")
    return lines


def _files_kth(root: Path, **_) -> list[str]:
    from .clips import find_sources
    from .kth import ACTIONS, parse_name

    found = [info for p in find_sources(root) if (info := parse_name(p))]
    per_action = Counter(action for _, action, _ in found)
    persons = sorted({person for person, _, _ in found})
    lines = [f"  {action}: {per_action.get(action, 0)} videos (100 expected: 25 persons x 4 scenarios)" for action in ACTIONS]
    missing = sorted(set(range(1, 26)) - set(persons))
    lines.append(f"  persons present: {len(persons)} of 25" + (f"; missing {missing}" if missing else ""))
    return lines


def _files_human36m(root: Path, **_) -> list[str]:
    from .clips import find_sources
    from .human36m import subject_of

    folders = [p for p in find_sources(root) if p.is_dir()]
    per_subject = Counter(subject_of(p.relative_to(root)) for p in folders)
    lines = [f"  S{s}: {per_subject.get(s, 0)} frame folders" for s in (1, 5, 6, 7, 8, 9, 11)]
    unnamed = per_subject.get(None, 0)
    if unnamed:
        lines.append(f"  {unnamed} frame folders without a subject (S<number>) in their path: ignored")
    return lines


FILES = {"moving_mnist": _files_moving_mnist, "taxibj": _files_taxibj, "weatherbench": _files_weatherbench,
         "kth": _files_kth, "human36m": _files_human36m}


def inventory(name: str, root: str | Path, in_frames: int, out_frames: int, **data_kwargs) -> tuple[list[str], bool]:
    """(lines to print, whether every split can be built) for benchmark ``name`` in ``root``."""
    if name not in FILES:
        raise DataError(f"no inventory for dataset {name!r}; benchmarks: {', '.join(BENCHMARKS)}")
    root = Path(root)
    lines = [f"{name} in {root.resolve()}"]
    if not root.is_dir():
        lines.append("  [missing] the folder itself")
    else:
        lines += FILES[name](root, **data_kwargs)
    lines.append(f"sequences per split ({in_frames} -> {out_frames} frames):")
    ok = True
    for split in SPLITS:
        try:
            ds = DATASETS.build(name, split=split, in_frames=in_frames, out_frames=out_frames, root=str(root),
                                **data_kwargs)
            lines.append(f"  {split:5s} {len(ds):>8,}")
        except DataError as exc:
            ok = False
            message = re.sub(r"\s+", " ", str(exc))
            lines.append(f"  {split:5s} unusable: {message}")
    return lines, ok
