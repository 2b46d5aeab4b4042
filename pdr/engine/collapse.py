"""The collapse warning of validation: predictions that fade toward the background (a flat frame) are named once.

A model trained with L1/SSIM on frames that are mostly background can settle on the background wherever it is
unsure (docs/ablations.md, sections 2, 3 and 9): the loss still falls while the objects vanish. The
``contrast`` validation metric (the prediction's pixel standard deviation over the truth's) shows it; below
``COLLAPSE_CONTRAST`` the training log gets one warning that names the run and says what to try.
"""
from __future__ import annotations

import logging

log = logging.getLogger("pdr")

COLLAPSE_CONTRAST = 0.25
KEY = "val/contrast"
ADVICE = ("try an MSE term beside L1/SSIM (loss.mse_weight, e.g. 5) with a warm-up of its weight (loss.warmup), "
          "starting from a model trained with MSE (model.init_from; tools/compare.py --base-steps) with its backbone "
          "frozen (model.freeze_backbone) or at a low learning rate (configs/_base_/finetune.yaml), or a longer "
          "budget; docs/ablations.md measures each")


def collapse_warning(history: list[dict], run: str) -> str | None:
    """The warning for the last validation row of ``history`` when its contrast is the first one under
    ``COLLAPSE_CONTRAST`` (so a run warns once, resumed or not); None otherwise."""
    if not history or history[-1].get(KEY) is None:
        return None
    value = history[-1][KEY]
    if not value < COLLAPSE_CONTRAST or any(row.get(KEY, 1.0) < COLLAPSE_CONTRAST for row in history[:-1]):
        return None
    return (f"run {run}: validation predictions collapse toward the background at step {history[-1].get('step')}: "
            f"their pixel standard deviation is {value:.2f} of the truth's (under {COLLAPSE_CONTRAST}); {ADVICE}")


def warn_on_collapse(history: list[dict], run: str) -> None:
    """Log ``collapse_warning`` when there is one."""
    message = collapse_warning(history, run)
    if message is not None:
        log.warning(message)
