"""Words that messages and logs share, so that every tool says a thing the same way."""
from __future__ import annotations


def count(n: int, word: str) -> str:
    """``1 epoch``, ``3 epochs``, ``2 processes``: ``n`` and ``word`` in the number ``n`` asks for."""
    return f"{n} {word}" if n == 1 else f"{n} {word}es" if word.endswith("s") else f"{n} {word}s"


def describe_budget(train: dict) -> str:
    """A ``train`` section's budget: ``1 step``, ``300 steps`` (``max_steps``) or ``1 epoch``, ``20 epochs``."""
    return count(train["max_steps"], "step") if train["max_steps"] else count(train["epochs"], "epoch")
