"""What a benchmark download holds: files present and missing, and the sequences each split will have.

``inventory(name, root, **data_kwargs)`` returns lines for a person to read; tools/prepare_data.py
prints them. Each dataset lists its own files (``VideoDataset.describe_files``); the split sizes come
from building the real datasets, so every problem a training run would hit (a corrupt file, a size
mismatch) shows up here with the same message.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import DataError
from ..registry import DATASETS
from .base import SPLITS
from .counts import build_split

BENCHMARKS = ("moving_mnist", "taxibj", "weatherbench", "kth", "human36m")


def inventory(name: str, root: str | Path, in_frames: int, out_frames: int, **data_kwargs) -> tuple[list[str], bool]:
    """(lines to print, whether every split can be built) for benchmark ``name`` in ``root``."""
    if name not in BENCHMARKS:
        raise DataError(f"no inventory for dataset {name!r}; benchmarks: {', '.join(BENCHMARKS)}")
    root = Path(root)
    lines = [f"{name} in {root.resolve()}"]
    if not root.is_dir():
        lines.append("  [missing] the folder itself")
    else:
        lines += DATASETS.get(name).describe_files(root, **data_kwargs) or []
    lines.append(f"sequences per split ({in_frames} -> {out_frames} frames):")
    ok = True
    for split in SPLITS:
        try:
            ds = build_split(name, split, in_frames, out_frames, root=str(root), **data_kwargs)
            lines.append(f"  {split:5s} {len(ds):>8,}")
        except DataError as exc:
            ok = False
            message = re.sub(r"\s+", " ", str(exc))
            lines.append(f"  {split:5s} unusable: {message}")
    return lines, ok
