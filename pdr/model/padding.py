"""Any frame size: pad frames up to the multiple a backbone and its adapter need, crop predictions back.

A backbone or adapter declares the multiple of H and W it needs with ``size_multiple`` (a class method of
``pdr.backbones.Backbone`` and ``pdr.adapters.Adapter``, 1 by default). ``plan_padding`` finds the smallest
padded size that every part accepts; ``FramePadding`` pads (B, T, C, H, W) frames to it and crops them back.
The padding is split between the two sides of each axis (the extra pixel goes to the bottom or right).
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Callable

import torch.nn.functional as F
from torch import Tensor

from ..arg_types import signature

PAD_CHOICES = ("auto", "none")
PAD_MODES = ("replicate", "reflect")


@dataclass(frozen=True)
class FramePadding:
    """Pads (..., H, W) frames to (..., H + top + bottom, W + left + right) and crops them back.

    mode: "replicate" (repeat the border pixels) or "reflect" (mirror the frame at its border).
    """

    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0
    mode: str = "replicate"

    def __post_init__(self):
        if self.mode not in PAD_MODES:
            raise ValueError(f"padding mode must be one of {list(PAD_MODES)}, got {self.mode!r}")

    def __bool__(self) -> bool:
        return any((self.top, self.bottom, self.left, self.right))

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        return height + self.top + self.bottom, width + self.left + self.right

    def pad(self, x: Tensor | None) -> Tensor | None:
        """(..., H, W) -> (..., H + top + bottom, W + left + right); None stays None."""
        if x is None or not self:
            return x
        lead = x.shape[:-3]
        flat = x.reshape(-1, *x.shape[-3:])  # F.pad's replicate/reflect modes take (N, C, H, W)
        out = F.pad(flat, (self.left, self.right, self.top, self.bottom), mode=self.mode)
        return out.reshape(*lead, *out.shape[-3:])

    def crop(self, x: Tensor | None) -> Tensor | None:
        """(..., H_padded, W_padded) -> (..., H, W): the pixels of the original frame."""
        if x is None or not self:
            return x
        h, w = x.shape[-2:]
        return x[..., self.top: h - self.bottom, self.left: w - self.right]

    def describe(self, height: int, width: int) -> str:
        ph, pw = self.padded_size(height, width)
        return (f"{height}x{width} frames are padded to {ph}x{pw} ({self.mode}: {self.top} top, {self.bottom} bottom, "
                f"{self.left} left, {self.right} right) and predictions cropped back to {height}x{width}")


def _split(total: int) -> tuple[int, int]:
    return total // 2, total - total // 2


def plan_padding(height: int, width: int, multiple_of: Callable[[int, int], int], mode: str = "replicate",
                 max_rounds: int = 8) -> FramePadding:
    """The padding of height x width frames to the smallest size (H', W') with H' and W' multiples of
    ``multiple_of(H', W')`` (the parts' multiples may depend on the size they are built for: SRVP's automatic
    number of levels). ``FramePadding()`` (no padding) when the size already fits."""
    h, w = height, width
    for _ in range(max_rounds):
        m = max(1, int(multiple_of(h, w)))
        nh, nw = math.ceil(h / m) * m, math.ceil(w / m) * m
        if (nh, nw) == (h, w):
            break
        h, w = nh, nw
    else:
        raise ValueError(f"no padded size of {height}x{width} frames fits the model (the size multiple kept changing)")
    top, bottom = _split(h - height)
    left, right = _split(w - width)
    if mode == "reflect" and (max(top, bottom) >= height or max(left, right) >= width):
        raise ValueError(f"pad_mode reflect cannot pad {height}x{width} frames to {h}x{w} (reflection needs "
                          "the padding on each side to be smaller than the frame); use pad_mode: replicate")
    return FramePadding(top, bottom, left, right, mode)


def size_multiple_of(entry, shape: tuple[int, ...], arguments: dict, shape_key: str) -> int:
    """The multiple of H and W a registry entry (backbone or adapter class, preset or factory) needs when built with
    ``arguments`` and ``shape_key=shape`` (``in_shape`` (T, C, H, W) or ``frame_shape`` (C, H, W)): its
    ``size_multiple(shape, **every argument, defaults filled in)``; 1 for an entry that declares none."""
    declare = getattr(entry, "size_multiple", None)
    if declare is None:
        return 1
    full = {}
    for name, param in signature(entry).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or name in (shape_key, "out_frames",
                                                                                  "feature_channels"):
            continue
        if name in arguments:
            full[name] = arguments[name]
        elif param.default is not inspect.Parameter.empty:
            full[name] = param.default
    extra = {k: v for k, v in arguments.items() if k not in full}  # open-ended entries (**kwargs)
    try:
        return max(1, int(declare(tuple(shape), **full, **extra)))
    except (TypeError, ValueError):  # a bad argument: building the entry reports it with its own message
        return 1
