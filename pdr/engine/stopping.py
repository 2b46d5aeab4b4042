"""Early stopping (``train.early_stop``): end a run whose validation value stopped improving."""
from __future__ import annotations

from ..metrics import higher_is_better


def improves(value: float, best: float | None, higher_is_better: bool, min_delta: float = 0.0) -> bool:
    """Whether ``value`` beats ``best`` (None: nothing yet) by more than ``min_delta`` in the metric's direction."""
    if best is None:
        return True
    return value > best + min_delta if higher_is_better else value < best - min_delta


class EarlyStopping:
    """Counts validations in which ``monitor`` did not improve on its best by more than ``min_delta``;
    ``update`` says stop once ``patience`` of them came in a row."""

    def __init__(self, monitor: str, patience: int, min_delta: float, higher_is_better: bool):
        self.monitor, self.patience, self.min_delta = monitor, int(patience), float(min_delta)
        self.higher_is_better = bool(higher_is_better)
        self.best: float | None = None
        self.bad_validations = 0

    def update(self, row: dict) -> bool:
        """Take one validation row (``{"val/mse": ..., ...}``); True when training should stop."""
        value = float(row[self.monitor])
        if improves(value, self.best, self.higher_is_better, self.min_delta):
            self.best, self.bad_validations = value, 0
        else:
            self.bad_validations += 1
        return self.should_stop

    @property
    def should_stop(self) -> bool:
        return self.bad_validations >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_validations": self.bad_validations}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad_validations = state["best"], state["bad_validations"]


def build_early_stopping(train: dict) -> EarlyStopping | None:
    """The early stopping a ``train`` section asks for (``early_stop.patience`` set), else None. It watches
    ``early_stop.monitor``, by default ``train.monitor``, in the metric's direction."""
    stop = train["early_stop"]
    if stop["patience"] is None:
        return None
    watched = stop["monitor"] or train["monitor"]
    return EarlyStopping(watched, stop["patience"], stop["min_delta"], higher_is_better(watched.split("/")[-1]))
