"""What the training loop does with a non-finite loss: skip the update, and stop after too many in a row."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..errors import PDRError

log = logging.getLogger("pdr")


class NonFiniteLossError(PDRError):
    """Too many non-finite losses in a row."""


class NonFinitePolicy:
    """Counts steps whose loss was not finite; ``limit`` of them in a row stop the run with a NonFiniteLossError
    that says where the last good checkpoint (``last_checkpoint``) is."""

    def __init__(self, limit: int, last_checkpoint: Path):
        self.limit, self.last_checkpoint = limit, last_checkpoint
        self.in_a_row = 0

    def finite(self) -> None:
        self.in_a_row = 0

    def skipped(self, step: int, step_terms: list[dict]) -> None:
        """Warn about the update skipped at ``step``, whose micro-batches had the loss terms ``step_terms``."""
        self.in_a_row += 1
        bad = sorted({k for s in step_terms for k, v in s.items()
                      if k not in ("loss", "nonfinite") and not torch.isfinite(v).all()})
        log.warning("step %d: non-finite loss (terms: %s); update skipped (%d in a row)", step,
                    ", ".join(bad) or "loss", self.in_a_row)
        if self.in_a_row >= self.limit:
            last = self.last_checkpoint
            kept = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written yet"
            raise NonFiniteLossError(
                f"stopped at step {step}: {self.in_a_row} non-finite losses in a row "
                f"(terms: {', '.join(bad) or 'loss'}; train.max_nonfinite_steps={self.limit}); {kept}. Lower optim.lr, "
                "set optim.grad_clip or check the data"
            )
