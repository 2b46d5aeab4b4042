"""Training losses, registered in ``pdr.registry.LOSSES``.

Every loss maps prediction and target (B, T, C, H, W) to a dict of scalar tensors: ``loss``
(what is optimised) and its named terms (what the log shows, and what a non-finite check
can point at).
"""
from __future__ import annotations

from inspect import signature

import torch.nn.functional as F
from einops import rearrange
from kornia.filters import spatial_gradient
from kornia.metrics import ssim as kornia_ssim
from torch import Tensor, nn

from .registry import LOSSES


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")


class _ElementwiseLoss(nn.Module):
    """Mean of an elementwise error over every element, logged under its own name."""

    name = ""

    def __init__(self):  # no arguments: a config key such as `lam` is refused by name, not swallowed
        super().__init__()

    @staticmethod
    def error(pred: Tensor, target: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        _check_pair(pred, target)
        value = self.error(pred, target)
        return {"loss": value, self.name: value}


@LOSSES.register("mse")
class MSELoss(_ElementwiseLoss):
    """Mean squared error over every element."""

    name = "mse"
    error = staticmethod(F.mse_loss)


@LOSSES.register("l1")
class L1Loss(_ElementwiseLoss):
    """Mean absolute error over every element."""

    name = "l1"
    error = staticmethod(F.l1_loss)


def ssim_per_frame(pred: Tensor, target: Tensor, window_size: int = 11, data_range: float = 1.0) -> Tensor:
    """Mean SSIM of each frame over its pixels and channels: (B, T, C, H, W) -> (B, T).

    Gaussian window of ``window_size`` (kornia); frames smaller than the window use the largest odd window that fits.
    """
    b, t, c, h, w = pred.shape
    window = min(window_size, h - (h + 1) % 2, w - (w + 1) % 2)
    ssim_map = kornia_ssim(
        rearrange(pred, "b t c h w -> (b t) c h w"),
        rearrange(target, "b t c h w -> (b t) c h w"),
        window_size=window,
        max_val=data_range,
    )
    return ssim_map.mean(dim=(1, 2, 3)).view(b, t)


def gradient_difference(pred: Tensor, target: Tensor) -> Tensor:
    """Gradient difference after Mathieu et al. (2016), exponent 1: the mean over pixels, channels and both
    directions of ``| |d pred| - |d target| |``.

    (B, T, C, H, W) x 2 -> scalar. Zero when the prediction has the truth's edge magnitudes, wherever its
    values are; a blurred or faded prediction pays for every edge it lost. Unlike the paper's neighbour
    differences, ``d`` is the central difference ``(x[i+1] - x[i-1]) / 2`` with replicated borders (kornia),
    which is blind to a pattern alternating from one pixel to the next (a checkerboard costs nothing inside
    the frame).
    """
    flat = [rearrange(x, "b t c h w -> (b t) c h w") for x in (pred, target)]
    grad_pred, grad_target = (spatial_gradient(x, mode="diff") for x in flat)
    return (grad_pred.abs() - grad_target.abs()).abs().mean()


@LOSSES.register("l1_ssim")
class L1SSIMLoss(nn.Module):
    """``lam * L1 + (1 - lam) * (1 - SSIM) + mse_weight * MSE + grad_weight * GDL``, SSIM per frame over all
    channels (kornia), GDL the gradient difference (``gradient_difference``).

    Args:
        lam: weight of the L1 term (the paper uses 0.5).
        window_size: SSIM Gaussian window.
        data_range: value range of the data (1.0 for [0, 1]; 2.0 for [-1, 1]).
        mse_weight: weight of an added MSE term (0, the paper's loss, by default). On sparse frames at small
            budgets L1/SSIM alone settles on the background (docs/ablations.md); an MSE term keeps the objects.
        grad_weight: weight of an added gradient-difference term (0 by default), which charges a prediction for
            the edge magnitude it loses by blurring or fading.
    """

    def __init__(self, lam: float = 0.5, window_size: int = 11, data_range: float = 1.0, mse_weight: float = 0.0,
                 grad_weight: float = 0.0):
        super().__init__()
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        for key, value in (("mse_weight", mse_weight), ("grad_weight", grad_weight)):
            if value < 0:
                raise ValueError(f"{key} must be >= 0, got {value}")
        self.mse_weight, self.grad_weight = float(mse_weight), float(grad_weight)
        self.lam, self.window_size, self.data_range = float(lam), int(window_size), float(data_range)

    def forward(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        _check_pair(pred, target)
        l1 = F.l1_loss(pred, target)
        dssim = 1.0 - ssim_per_frame(pred, target, self.window_size, self.data_range).mean()
        # mse and gdl are logged at any weight, so that runs with and without them compare; a term that is only
        # logged sees the detached prediction and builds no graph
        mse = F.mse_loss(pred if self.mse_weight else pred.detach(), target)
        gdl = gradient_difference(pred if self.grad_weight else pred.detach(), target)
        loss = self.lam * l1 + (1.0 - self.lam) * dssim
        if self.mse_weight:
            loss = loss + self.mse_weight * mse
        if self.grad_weight:
            loss = loss + self.grad_weight * gdl
        return {"loss": loss, "l1": l1, "1-ssim": dssim, "mse": mse, "gdl": gdl}


class LossWarmup(nn.Module):
    """A loss whose numeric arguments move linearly from ``start`` values at step 0 to their configured
    values at step ``steps``, then stay there: ``loss: {name: l1_ssim, warmup: {steps: 200, start:
    {mse_weight: 20.0}}}`` begins close to MSE and ends as plain L1 + SSIM.

    The trainer calls ``set_step(step)`` before every optimiser step (a resumed run continues the ramp
    where it stopped); validation scores the loss with the values of the current step.

    Args:
        loss: the wrapped loss; every ramped argument is an attribute of it under the argument's name.
        steps: length of the ramp in optimiser steps (>= 1).
        start: argument name -> value at step 0.
    """

    def __init__(self, loss: nn.Module, steps: int, start: dict[str, float]):
        super().__init__()
        self.loss, self.steps = loss, int(steps)
        self.start = {k: float(v) for k, v in start.items()}
        self.end = {k: float(getattr(loss, k)) for k in start}
        self.set_step(0)

    def values_at(self, step: int) -> dict[str, float]:
        """The ramped arguments' values at optimiser step ``step``."""
        if step >= self.steps:
            return dict(self.end)
        t = max(step, 0) / self.steps
        return {k: a * (1.0 - t) + self.end[k] * t for k, a in self.start.items()}

    def set_step(self, step: int) -> None:
        for key, value in self.values_at(step).items():
            setattr(self.loss, key, value)

    def forward(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        return self.loss(pred, target)


def _check_warmup(warmup) -> tuple[int, dict]:
    """A loss section's ``warmup`` checked: (steps, start values). Errors name ``loss.warmup...``."""
    if not isinstance(warmup, dict) or set(warmup) != {"steps", "start"}:
        raise ValueError(f"loss.warmup: expected a mapping with exactly the keys steps and start, got {warmup!r}")
    steps, start = warmup["steps"], warmup["start"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"loss.warmup.steps: expected an integer >= 1 (optimiser steps), got {steps!r}")
    if not isinstance(start, dict) or not start:
        raise ValueError(f"loss.warmup.start: expected a mapping of argument name -> value at step 0, got {start!r}")
    for key, value in start.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"loss.warmup.start.{key}: expected a number, got {value!r}")
    return steps, start


def build_loss(spec: dict) -> nn.Module:
    """The loss that ``spec`` (the config's ``loss`` section: ``name``, the loss's arguments and an optional
    ``warmup``, see ``LossWarmup``) describes."""
    name = spec["name"]
    kwargs = {k: v for k, v in spec.items() if k not in ("name", "warmup")}
    loss = LOSSES.build(name, **kwargs)
    if spec.get("warmup") is None:
        return loss
    steps, start = _check_warmup(spec["warmup"])
    arguments = signature(type(loss).__init__).parameters
    for key, value in start.items():
        if key not in arguments or type(getattr(loss, key, None)) is not float:
            raise ValueError(f"loss.warmup.start.{key}: loss {name!r} has no real-valued argument {key!r} to ramp "
                             f"(only arguments that the loss keeps as floats, such as weights, can be ramped)")
        try:
            LOSSES.build(name, **{**kwargs, key: value})
        except ValueError as exc:
            raise ValueError(f"loss.warmup.start.{key}: {exc}") from None
    return LossWarmup(loss, steps, start)


__all__ = ["MSELoss", "L1Loss", "L1SSIMLoss", "LossWarmup", "ssim_per_frame", "gradient_difference", "build_loss"]
