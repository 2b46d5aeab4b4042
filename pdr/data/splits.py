"""Dividing a user's own data (sequences of array files, or videos) between train, val and test.

A split given files of its own (``data.train_files``, ``val_files``, ``test_files``) takes them. The splits
without files share the items that no split names, in proportion to ``data.split_fractions`` after a shuffle
with ``data.seed``; when every item is named by some split, they are cut from the train split's items instead
(a val split held out of a ``train`` folder, say). Every split must end up with at least one item.
"""
from __future__ import annotations

import glob
from pathlib import Path
from typing import Sequence, TypeVar

import numpy as np

from ..errors import DataError
from .base import SPLITS

Item = TypeVar("Item")


def check_fractions(value) -> dict[str, float]:
    """``split_fractions`` [train, val, test] as {split: fraction}: three numbers >= 0, not all zero."""
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value)
            or sum(value) <= 0):
        raise DataError(f"data.split_fractions: expected three numbers >= 0 for [train, val, test], e.g. "
                        f"[0.8, 0.1, 0.1], got {value!r}")
    return dict(zip(SPLITS, (float(v) for v in value)))


def _counts(n: int, weights: np.ndarray) -> np.ndarray:
    """``n`` items divided in proportion to ``weights`` (largest remainders), every positive weight getting one
    item when there are enough."""
    exact = weights / weights.sum() * n
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    for i in np.flatnonzero((counts == 0) & (weights > 0)):
        donor = int(np.argmax(counts))
        if counts[donor] > 1:
            counts[donor] -= 1
            counts[i] += 1
    return counts


def _as_array(items) -> np.ndarray:
    if isinstance(items, np.ndarray):
        return items
    out = np.empty(len(items), dtype=object)  # paths stay whole objects
    out[:] = list(items)
    return out


def assign_splits(pool: Sequence[Item], own: dict[str, Sequence[Item]], fractions, seed: int, what: str,
                  where: str) -> dict[str, np.ndarray]:
    """{split: items (a 1-D array, in the order of ``pool``)} for the three splits.

    pool: the items no split names, in a fixed order (sorted paths, then indices; an int array for many
    sequences). own: the items of the splits given files of their own. ``what`` names an item in messages
    ("sequence", "video"); ``where`` is the data's place (``data.root``'s path).
    """
    shares = check_fractions(fractions)
    out = {split: _as_array(items) for split, items in own.items()}
    sharing = [split for split in SPLITS if split not in own]
    source = _as_array(pool)
    if sharing and not len(source) and "train" in own:
        source, sharing = out.pop("train"), ["train", *sharing]
    if sharing:
        weights = np.array([shares[split] for split in sharing])
        counts = _counts(len(source), weights) if weights.sum() > 0 else np.zeros(len(sharing), int)
        order = np.random.default_rng(seed).permutation(len(source))
        start = 0
        for split, count in zip(sharing, counts):
            out[split] = source[np.sort(order[start : start + count])]
            start += count
    for split in SPLITS:
        if len(out[split]):
            continue
        if split in own:
            raise DataError(f"data.{split}_files: names no {what} ({where})")
        if shares[split] == 0:
            raise DataError(f"data.split_fractions: the {split} split gets a fraction of 0, but every split needs "
                            f"{what}s (train to learn, val to pick the checkpoint, test to evaluate); give it a "
                            f"fraction or data.{split}_files")
        raise DataError(f"{where}: {len(source)} {what}(s) cannot be divided between {', '.join(sharing)} with "
                        f"data.split_fractions {list(shares.values())}: every split needs at least one; add "
                        f"{what}s, or name each split's own files (data.train_files, data.val_files, data.test_files)")
    return out


def is_pattern(text: str) -> bool:
    """Whether a path names files by a glob pattern."""
    return any(ch in text for ch in "*?[")


def named_paths(base: Path, value, key: str) -> list[Path]:
    """The paths a ``data.<split>_files`` value names: a path or glob pattern, or a list of them, relative to
    ``base`` (a folder); each must exist or match something."""
    patterns = [value] if isinstance(value, str) else value
    if not isinstance(patterns, (list, tuple)) or not patterns or not all(isinstance(p, str) for p in patterns):
        raise DataError(f"data.{key}: expected a path or glob pattern, or a list of them, got {value!r}")
    found = []
    for pattern in patterns:
        path = Path(base) / pattern  # an absolute pattern stays as it is
        if is_pattern(pattern):
            matches = sorted(glob.glob(str(path), recursive=True))
            if not matches:
                raise DataError(f"data.{key}: nothing matches {path}")
            found += [Path(m) for m in matches]
        elif path.exists():
            found.append(path)
        else:
            raise DataError(f"data.{key}: {path} does not exist")
    return found
