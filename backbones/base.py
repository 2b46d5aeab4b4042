"""What every backbone provides to ``pdr.build_model``."""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn


class Backbone(nn.Module):
    """A pixel-space predictor.

    Built with ``in_shape = (T_in, C, H, W)`` and the number of frames the user asked for
    (``out_frames``). One call maps ``(B, T_in, C, H, W)`` to ``(B, frames_per_call, C, H, W)``;
    when ``frames_per_call`` differs from ``out_frames`` the model wrapper rolls the
    backbone out autoregressively (or keeps the first frames).

    Subclasses that can expose a hidden feature map per predicted frame set
    ``feature_channels`` and return ``(frames, features)`` with features of shape
    ``(B, frames_per_call, feature_channels, h, w)`` when called with ``return_features=True``;
    that is what ``source: features`` of PredGS consumes.

    Backbones that use ground truth during training (scheduled sampling) set
    ``uses_targets = True`` and accept ``targets`` (B, T_out, C, H, W) and ``step`` (int)
    keywords; the training loop passes them only in training mode.

    Such backbones may also list dataset labels they train on in ``extra_inputs`` (e.g.
    ``("collision",)``): datasets that return ``(inputs, targets, {"collision": ...})`` have them
    passed as keywords, in training only.

    Backbones with losses of their own (a KL term, a flow loss) return them from
    ``auxiliary_losses()`` as named scalar tensors of the last forward call; the training loop
    adds them to the configured loss and logs each one.
    """

    feature_channels: int | None = None
    uses_targets: bool = False
    extra_inputs: tuple[str, ...] = ()

    def __init__(self, in_shape: Sequence[int], out_frames: int):
        super().__init__()
        if len(in_shape) != 4:
            raise ValueError(f"in_shape must be (T_in, C, H, W), got {tuple(in_shape)}")
        self.in_shape = tuple(int(v) for v in in_shape)
        self.out_frames = int(out_frames)

    def auxiliary_losses(self) -> dict:
        """Named scalar losses of the last forward call (already weighted), {} by default."""
        return {}

    def resolved_choices(self) -> dict[str, str]:
        """What the backbone picked where its arguments leave a choice open (which pretrained network,
        which method), by argument name: the training loop logs it at the start of a run and keeps it in
        the run's config.yaml and checkpoints, and tools/eval.py shows it. {} by default."""
        return {}

    @property
    def frames_per_call(self) -> int:
        return self.in_shape[0]

    def forward(self, x: Tensor, return_features: bool = False):  # pragma: no cover - abstract
        raise NotImplementedError
