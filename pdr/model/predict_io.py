"""What ``PDRModel.predict`` takes and gives back: arrays or tensors, float frames in the data's units or 8-bit
images, returned in the type they came in."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# float frames of 8-bit data beyond this many times the 8-bit range are taken for unscaled 0..255 images
_RANGE_SLACK = 1.5


@dataclass(frozen=True)
class InputType:
    """How the frames given to ``predict`` were typed, to give the prediction back the same way."""

    numpy: bool
    dtype: object  # numpy or torch dtype of the input
    device: torch.device | None
    uint8_scale: float | None  # set when the input was uint8: data units per 8-bit level


def _where(dataset: str | None) -> str:
    return f"this run's data ({dataset})" if dataset else "this model's data"


def to_model_units(frames, device, uint8_scale: float | None, dataset: str | None = None,
                   normalised: bool = False) -> tuple[Tensor, InputType]:
    """frames (a tensor, an array or nested lists) -> (float32 tensor on ``device``, how to give results back).

    uint8 frames are 8-bit images: multiplied by ``uint8_scale`` (the dataset's), refused when the data are not 8-bit
    images (``uint8_scale`` None) or the frames are already normalised. Float frames of 8-bit data far above the
    8-bit range (0..255 images passed as floats) are refused, as are integer and boolean frames."""
    if isinstance(frames, Tensor):
        x, kind = frames, InputType(numpy=False, dtype=frames.dtype, device=frames.device, uint8_scale=None)
    else:
        array = np.asarray(frames)
        x, kind = torch.from_numpy(np.ascontiguousarray(array)), InputType(True, array.dtype, None, None)
    if x.dtype == torch.uint8:
        if normalised:
            raise ValueError("predict: uint8 frames with normalised=True; normalised frames are floats in the model's "
                             "units")
        if uint8_scale is None:
            raise ValueError(f"predict: uint8 frames (0..255), but {_where(dataset)} are not 8-bit images: pass float "
                             "frames in the data's units (as the data set reads them)")
        kind = InputType(kind.numpy, kind.dtype, kind.device, float(uint8_scale))
        return x.to(device=device, dtype=torch.float32) * float(uint8_scale), kind
    if not x.dtype.is_floating_point:
        raise ValueError(f"predict: frames of type {str(kind.dtype).replace('torch.', '')}; expected float frames in "
                         "the data's units" + (" or uint8 images (0..255)" if uint8_scale is not None else ""))
    x = x.to(device=device, dtype=torch.float32)
    if uint8_scale is not None and not normalised and x.numel():
        top = 255.0 * float(uint8_scale)
        low, high = float(x.min()), float(x.max())
        if high > _RANGE_SLACK * top or low < -(_RANGE_SLACK - 1) * top:
            raise ValueError(
                f"predict: float frames range over [{low:g}, {high:g}], but {_where(dataset)} are 8-bit images scaled "
                f"to [0, {top:g}]: pass them as uint8 (0..255), or multiply them by {float(uint8_scale):g}")
    return x, kind


def from_model_units(y: Tensor, kind: InputType):
    """A prediction (float tensor in the data's units) in the type the input had (``to_model_units``)."""
    if kind.uint8_scale is not None:
        y = (y / kind.uint8_scale).round().clamp(0, 255).to(torch.uint8)
    if kind.numpy:
        return y.cpu().numpy().astype(kind.dtype, copy=False)
    return y.to(device=kind.device, dtype=kind.dtype)
