"""``PDRModel``: a backbone, optionally wrapped by an adapter, under one contract (built by ``pdr.model.build``).

``forward(x)`` maps observed frames (B, T_in, C, H, W) to predictions (B, T_out, C, H, W). Frames of a size the
backbone or adapter does not accept are padded for each backbone call and its result cropped back
(``pdr.model.padding``): losses, metrics and rollouts see only the original pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, PDRError
from .padding import FramePadding
from .predict_io import from_model_units, to_model_units

if TYPE_CHECKING:
    from ..adapters.base import Adapter
    from ..backbones.base import Backbone, BackboneOutput


@dataclass
class ModelOutput:
    """What ``PDRModel.forward(..., return_output=True)`` returns.

    frames: (B, T_out, C, H, W) the prediction, what ``forward`` returns by default.
    aux_losses: named scalar losses the backbone computed in this call, already weighted ({} outside
        training); the training loop adds them to its configured loss and logs each one.
    """

    frames: Tensor
    aux_losses: dict[str, Tensor] = field(default_factory=dict)


def count_parameters(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


class PDRModel(nn.Module):
    """Backbone + optional adapter, rolled out autoregressively when the backbone predicts
    a different number of frames per call than asked for."""

    def __init__(self, backbone: Backbone, adapter: Adapter | None, in_frames: int, out_frames: int,
                 padding: FramePadding | None = None):
        from ..adapters.base import Adapter  # here, not at the top: ``import pdr`` does not load the model zoo
        from ..backbones.base import Backbone

        if not isinstance(backbone, Backbone):
            raise TypeError(f"backbone: expected a pdr.backbones.Backbone, got {type(backbone).__name__}")
        if adapter is not None and not isinstance(adapter, Adapter):
            raise TypeError(f"adapter: expected a pdr.adapters.Adapter, got {type(adapter).__name__}")
        super().__init__()
        self.backbone = backbone
        self.adapter = adapter
        self.in_frames = in_frames
        self.out_frames = out_frames
        # backbone and adapter are built for the padded frame size; the model takes and returns the original one
        self.padding = padding or FramePadding()
        t, c, h, w = backbone.in_shape
        self.in_shape = (t, c, h - self.padding.top - self.padding.bottom, w - self.padding.left - self.padding.right)
        self.backbone_frozen = False
        self.config = None  # the run's Config, set by pdr.load_run
        self.resolved_in_training: dict[str, str] = {}  # resolved_choices() when the run began, set by pdr.load_run
        # The dataset's normalisation (raw = normalised * std + mean; None: frames are used as they are),
        # which ``predict`` applies; set by the training loop's checkpoints and pdr.load_run.
        self.data_mean: float | list[float] | None = None
        self.data_std: float | list[float] | None = None
        # data units per 8-bit level when the data are 8-bit images (``VideoDataset.uint8_scale``), set by
        # pdr.load_run: ``predict`` then takes uint8 frames
        self.data_uint8_scale: float | None = None

    def freeze_backbone(self) -> None:
        """Train only the adapter: the backbone's parameters get no gradient and it stays in eval mode
        (fixed BatchNorm statistics, no dropout, its test-time rollout), so the adapter learns on the
        predictions the backbone makes at test time."""
        if self.adapter is None:
            raise ConfigError("model.freeze_backbone: true needs an adapter (model.adapter); nothing else would train")
        if self.adapter.coarse_loss_weight:
            raise ConfigError("model.freeze_backbone: true with model.adapter.coarse_loss_weight > 0: the coarse loss "
                              "trains only the backbone, which is frozen; set coarse_loss_weight: 0")
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.backbone_frozen = True
        self.backbone.eval()

    def train(self, mode: bool = True) -> "PDRModel":
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        return self

    def _stat(self, value, x: Tensor) -> Tensor | None:
        if value is None:
            return None
        t = torch.as_tensor(value, dtype=x.dtype, device=x.device).flatten()
        if t.numel() not in (1, x.shape[2]):
            raise ValueError(f"the data normalisation has {t.numel()} values for {x.shape[2]} channels")
        return t.view(1, 1, -1, 1, 1)

    @torch.no_grad()
    def predict(self, frames, num_frames: int | None = None, normalised: bool = False):
        """Predict the future of observed frames, in eval mode and without gradients.

        frames: (B, T, C, H, W) or one sequence (T, C, H, W), T >= T_in (the last T_in frames are the observed
        ones), a tensor or an array, in the data's own units (as the dataset reads them from disk, before its normalisation), or uint8 images (0..255) for data
        read from 8-bit images (``data_uint8_scale``; refused otherwise). ``num_frames``: how many future frames
        (default: the trained T_out; more are rolled out from the model's own predictions). Returns (B, num_frames,
        C, H, W) (or (num_frames, C, H, W)) in the input's units and type: a NumPy array for an array, a tensor on
        the input's device for a tensor, uint8 for uint8. ``normalised=True``: frames are already in the model's
        units (what the dataset returns) and so is the result.
        """
        param = next(self.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        x, restore = to_model_units(frames, device, self.data_uint8_scale, self._dataset_name(), normalised)
        single = x.dim() == 4
        x = x.unsqueeze(0) if single else x
        if x.dim() == 5 and x.shape[1] != self.in_frames:
            if x.shape[1] < self.in_frames:
                raise ValueError(f"predict: {x.shape[1]} observed frames, the model predicts from {self.in_frames}")
            x = x[:, -self.in_frames:]
        mean, std = (None, None) if normalised else (self._stat(self.data_mean, x), self._stat(self.data_std, x))
        if mean is not None:
            x = x - mean
        if std is not None:
            x = x / std
        was_training = self.training
        self.eval()
        try:
            y = self(x, num_frames=num_frames)
        finally:
            self.train(was_training)
        if std is not None:
            y = y * std
        if mean is not None:
            y = y + mean
        return from_model_units(y[0] if single else y, restore)

    def _dataset_name(self) -> str | None:
        return None if self.config is None else self.config.get("data", {}).get("name")

    def _check_input(self, x: Tensor, name: str = "model input") -> None:
        if x.dim() != 5 or tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(
                f"{name} must have shape (B, {', '.join(map(str, self.in_shape))}) = (B, T_in, C, H, W), "
                f"got {tuple(x.shape)}"
            )

    @property
    def _needs_features(self) -> bool:
        return self.adapter is not None and self.adapter.needs_features

    def _backbone_inputs(self, targets: Tensor | None, step: int | None, extras: dict | None) -> dict:
        """The keywords of a training call: ``targets``, ``step`` and the dataset extras the backbone names in
        ``extra_inputs``; {} in eval mode and for backbones without ``uses_targets``."""
        if not (self.backbone.uses_targets and self.training):
            return {}
        inputs = {"targets": targets, "step": step}
        inputs.update({k: v for k, v in (extras or {}).items() if k in self.backbone.extra_inputs})
        return inputs

    def _call_backbone(self, x: Tensor, inputs: dict) -> BackboneOutput:
        """One backbone call on x (B, T_in, C, H', W') at the padded size, with features when the adapter needs
        them."""
        from ..backbones.base import BackboneOutput

        out = self.backbone(x, return_features=self._needs_features, **inputs)
        if not isinstance(out, BackboneOutput):
            raise TypeError(f"backbone {type(self.backbone).__name__}: forward returned {type(out).__name__}, "
                            "expected a pdr.backbones.BackboneOutput(frames, features, aux_losses)")
        if out.frames.dim() != 5 or out.frames.shape[1] < 1:
            raise RuntimeError(f"backbone {type(self.backbone).__name__} returned {tuple(out.frames.shape)}, "
                               "expected (B, T, C, H, W) with T >= 1")
        return out

    def refine(self, coarse: Tensor, features: Tensor | None = None) -> Tensor:
        """The adapter on backbone frames (B, T, C, H, W) and their features (B, T, F, h, w): frames of the same
        shape; the backbone frames themselves when there is no adapter. An adapter with ``detach_coarse`` gets them
        detached: its output does not back-propagate into the backbone."""
        if self.adapter is None:
            return coarse
        if self.adapter.detach_coarse:
            coarse, features = coarse.detach(), None if features is None else features.detach()
        return self.adapter(coarse, features)

    def forward(self, x: Tensor, targets: Tensor | None = None, step: int | None = None,
                extras: dict | None = None, return_output: bool = False,
                num_frames: int | None = None) -> Tensor | ModelOutput:
        """x: (B, T_in, C, H, W) -> (B, T_out, C, H, W), or with ``return_output`` a ``ModelOutput`` holding
        those frames and the auxiliary losses of this call (what the training loop adds to its loss).

        ``targets``/``step`` reach backbones that use ground truth during training (scheduled sampling) and are
        ignored otherwise; so do the dataset's ``extras`` (labels such as ``collision`` (B, T_out)) named in the
        backbone's ``extra_inputs``. Each backbone call's frames go through the adapter; when the backbone
        predicts fewer frames per call than asked for, the refined frames are fed back (a rollout).
        ``num_frames``: predict this many frames instead of T_out (longer: a longer rollout).

        With ``padding`` each call runs on frames padded to the size the backbone and adapter need (targets too)
        and its frames are cropped back before anything else sees them: the rollout, the losses of the rollout
        and ``coarse_mse``.
        """
        self._check_input(x)
        total = self.out_frames if num_frames is None else int(num_frames)
        if total < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        inputs = self._backbone_inputs(targets, step, extras)
        if "targets" in inputs:
            inputs["targets"] = self.padding.pad(inputs["targets"])
        chunks, coarse, taken, losses, produced, window = [], [], [], [], 0, x
        while produced < total:
            out = self._call_backbone(self.padding.pad(window), inputs)
            y = self.padding.crop(self.refine(out.frames, out.features))
            frames = self.padding.crop(out.frames)
            take = min(y.shape[1], total - produced)
            chunks.append(y[:, :take])
            coarse.append(frames)
            taken.append(frames[:, :take])
            losses.append(out.aux_losses)
            produced += take
            if inputs.get("targets") is not None and frames.shape[1] < self.backbone.frames_per_call:
                break  # a training call that drew a shorter horizon (latent_flow's train_out_frames) ends the rollout
            if produced < total:
                if self.adapter is not None and self.adapter.detach_coarse:  # the refined value, the backbone's gradient
                    y = frames + (y - frames).detach()
                window = torch.cat([window, y], dim=1)[:, -self.in_frames:]
        frames = chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=1)
        if not return_output:
            return frames
        aux = _mean_by_name(losses)
        if targets is not None and inputs.get("targets") is not None:
            rollout = coarse[0] if len(coarse) == 1 else torch.cat(coarse, dim=1)
            aux.update(self.backbone.rollout_losses(rollout, targets))
        weight = 0.0 if self.adapter is None else self.adapter.coarse_loss_weight
        if weight and self.training and targets is not None:
            aux["coarse_mse"] = weight * F.mse_loss(torch.cat(taken, dim=1), targets[:, :produced])
        return ModelOutput(frames, aux)

    def sample(self, x: Tensor, num_samples: int, frame_rate: int = 1) -> Tensor:
        """``num_samples`` futures per sequence, each refined by the adapter (with the sample's features when the
        adapter needs them): x (B, T_in, C, H, W) -> (B, K, T_out * frame_rate, C, H, W).

        Backbones with ``can_sample`` only. The caller picks the mode (``model.eval()``) and the gradient context.
        """
        if not self.backbone.can_sample:
            raise PDRError(f"backbone {type(self.backbone).__name__} has no sample(x, num_samples, frame_rate) "
                           "method: it predicts one future; use model(x)")
        self._check_input(x, "x")
        out = self.backbone.sample(self.padding.pad(x), num_samples, frame_rate=frame_rate,
                                   return_features=self._needs_features)
        if self.adapter is None:
            return self.padding.crop(out.frames)
        features = out.features
        return self.padding.crop(torch.stack(
            [self.refine(out.frames[:, i], None if features is None else features[:, i])
             for i in range(out.frames.shape[1])], dim=1))

    def reconstruct(self, frames: Tensor) -> Tensor:
        """The backbone's reconstructions of frames (B, T, C, H, W), same shape (backbones with
        ``validates_reconstruction``); padded and cropped like a prediction."""
        return self.padding.crop(self.backbone.reconstruct(self.padding.pad(frames)))

    def collision_probabilities(self, x: Tensor) -> Tensor | None:
        """The backbone's collision probabilities (B, T_out) for inputs x (B, T_in, C, H, W) (backbones with
        ``predicts_collisions``), or None."""
        return self.backbone.collision_probabilities(self.padding.pad(x))

    def resolved_choices(self) -> dict[str, str]:
        """The backbone's and adapter's ``resolved_choices()`` by dotted config key (``model.backbone.<arg>``)."""
        out = {}
        for where, part in (("model.backbone", self.backbone), ("model.adapter", self.adapter)):
            if part is not None:
                out.update({f"{where}.{k}": v for k, v in part.resolved_choices().items()})
        return out

    def parameter_summary(self) -> dict[str, int]:
        return {"backbone": count_parameters(self.backbone), "adapter": count_parameters(self.adapter),
                "trainable": sum(p.numel() for p in self.parameters() if p.requires_grad)}


def _mean_by_name(per_call: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """The auxiliary losses of the backbone calls of one rollout, averaged per name over the calls that have it."""
    if len(per_call) == 1:
        return dict(per_call[0])
    names = dict.fromkeys(name for losses in per_call for name in losses)
    return {name: torch.stack([losses[name] for losses in per_call if name in losses]).mean() for name in names}
