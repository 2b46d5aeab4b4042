"""The losses of the latent flow model and their learned uncertainty weighting.

Every loss returns a scalar (a mean over its elements).  ``UncertaintyWeighting`` holds one learnable
log-variance s_i per loss and turns losses L_i into terms w_i * (exp(-s_i) L_i + s_i) (Kendall et al.);
the fixed multipliers w_i (``loss_weights``, default 1) set how much a term may count in the balance.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger("pdr")
PERCEPTUAL_KINDS = ("auto", "dino", "random", "none")
DINO_MODEL = "vit_small_patch14_dinov2"
DINO_HUB_ID = "timm/vit_small_patch14_dinov2.lvd142m"


def l1(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error (reconstruction, latent, warped frame and residual losses)."""
    return (pred - target).abs().mean()


def kl_standard_normal(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) per element, averaged; 0 exactly for mean 0, logvar 0."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()


def end_point_error(pred: Tensor, target: Tensor) -> Tensor:
    """Mean Euclidean distance of flows (..., 2, h, w) over the channel dimension."""
    return (pred - target).pow(2).sum(-3).add(1e-12).sqrt().mean()


def occlusion_bce(pred: Tensor, target: Tensor) -> Tensor:
    """Binary cross-entropy of the occlusion head (probabilities) against the visibility mask (0..1)."""
    return F.binary_cross_entropy(pred.clamp(1e-6, 1 - 1e-6), target)


def focal_loss(logits: Tensor, labels: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Binary focal loss, mean of -a_t (1 - p_t)^gamma log p_t (a_t = alpha for positives, 1 - alpha else)."""
    labels = labels.to(logits.dtype)
    logp = -F.binary_cross_entropy_with_logits(logits, labels, reduction="none")  # log p_t
    p_t = logp.exp()
    a_t = alpha * labels + (1 - alpha) * (1 - labels)
    return (-a_t * (1 - p_t).pow(gamma) * logp).mean()


# ----------------------------------------------------------------------------- perceptual features

class RandomFeatures(nn.Module):
    """The fallback perceptual network: three fixed conv layers (seed 0, never trained), (N, 3, H, W) -> list
    of maps at 1, 1/2 and 1/4 resolution.  Random conv features still compare local structure at several
    scales; they are not semantic like DINOv2's."""

    def __init__(self, width: int = 16):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.convs = nn.ModuleList()
        c_in = 3
        for i in range(3):
            conv = nn.Conv2d(c_in, width * 2 ** i, 3, 2 if i else 1, 1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (2.0 / (9 * c_in)) ** 0.5)
                conv.bias.zero_()
            self.convs.append(conv)
            c_in = width * 2 ** i

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
            feats.append(x)
        return feats


class DinoPatchFeatures(nn.Module):
    """DINOv2 ViT-S/14 patch tokens of frames (N, 3, H, W) in [0, 1], resized to 224x224, ImageNet-normalised."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.vit = vit
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> list[Tensor]:
        x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        return [self.vit.forward_features((x - self.mean) / self.std)]


def cached_dino_file():
    """The DINOv2 weights file in the local Hugging Face cache, or None (never downloads)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for name in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(DINO_HUB_ID, name)
        if isinstance(found, str):
            return found
    return None


def build_perceptual(kind: str) -> tuple[nn.Module | None, str]:
    """The frozen perceptual network for ``kind`` and the name of what was used ("dino", "random", "none").

    "auto": DINOv2 when its weights are cached, otherwise (one warning) the fixed random conv features;
    "dino": DINOv2 or a ValueError; "random": the fixed random features; "none": no perceptual loss.
    """
    if kind not in PERCEPTUAL_KINDS:
        raise ValueError(f"perceptual must be one of {list(PERCEPTUAL_KINDS)}, got {kind!r}")
    if kind == "none":
        return None, "none"
    net, used = None, "random"
    if kind in ("auto", "dino"):
        path = cached_dino_file()
        if path is not None:
            import timm

            vit = timm.create_model(DINO_MODEL, pretrained=True, num_classes=0, img_size=224,
                                    pretrained_cfg_overlay={"file": path})
            net, used = DinoPatchFeatures(vit), "dino"
        elif kind == "dino":
            raise ValueError(f"perceptual: dino needs the DINOv2 weights ({DINO_HUB_ID}) in the local Hugging Face "
                             "cache; nothing is downloaded. Use perceptual: auto or random")
        else:
            log.warning("latent_flow: DINOv2 weights (%s) are not in the local Hugging Face cache; the perceptual "
                        "loss uses fixed random conv features instead (perceptual: random). Nothing is downloaded.",
                        DINO_HUB_ID)
    if net is None:
        net = RandomFeatures()
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval(), used


def perceptual_l1(net: nn.Module, pred: Tensor, target: Tensor) -> Tensor:
    """Mean L1 between the features of pred and target (N, C, H, W); 1-channel frames are repeated to RGB."""
    if pred.shape[1] == 1:
        pred, target = pred.expand(-1, 3, -1, -1), target.expand(-1, 3, -1, -1)
    with torch.no_grad():
        ref = net(target)
    return sum(l1(a, b) for a, b in zip(net(pred), ref)) / len(ref)


# ----------------------------------------------------------------------------- uncertainty weighting

class UncertaintyWeighting(nn.Module):
    """One learnable log-variance per named loss: L_i -> w_i * (exp(-s_i) L_i + s_i)."""

    def __init__(self, names, weights: dict | None = None):
        super().__init__()
        names = list(names)
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise ValueError(f"loss_weights: unknown loss names {unknown}; the losses are {names}")
        self.log_vars = nn.ParameterDict({n: nn.Parameter(torch.zeros(())) for n in names})
        self.weights = {n: float(weights.get(n, 1.0)) for n in names}

    def forward(self, losses: dict[str, Tensor]) -> dict[str, Tensor]:
        out = {}
        for name, value in losses.items():
            s = self.log_vars[name]
            out[name] = self.weights[name] * (torch.exp(-s) * value + s)
        return out
