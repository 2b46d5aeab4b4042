"""What the recurrent backbones (ConvLSTM, PredRNN) share: patching, argument parsing, the
(reverse) scheduled sampling schedule and the recurrence over time.

Recurrent predictors in OpenSTL's style work on *patched* frames: a frame (C, H, W) becomes
(C*p*p, H/p, W/p) (``patchify``), which shrinks the maps the LSTM cells run on. The channel
order is OpenSTL's (row offset in the patch, column offset, channel), so patched tensors line up
with OpenSTL's ``reshape_patch``.

The recurrence runs over T_in + T_out - 1 steps. Step t reads frame t and predicts frame t+1;
the predictions of the last T_out steps are the output. For t >= 1 the frame read is either the
true frame or the model's own previous prediction, per sequence, as a mask decides:

- inference (eval mode, or no ``targets``): true frames for t < T_in, predictions after;
- scheduled sampling (training): true frames for t < T_in; for t >= T_in the true frame with a
  probability ``eta`` that falls linearly from ``sampling_start_value`` by
  ``sampling_changing_rate`` per step, and is 0 from ``sampling_stop_iter`` on;
- reverse scheduled sampling (training, ``reverse_scheduled_sampling: 1``, PredRNN v2): for
  1 <= t < T_in the true frame with a probability rising from 0.5 to 1 (exponentially, between
  ``r_sampling_step_1`` and ``r_sampling_step_2``, time constant ``r_exp_alpha``), and for
  t >= T_in with a probability falling linearly from 0.5 to 0 over the same steps.

The probabilities depend on the training step only (not on a counter of calls), so a resumed run
samples as an uninterrupted one.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
from einops import rearrange
from torch import Tensor, nn

from .base import Backbone, BackboneOutput


def patchify(x: Tensor, patch_size: int) -> Tensor:
    """(B, T, C, H, W) -> (B, T, p*p*C, H/p, W/p), channels ordered (row in patch, column, channel)."""
    if patch_size == 1:
        return x
    return rearrange(x, "b t c (h p) (w q) -> b t (p q c) h w", p=patch_size, q=patch_size)


def unpatchify(x: Tensor, patch_size: int) -> Tensor:
    """(B, T, p*p*C, h, w) -> (B, T, C, h*p, w*p); the inverse of ``patchify``."""
    if patch_size == 1:
        return x
    return rearrange(x, "b t (p q c) h w -> b t c (h p) (w q)", p=patch_size, q=patch_size)


def parse_num_hidden(value, name: str = "num_hidden") -> list[int]:
    """``[128, 128]``, ``128`` or OpenSTL's string ``"128,128"`` -> [128, 128]."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        try:
            widths = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"{name} must be a list of positive integers or a string like '64,64', got {value!r}") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        widths = [value]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        widths = list(value)
    else:
        raise ValueError(f"{name} must be a list of positive integers or a string like '64,64', got {value!r}")
    if not widths or any(w < 1 for w in widths):
        raise ValueError(f"{name} must list at least one layer width, all >= 1, got {value!r}")
    return widths


@dataclass
class SamplingSchedule:
    """OpenSTL's scheduled sampling and reverse scheduled sampling, as a function of the step."""

    scheduled_sampling: bool = True
    sampling_stop_iter: int = 50000
    sampling_start_value: float = 1.0
    sampling_changing_rate: float = 0.00002
    reverse_scheduled_sampling: bool = False
    r_sampling_step_1: int = 25000
    r_sampling_step_2: int = 50000
    r_exp_alpha: float = 5000.0

    def __post_init__(self):
        self.scheduled_sampling = _flag("scheduled_sampling", self.scheduled_sampling)
        self.reverse_scheduled_sampling = _flag("reverse_scheduled_sampling", self.reverse_scheduled_sampling)
        for name, kind in (("sampling_stop_iter", int), ("sampling_start_value", float),
                           ("sampling_changing_rate", float), ("r_sampling_step_1", int), ("r_sampling_step_2", int),
                           ("r_exp_alpha", float)):
            try:
                setattr(self, name, kind(getattr(self, name)))
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be a number, got {getattr(self, name)!r}") from None
        if self.sampling_stop_iter < 0:
            raise ValueError(f"sampling_stop_iter must be >= 0, got {self.sampling_stop_iter}")
        if not 0.0 <= self.sampling_start_value <= 1.0:
            raise ValueError(f"sampling_start_value must be in [0, 1], got {self.sampling_start_value}")
        if self.sampling_changing_rate < 0:
            raise ValueError(f"sampling_changing_rate must be >= 0, got {self.sampling_changing_rate}")
        if not 0 <= self.r_sampling_step_1 < self.r_sampling_step_2:
            raise ValueError(
                "r_sampling_step_1 and r_sampling_step_2 must satisfy 0 <= r_sampling_step_1 < r_sampling_step_2, "
                f"got {self.r_sampling_step_1} and {self.r_sampling_step_2}"
            )
        if self.r_exp_alpha <= 0:
            raise ValueError(f"r_exp_alpha must be > 0, got {self.r_exp_alpha}")

    @classmethod
    def from_settings(cls, settings: dict) -> SamplingSchedule:
        """The schedule of OpenSTL-style settings: the keys named like this class's fields (all of them)."""
        return cls(**{f.name: settings[f.name] for f in fields(cls)})

    def probabilities(self, step: int) -> tuple[float, float]:
        """(p_input, p_future): the probability of reading the true frame at an input step
        (1 <= t < T_in) and at a future step (t >= T_in) at training step ``step``."""
        step = max(0, int(step))
        if self.reverse_scheduled_sampling:
            s1, s2 = self.r_sampling_step_1, self.r_sampling_step_2
            if step < s1:
                return 0.5, 0.5
            if step < s2:
                return 1.0 - 0.5 * math.exp(-(step - s1) / self.r_exp_alpha), 0.5 - 0.5 * (step - s1) / (s2 - s1)
            return 1.0, 0.0
        if not self.scheduled_sampling or step >= self.sampling_stop_iter:
            return 1.0, 0.0
        return 1.0, max(0.0, self.sampling_start_value - self.sampling_changing_rate * step)

    def mask(self, batch: int, in_frames: int, out_frames: int, step: int, device=None) -> Tensor:
        """(B, T_in + T_out - 2) float mask: entry t-1 is 1 where step t (1 <= t <= T_in + T_out - 2)
        reads the true frame, 0 where it reads the model's prediction. Random per sequence."""
        p_input, p_future = self.probabilities(step)
        probs = torch.tensor([p_input] * (in_frames - 1) + [p_future] * (out_frames - 1), device=device)
        draw = torch.rand(batch, probs.numel(), device=device)
        return (draw < probs).float()


