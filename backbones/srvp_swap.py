"""The content/dynamics swap of SRVP as a figure; tools/eval.py writes one for every SRVP run, and its report
shows it.

Pair i of the shown test sequences decodes the dynamics of sequence i+1 with the content of sequence i
(``SRVP.content_swap``). The rows of a pair: the content sequence and the dynamics sequence (observed, then
true frames), then the swap (the dynamics sequence's observed states, then one prior sample, decoded with the
other sequence's content). A content variable that carries the appearance shows the objects of the first row
moving as in the second.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .srvp import SRVP


def swap_pairs(net: SRVP, inputs: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """inputs (S, T_in, C, H, W), S >= 2 -> (S, T_in + T_out, C, H, W): row i has the content of sequence i and
    the dynamics of sequence (i + 1) mod S. The prior samples come from ``seed`` (the caller's random state is
    kept)."""
    if inputs.shape[0] < 2:
        raise ValueError(f"a content swap needs at least 2 sequences, got {inputs.shape[0]}")
    devices = [inputs.device.index or 0] if inputs.device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return net.content_swap(inputs, inputs.roll(-1, dims=0))


def save_content_swap_figure(path: str | Path, net: SRVP, inputs: np.ndarray, truth: np.ndarray,
                             display: Callable[[np.ndarray], np.ndarray] = lambda a: a, device="cpu",
                             seed: int = 0, max_pairs: int = 3, title: str = "") -> Path | None:
    """Write the swap figure of the first ``max_pairs`` pairs of sequences as a PNG at ``path``.

    inputs (S, T_in, C, H, W) and truth (S, T_out, C, H, W): the shown test sequences in the model's units;
    ``display`` maps arrays (N, T, C, H, W) in those units to the display range [0, 1]. Returns the path, or
    None when fewer than 2 sequences are shown.
    """
    from pdr.visualize import save_prediction_grid

    if len(inputs) < 2:
        return None
    was_training = net.training
    net.eval()
    try:
        swapped = swap_pairs(net, torch.as_tensor(inputs, dtype=torch.float32, device=device), seed).cpu().numpy()
    finally:
        net.train(was_training)
    whole = np.concatenate([inputs, truth], axis=1)
    n = min(max_pairs, len(inputs))
    content, dynamics = whole[:n], np.roll(whole, -1, axis=0)[:n]
    return save_prediction_grid(path, display(content), display(dynamics), {"swap": display(swapped[:n])},
                                title=title or "content of row 1, dynamics of row 2", max_frames=whole.shape[1],
                                row_labels=("content", "dynamics"))
