"""What every adapter provides to ``pdr.build_model``."""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn


class Adapter(nn.Module):
    """Refines a backbone's predicted frames.

    Built with ``frame_shape = (C, H, W)`` and the backbone's ``feature_channels`` (None when it exposes no
    features). ``forward(coarse, features=None)`` maps coarse frames (B, T, C, H, W), and the backbone's
    features (B, T, F, h, w) when ``needs_features`` is true, to refined frames (B, T, C, H, W).
    """

    needs_features: bool = False
    # w > 0: the training loss gets w * MSE(backbone frames, targets) as ``coarse_mse``, beside the configured loss
    # on the refined frames.
    coarse_loss_weight: float = 0.0
    # True: the adapter's output does not back-propagate into the backbone (nor does a rollout's fed-back frame).
    detach_coarse: bool = False

    @classmethod
    def size_multiple(cls, frame_shape: Sequence[int], **arguments) -> int:
        """The multiple of H and W this adapter needs when built for ``frame_shape`` (C, H, W) with ``arguments``
        (every constructor argument, defaults filled in). 1 (any size) by default."""
        return 1

    def forward(self, coarse: Tensor, features: Tensor | None = None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def resolved_choices(self) -> dict[str, str]:
        """What the adapter picked where its arguments leave a choice open, by argument name. {} by default."""
        return {}
