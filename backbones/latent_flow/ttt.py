"""Test-time training of the flow head, per video, with an exact reset afterwards.

For one video x (1, T_in, C, H, W): ``steps`` Adam steps on the flow head's parameters only, minimising the
L1 between frame t warped by the predicted flow (upsampled to the frame size) and frame t+1, over the observed
transitions; then the prediction; then the flow head gets back the weights it had before (a state_dict copy),
so every video starts from the trained model.
"""
from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from pdr.errors import PDRError

from ..base import BackboneOutput
from .losses import l1
from .model import LatentFlow, flow_warp_frames


def find_latent_flow(model: nn.Module) -> LatentFlow:
    """The LatentFlow backbone of a PDRModel (or the backbone itself)."""
    net = getattr(model, "backbone", model)
    if not isinstance(net, LatentFlow):
        raise TypeError(f"test-time training needs a latent_flow backbone, got {type(net).__name__}")
    return net


@contextmanager
def restored_flow_head(net: LatentFlow):
    """Inside the block the flow head may change; on exit it is exactly what it was on entry."""
    saved = copy.deepcopy(net.temporal.flow_head.state_dict())
    try:
        yield net.temporal.flow_head
    finally:
        net.temporal.flow_head.load_state_dict(saved)


def ttt_loss(net: LatentFlow, x: Tensor) -> Tensor:
    """L1 between warp(frame t, flow_t) and frame t+1 over the observed transitions of x (B, T_in, C, H, W)."""
    flows = net.observed_flows(x)
    return l1(flow_warp_frames(x[:, :-1], flows), x[:, 1:])


def adapt_flow_head(net: LatentFlow, x: Tensor, steps: int, lr: float = 1e-4) -> list[float]:
    """``steps`` Adam steps on the flow head only; returns the loss before each step."""
    head = net.temporal.flow_head
    others = [p for p in net.parameters() if p.requires_grad and all(p is not q for q in head.parameters())]
    flags = [p.requires_grad for p in head.parameters()]
    for p in others:
        p.requires_grad_(False)
    for p in head.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    history = []
    try:
        with torch.enable_grad():
            for _ in range(int(steps)):
                loss = ttt_loss(net, x)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                history.append(float(loss.detach()))
    finally:
        for p in others:
            p.requires_grad_(True)
        for p, flag in zip(head.parameters(), flags):
            p.requires_grad_(flag)
        for p in head.parameters():
            p.grad = None
    return history


def predict_with_ttt(model: nn.Module, x: Tensor, steps: int, lr: float = 1e-4) -> tuple[Tensor, list[float]]:
    """Predict x (B, T_in, C, H, W) with ``model`` (a PDRModel or the backbone) after adapting the flow head
    to x; the flow head is reset afterwards.  Returns the prediction (B, T_out, C, H, W) and the TTT losses."""
    net = find_latent_flow(model)
    was_training = model.training
    model.eval()
    with restored_flow_head(net):
        history = adapt_flow_head(net, x, steps, lr) if steps > 0 else []
        with torch.no_grad():
            out = model(x)
    pred = out.frames if isinstance(out, BackboneOutput) else out  # the backbone's output or a PDRModel's frames
    model.train(was_training)
    return pred, history


def predict_each_with_ttt(model: nn.Module, x: Tensor, steps: int, lr: float = 1e-4) -> Tensor:
    """Every sequence of x (B, T_in, C, H, W) predicted after test-time training on that sequence alone, the flow
    head reset before the next one (what tools/eval.py --ttt measures): (B, T_out, C, H, W)."""
    return torch.cat([predict_with_ttt(model, x[i:i + 1], steps, lr)[0] for i in range(x.shape[0])])


def ttt_predictor(model: nn.Module, steps: int, lr: float = 1e-4, source: str = "model") -> Callable[[Tensor], Tensor]:
    """``predict_each_with_ttt`` bound to ``model`` (a PDRModel or the backbone) after checking that it can be
    adapted: a latent_flow backbone of phase temporal or joint, ``steps`` >= 1, ``lr`` > 0. Errors name ``source``
    (the run or checkpoint)."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1 or not lr > 0:
        raise PDRError(f"--ttt-steps must be an int >= 1 and --ttt-lr > 0, got {steps!r} and {lr!r}")
    net = getattr(model, "backbone", model)
    if not isinstance(net, LatentFlow):
        raise PDRError(f"{source}: --ttt (test-time training of the flow head) needs a latent_flow run, not backbone "
                       f"{type(net).__name__}")
    if net.phase == "vae":
        raise PDRError(f"{source}: --ttt needs a latent_flow run of phase temporal or joint (a vae-phase run has no "
                       "trained flow head)")
    return functools.partial(predict_each_with_ttt, model, steps=steps, lr=lr)
