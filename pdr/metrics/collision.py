"""Collision correctness: predicted collision probabilities per step against 0/1 event labels.

Not a frame metric: ``collision_scores(prob, label)`` or ``CollisionAccumulator`` (batch by batch).
A step is predicted as a collision when its probability is >= ``threshold`` (0.5).
"""
from __future__ import annotations

import numpy as np

from .accumulator import to_numpy
from .registry import register

for _name, _higher, _definition in (
    ("collision_accuracy", True, "fraction of predicted steps whose collision / no collision is right"),
    ("collision_precision", True, "TP / (TP + FP) over predicted steps (1 when nothing is positive in either)"),
    ("collision_recall", True, "TP / (TP + FN) over predicted steps (1 when nothing is positive in either)"),
    ("collision_f1", True, "2 TP / (2 TP + FP + FN) (1 when nothing is positive in either)"),
    ("collision_timing_error", False, "per true collision step of a clip with a predicted collision: frames to "
                                      "the nearest predicted collision step, averaged"),
):
    register(_name, "collision", _higher, _definition, kind="collision")(None)


def _counts(prob, label, threshold: float) -> tuple[np.ndarray, list[float]]:
    """[TP, FP, FN, TN] and the timing errors (frames) of probabilities ``prob`` (B, T) against labels."""
    prob, label = to_numpy(prob), to_numpy(label)
    if prob.shape != label.shape:
        raise ValueError(f"prob and label must have the same shape, got {prob.shape} and {label.shape}")
    predicted, actual = prob >= threshold, label >= 0.5
    counts = np.array([(predicted & actual).sum(), (predicted & ~actual).sum(),
                       (~predicted & actual).sum(), (~predicted & ~actual).sum()], dtype=np.int64)
    timing = []
    rows_p, rows_a = (np.atleast_2d(m) for m in (predicted, actual))  # one row of steps per clip
    for p, a in zip(rows_p.reshape(-1, rows_p.shape[-1]), rows_a.reshape(-1, rows_a.shape[-1])):
        steps_p, steps_a = np.flatnonzero(p), np.flatnonzero(a)
        if len(steps_p) and len(steps_a):
            timing += np.abs(steps_a[:, None] - steps_p[None, :]).min(axis=1).astype(float).tolist()
    return counts, timing


def _scores(counts: np.ndarray, timing: list[float]) -> dict:
    """Accuracy, precision, recall, F1 and timing error from [TP, FP, FN, TN] and the timing errors.

    Precision (recall) with no predicted (true) positives is 1.0 when there are no true (predicted) positives
    either, else 0.0; F1 = 2 TP / (2 TP + FP + FN), 1.0 when nothing is positive in either. The timing error
    is None when no clip has both a true and a predicted collision.
    """
    tp, fp, fn, tn = (int(v) for v in counts)
    total = tp + fp + fn + tn
    if not total:
        raise ValueError("no collision labels were given")
    perfect = 1.0 if fp + fn == 0 else 0.0
    return {
        "collision_accuracy": (tp + tn) / total,
        "collision_precision": tp / (tp + fp) if tp + fp else perfect,
        "collision_recall": tp / (tp + fn) if tp + fn else perfect,
        "collision_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        "collision_timing_error": float(np.mean(timing)) if timing else None,
        "collision_count": total,
    }


def collision_scores(prob, label, threshold: float = 0.5) -> dict:
    """Collision accuracy, precision, recall, F1 and timing error of probabilities ``prob`` (B, T_out) (or
    (T_out,)) thresholded at ``threshold`` against 0/1 labels of the same shape; ``collision_count`` steps."""
    return _scores(*_counts(prob, label, threshold))


class CollisionAccumulator:
    """``collision_scores`` over batches: ``update(prob, label)`` per batch, ``compute()`` at the end."""

    def __init__(self, threshold: float = 0.5):
        self.threshold = float(threshold)
        self._counts = np.zeros(4, dtype=np.int64)
        self._timing: list[float] = []

    def update(self, prob, label) -> None:
        counts, timing = _counts(prob, label, self.threshold)
        self._counts += counts
        self._timing += timing

    @property
    def empty(self) -> bool:
        return not self._counts.sum()

    def compute(self) -> dict:
        return _scores(self._counts, self._timing)