def _flag(name: str, value) -> bool:
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise ValueError(f"{name} must be 0 or 1 (or true/false), got {value!r}")


def inference_mask(batch: int, in_frames: int, out_frames: int, device=None) -> Tensor:
    """The mask of inference: true frames at the input steps, predictions after."""
    mask = torch.zeros(batch, in_frames + out_frames - 2, device=device)
    mask[:, : in_frames - 1] = 1.0
    return mask


class RecurrentBackbone(Backbone):
    """Base of ConvLSTM and PredRNN: patching, scheduled sampling and the loop over time.

    One call maps (B, T_in, C, H, W) to frames (B, T_out, C, H, W) (``frames_per_call = out_frames``).
    With ``return_features=True`` the output also holds the top layer's hidden state of every
    predicted frame, (B, T_out, num_hidden[-1], H/p, W/p) (at patch resolution).

    Subclasses set ``cell_type`` and implement ``init_state`` and ``cell_step``; they take the arguments
    of this class, with OpenSTL's names and defaults.

    Args:
        num_hidden: widths of the stacked cells, a list ([128, 128, 128, 128]) or OpenSTL's
            string ("128,128,128,128"); the features have num_hidden[-1] channels.
        filter_size: odd kernel size of the cell convolutions.
        stride: 1 (accepted for OpenSTL configs).
        patch_size: p; frames run as (C*p*p, H/p, W/p). Must divide H and W.
        layer_norm: 1 adds LayerNorm after each K x K cell convolution.
        scheduled_sampling, sampling_stop_iter, sampling_start_value, sampling_changing_rate,
        reverse_scheduled_sampling, r_sampling_step_1, r_sampling_step_2, r_exp_alpha:
            OpenSTL's (reverse) scheduled sampling (``SamplingSchedule``, the module docstring).
    """

    uses_targets = True

    def __init__(
        self,
        in_shape: Sequence[int],
        out_frames: int,
        num_hidden: Sequence[int] | str = (128, 128, 128, 128),
        filter_size: int = 5,
        stride: int = 1,
        patch_size: int = 4,
        layer_norm: int = 0,
        scheduled_sampling: int = 1,
        sampling_stop_iter: int = 50000,
        sampling_start_value: float = 1.0,
        sampling_changing_rate: float = 0.00002,
        reverse_scheduled_sampling: int = 0,
        r_sampling_step_1: int = 25000,
        r_sampling_step_2: int = 50000,
        r_exp_alpha: float = 5000.0,
    ):
        schedule = SamplingSchedule(scheduled_sampling, sampling_stop_iter, sampling_start_value,
                                    sampling_changing_rate, reverse_scheduled_sampling, r_sampling_step_1,
                                    r_sampling_step_2, r_exp_alpha)
        super().__init__(in_shape, out_frames)
        c, h, w = self.in_shape[1:]
        if self.out_frames < 1:
            raise ValueError(f"out_frames must be >= 1, got {out_frames}")
        self.num_hidden = parse_num_hidden(num_hidden)
        if not isinstance(filter_size, int) or filter_size < 1 or filter_size % 2 == 0:
            raise ValueError(f"filter_size must be an odd positive integer, got {filter_size!r}")
        if stride != 1:
            raise ValueError(f"stride must be 1 (the recurrent state keeps the patched frame size), got {stride!r}")
        if not isinstance(patch_size, int) or patch_size < 1 or h % patch_size or w % patch_size:
            raise ValueError(f"patch_size must be a positive integer dividing the frame size {h}x{w}, got {patch_size!r}")
        self.layer_norm = _flag("layer_norm", layer_norm)
        self.filter_size = filter_size
        self.patch_size = patch_size
        self.schedule = schedule
        self.patch_channels = c * patch_size * patch_size
        self.patch_hw = (h // patch_size, w // patch_size)
        self.feature_channels = self.num_hidden[-1]
        self.readout = nn.Conv2d(self.num_hidden[-1], self.patch_channels, 1, bias=False)
        self.cells = self.build_cells()

    @classmethod
    def size_multiple(cls, in_shape: Sequence[int], patch_size: int = 4, **_) -> int:
        """H and W must be multiples of ``patch_size``."""
        return int(patch_size)

    @classmethod
    def default_settings(cls) -> dict:
        """The default of every argument but ``in_shape`` and ``out_frames``, by name."""
        return {name: p.default for name, p in inspect.signature(cls).parameters.items() if p.default is not p.empty}

    @property
    def frames_per_call(self) -> int:
        return self.out_frames

    # -- to implement ---------------------------------------------------------------------------
    cell_type: type[nn.Module]  # built as cell_type(c_in, hidden, (h, w), filter_size, layer_norm)

    def build_cells(self) -> nn.ModuleList:
        """The stack of cells, one per entry of ``self.num_hidden`` (built after the readout)."""
        widths = [self.patch_channels] + self.num_hidden
        return nn.ModuleList(
            [self.cell_type(widths[i], widths[i + 1], self.patch_hw, self.filter_size, self.layer_norm)
             for i in range(len(self.num_hidden))]
        )

    def init_state(self, batch: int, ref: Tensor):
        """The recurrent state before the first frame (zeros), on ``ref``'s device and dtype."""
        raise NotImplementedError

    def cell_step(self, frame: Tensor, state):
        """One time step: patched frame (B, p*p*C, h, w) -> (top hidden state (B, F, h, w), new state)."""
        raise NotImplementedError

    # -- the loop ---------------------------------------------------------------------------------
    def sampling_mask(self, batch: int, step: int | None, device=None) -> Tensor:
        """The training mask (see ``SamplingSchedule.mask``) at ``step`` (None counts as 0)."""
        return self.schedule.mask(batch, self.in_shape[0], self.out_frames, step or 0, device=device)

    def forward(self, x: Tensor, return_features: bool = False, targets: Tensor | None = None,
                step: int | None = None) -> BackboneOutput:
        """(B, T_in, C, H, W) -> frames (B, T_out, C, H, W) [and features (B, T_out, num_hidden[-1], H/p, W/p)].

        ``targets`` (B, >= T_out - 1, C, H, W) and ``step`` drive scheduled sampling in training
        mode; without targets, or in eval mode, the model feeds back its own predictions.
        """
        b, t_in = x.shape[:2]
        t_out = self.out_frames
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"input must have shape (B, {', '.join(map(str, self.in_shape))}), got {tuple(x.shape)}")
        mask = None
        frames = x
        if self.training and targets is not None and t_in + t_out > 2:
            if targets.dim() != 5 or tuple(targets.shape[2:]) != self.in_shape[1:] or targets.shape[1] < t_out - 1:
                raise ValueError(
                    f"targets must have shape (B, {t_out}, {', '.join(map(str, self.in_shape[1:]))}), "
                    f"got {tuple(targets.shape)}"
                )
            frames = torch.cat([x, targets[:, : t_out - 1].to(x.dtype)], dim=1)
            mask = self.sampling_mask(b, step, device=x.device).to(x.dtype)
        seq = patchify(frames, self.patch_size)
        state = self.init_state(b, seq)
        outputs, features = [], []
        prediction = None
        for t in range(t_in + t_out - 1):
            if t == 0 or (mask is None and t < t_in):
                frame = seq[:, t]
            elif mask is None:
                frame = prediction
            else:
                m = mask[:, t - 1, None, None, None]
                frame = m * seq[:, t] + (1 - m) * prediction
            hidden, state = self.cell_step(frame, state)
            needed = t >= t_in - 1 or mask is not None  # part of the output, or read by the next step
            prediction = self.readout(hidden) if needed else None
            if t >= t_in - 1:
                outputs.append(prediction)
                features.append(hidden)
        out = unpatchify(torch.stack(outputs, dim=1), self.patch_size)
        return BackboneOutput(out, torch.stack(features, dim=1) if return_features else None)

    def extra_repr(self) -> str:
        return (f"num_hidden={self.num_hidden}, filter_size={self.filter_size}, patch_size={self.patch_size}, "
                f"layer_norm={self.layer_norm}")


def gate_conv(c_in: int, c_out: int, kernel_size: int, layer_norm: bool, hw: tuple[int, int]) -> nn.Module:
    """A bias-free K x K conv, followed by LayerNorm over (c_out, h, w) when ``layer_norm``."""
    conv = nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False)
    return nn.Sequential(conv, nn.LayerNorm([c_out, *hw])) if layer_norm else conv
