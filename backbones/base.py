"""What every backbone provides to ``pdr.build_model``: the ``Backbone`` base class and its result."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from torch import Tensor, nn


@dataclass
class BackboneOutput:
    """What one backbone call returns.

    frames: (B, T, C, H, W) predicted frames, T = ``frames_per_call`` (``sample``: (B, K, T, C, H, W)).
    features: (B, T, F, h, w) hidden maps of the predicted frames, F = ``feature_channels`` (``sample``:
        (B, K, T, F, h, w)); set when the call asked for them (``return_features=True``), else None.
    aux_losses: named scalar losses of this call, already weighted (a KL term, a flow loss); the training
        loop adds them to the configured loss and logs each one. {} outside training.
    """

    frames: Tensor
    features: Tensor | None = None
    aux_losses: dict[str, Tensor] = field(default_factory=dict)


class Backbone(nn.Module):
    """A pixel-space predictor.

    Built with ``in_shape = (T_in, C, H, W)`` and the number of frames the user asked for
    (``out_frames``). ``forward(x, return_features=False)`` maps ``(B, T_in, C, H, W)`` to a
    ``BackboneOutput`` with frames ``(B, frames_per_call, C, H, W)``; when ``frames_per_call`` differs
    from ``out_frames`` the model wrapper rolls the backbone out autoregressively (or keeps the first
    frames).

    What a backbone can do is declared by class (or instance) attributes, which the model wrapper reads:

    - ``feature_channels``: set when the backbone returns features ``(B, frames_per_call,
      feature_channels, h, w)`` in ``BackboneOutput.features`` when called with ``return_features=True``;
      that is what ``source: features`` of PredGS consumes.
    - ``uses_targets``: the backbone uses ground truth during training (scheduled sampling, an ELBO) and
      accepts ``targets`` (B, T_out, C, H, W) and ``step`` (int) keywords; the model passes them only in
      training mode.
    - ``extra_inputs``: dataset labels such a backbone trains on (e.g. ``("collision",)``): datasets that
      return ``(inputs, targets, {"collision": ...})`` have them passed as keywords, in training only.
    - ``can_sample``: the backbone draws several futures with ``sample``.
    - ``predicts_collisions``: the backbone scores collisions with ``collision_probabilities``.
    - ``validates_reconstruction``: validation scores ``reconstruct(targets)`` instead of a prediction (a
      phase that trains an auto-encoder and predicts nothing yet).

    Losses the backbone computes inside ``forward`` travel in ``BackboneOutput.aux_losses``; a loss over the
    whole prediction of an autoregressive rollout comes from ``rollout_losses``. A training call (with
    ``targets``) may return fewer frames than ``frames_per_call``, a horizon drawn for that step: the model
    wrapper ends the rollout there and the training loop scores those frames against the first targets.

    The frame sizes a backbone accepts are declared by the class method ``size_multiple``: the model pads
    frames of other sizes up to that multiple and crops the predictions back (``pdr.model.padding``).
    """

    feature_channels: int | None = None
    uses_targets: bool = False
    extra_inputs: tuple[str, ...] = ()
    can_sample: bool = False
    predicts_collisions: bool = False
    validates_reconstruction: bool = False

    def __init__(self, in_shape: Sequence[int], out_frames: int):
        super().__init__()
        if len(in_shape) != 4:
            raise ValueError(f"in_shape must be (T_in, C, H, W), got {tuple(in_shape)}")
        self.in_shape = tuple(int(v) for v in in_shape)
        self.out_frames = int(out_frames)

    @classmethod
    def size_multiple(cls, in_shape: Sequence[int], **arguments) -> int:
        """The multiple of H and W this backbone needs when built with ``in_shape`` (T_in, C, H, W) and
        ``arguments`` (every constructor argument, defaults filled in): its total down-sampling (a stride, a patch
        size). 1 (any size) by default."""
        return 1

    def resolved_choices(self) -> dict[str, str]:
        """What the backbone picked where its arguments leave a choice open (which pretrained network,
        which method), by argument name: the training loop logs it at the start of a run and keeps it in
        the run's config.yaml and checkpoints, and tools/eval.py shows it. {} by default."""
        return {}

    @property
    def frames_per_call(self) -> int:
        return self.in_shape[0]

    def forward(self, x: Tensor, return_features: bool = False) -> BackboneOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def rollout_losses(self, frames: Tensor, targets: Tensor) -> dict[str, Tensor]:
        """Named scalar losses over the whole prediction of one model call in training, already weighted.

        frames: (B, T, C, H, W) the frames of every backbone call of the rollout, concatenated (T >= T_out);
        targets: (B, T_out, C, H, W). Called by the model wrapper in training mode when it passes targets.
        {} by default.
        """
        return {}

    def sample(self, x: Tensor, num_samples: int, frame_rate: int = 1,
               return_features: bool = False) -> BackboneOutput:
        """``num_samples`` futures of x (B, T_in, C, H, W): frames (B, K, T_out * frame_rate, C, H, W) and, with
        ``return_features``, features (B, K, T_out * frame_rate, F, h, w). Backbones with ``can_sample`` only."""
        raise NotImplementedError(f"backbone {type(self).__name__} has no sample(x, num_samples, frame_rate) method: "
                                  "it predicts one future (can_sample is False); use forward")

    def reconstruct(self, frames: Tensor) -> Tensor:
        """frames (B, T, C, H, W) -> their reconstructions (B, T, C, H, W). Backbones with ``validates_reconstruction``
        only."""
        raise NotImplementedError(f"backbone {type(self).__name__} does not reconstruct frames "
                                  "(validates_reconstruction is False)")

    def collision_probabilities(self, x: Tensor) -> Tensor | None:
        """Probability (B, T_out) of a collision at each predicted step for inputs x (B, T_in, C, H, W), or None
        when the backbone cannot tell yet. Backbones with ``predicts_collisions`` only."""
        raise NotImplementedError(f"backbone {type(self).__name__} does not predict collisions "
                                  "(predicts_collisions is False)")
