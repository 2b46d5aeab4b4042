"""``build_model``: a backbone, optionally wrapped by an adapter, under one contract.

``forward(x)`` maps observed frames (B, T_in, C, H, W) to predictions (B, T_out, C, H, W).
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch
from torch import Tensor, nn

from .config import Config, component_kwargs
from .errors import ConfigError
from .registry import ADAPTERS, BACKBONES, DATASETS

log = logging.getLogger("pdr")


def count_parameters(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


class PDRModel(nn.Module):
    """Backbone + optional adapter, rolled out autoregressively when the backbone predicts
    a different number of frames per call than asked for."""

    def __init__(self, backbone: nn.Module, adapter: nn.Module | None, in_frames: int, out_frames: int):
        super().__init__()
        self.backbone = backbone
        self.adapter = adapter
        self.in_frames = in_frames
        self.out_frames = out_frames
        self.in_shape = tuple(backbone.in_shape)
        self.backbone_frozen = False
        self.config = None  # the run's Config, set by pdr.load_run
        # The dataset's normalisation (raw = normalised * std + mean; None: frames are used as they are),
        # which ``predict`` applies; set by the training loop's checkpoints and pdr.load_run.
        self.data_mean: float | list[float] | None = None
        self.data_std: float | list[float] | None = None

    def freeze_backbone(self) -> None:
        """Train only the adapter: the backbone's parameters get no gradient and it stays in eval mode
        (fixed BatchNorm statistics, no dropout, its test-time rollout), so the adapter learns on the
        predictions the backbone makes at test time."""
        if self.adapter is None:
            raise ConfigError("model.freeze_backbone: true needs an adapter (model.adapter); nothing else would train")
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
    def predict(self, frames, normalised: bool = False) -> Tensor:
        """Predict the future of observed frames, in eval mode and without gradients.

        frames: (B, T_in, C, H, W) or one sequence (T_in, C, H, W), a tensor or an array, in the data's own
        units (as the dataset reads them from disk, before its normalisation). Returns (B, T_out, C, H, W)
        (or (T_out, C, H, W)) in the same units, on the model's device. ``normalised=True``: frames are
        already in the model's units (what the dataset returns) and so is the result.
        """
        param = next(self.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        x = torch.as_tensor(frames, dtype=torch.float32, device=device)
        single = x.dim() == 4
        x = x.unsqueeze(0) if single else x
        mean, std = (None, None) if normalised else (self._stat(self.data_mean, x), self._stat(self.data_std, x))
        if mean is not None:
            x = x - mean
        if std is not None:
            x = x / std
        was_training = self.training
        self.eval()
        try:
            y = self(x)
        finally:
            self.train(was_training)
        if std is not None:
            y = y * std
        if mean is not None:
            y = y + mean
        return y[0] if single else y

    def _predict_chunk(self, x: Tensor, extra: dict) -> Tensor:
        wants_features = self.adapter is not None and getattr(self.adapter, "source", "output") == "features"
        out = self.backbone(x, return_features=True, **extra) if wants_features else self.backbone(x, **extra)
        coarse, features = out if wants_features else (out, None)
        return coarse if self.adapter is None else self.adapter(coarse, features)

    def forward(self, x: Tensor, targets: Tensor | None = None, step: int | None = None,
                extras: dict | None = None) -> Tensor:
        """x: (B, T_in, C, H, W) -> (B, T_out, C, H, W). ``targets``/``step`` reach backbones that
        use ground truth during training (scheduled sampling) and are ignored otherwise; so do the
        dataset's ``extras`` (labels such as ``collision`` (B, T_out)) named in the backbone's ``extra_inputs``."""
        if x.dim() != 5 or tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(
                f"model input must have shape (B, {', '.join(map(str, self.in_shape))}) = (B, T_in, C, H, W), "
                f"got {tuple(x.shape)}"
            )
        extra = {}
        if getattr(self.backbone, "uses_targets", False) and self.training:
            extra = {"targets": targets, "step": step}
            wanted = getattr(self.backbone, "extra_inputs", ())
            extra.update({k: v for k, v in (extras or {}).items() if k in wanted})
        chunks, produced, window = [], 0, x
        while produced < self.out_frames:
            y = self._predict_chunk(window, extra)
            if y.dim() != 5 or y.shape[1] < 1:
                raise RuntimeError(f"backbone {type(self.backbone).__name__} returned {tuple(y.shape)}, "
                                   "expected (B, T, C, H, W) with T >= 1")
            take = min(y.shape[1], self.out_frames - produced)
            chunks.append(y[:, :take])
            produced += take
            if produced < self.out_frames:
                window = torch.cat([window, y], dim=1)[:, -self.in_frames:]
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=1)

    def auxiliary_losses(self) -> dict:
        """Losses the backbone and adapter computed in the last forward call (e.g. an ELBO's KL term)."""
        out = {}
        for part in (self.backbone, self.adapter):
            hook = getattr(part, "auxiliary_losses", None)
            if callable(hook):
                out.update(hook())
        return out

    def resolved_choices(self) -> dict[str, str]:
        """The backbone's and adapter's ``resolved_choices()`` by dotted config key (``model.backbone.<arg>``)."""
        out = {}
        for where, part in (("model.backbone", self.backbone), ("model.adapter", self.adapter)):
            hook = getattr(part, "resolved_choices", None)
            if callable(hook):
                out.update({f"{where}.{k}": v for k, v in hook().items()})
        return out

    def parameter_summary(self) -> dict[str, int]:
        return {"backbone": count_parameters(self.backbone), "adapter": count_parameters(self.adapter),
                "trainable": sum(p.numel() for p in self.parameters() if p.requires_grad)}


def _as_component(spec: str | dict | None) -> dict | None:
    if spec is None:
        return None
    return {"name": spec} if isinstance(spec, str) else dict(spec)


def _build_backbone(spec: dict, in_shape: tuple[int, ...], out_frames: int) -> nn.Module:
    return BACKBONES.build(spec["name"], in_shape=in_shape, out_frames=out_frames, **component_kwargs(spec))


def _build_adapter(spec: dict | None, in_shape: tuple[int, ...], backbone: nn.Module) -> nn.Module | None:
    if spec is None:
        return None
    return ADAPTERS.build(
        spec["name"],
        frame_shape=in_shape[1:],
        feature_channels=getattr(backbone, "feature_channels", None),
        **component_kwargs(spec),
    )


def _assemble(backbone_spec, adapter_spec, net, wrap, in_shape, out_frames) -> PDRModel:
    model = PDRModel(net, wrap, in_shape[0], out_frames)
    counts = model.parameter_summary()
    if wrap is None:
        log.info("model: backbone %s, %s parameters", backbone_spec["name"], f"{counts['backbone']:,}")
    else:
        share = 100.0 * counts["adapter"] / max(1, counts["backbone"])
        log.info(
            "model: backbone %s, %s parameters; adapter %s, %s parameters (+%.1f%% of the backbone)",
            backbone_spec["name"], f"{counts['backbone']:,}", adapter_spec["name"], f"{counts['adapter']:,}", share,
        )
    return model


def create_model(
    backbone: str | dict,
    in_shape: Sequence[int],
    out_frames: int,
    adapter: str | dict | None = None,
) -> PDRModel:
    """Build from names and arguments: ``create_model("simvp", (10, 3, 64, 64), 10, adapter="predgs")``.

    ``backbone``/``adapter`` are registry names or mappings ``{"name": ..., **arguments}``.
    """
    backbone, adapter = _as_component(backbone), _as_component(adapter)
    in_shape = tuple(int(v) for v in in_shape)
    net = _build_backbone(backbone, in_shape, int(out_frames))
    wrap = _build_adapter(adapter, in_shape, net)
    return _assemble(backbone, adapter, net, wrap, in_shape, int(out_frames))


def data_shape(cfg: Config) -> tuple[int, int, int]:
    """(C, H, W) of the configured dataset, without generating or reading any frames."""
    from .config import dataset_kwargs

    cls = DATASETS.get(cfg["data"]["name"])
    return tuple(cls.frame_shape(**dataset_kwargs(cfg)))


def build_model(cfg: Config) -> PDRModel:
    """The model a config describes; its input shape comes from the data section."""
    c, h, w = data_shape(cfg)
    in_shape = (cfg["data"]["in_frames"], c, h, w)
    out_frames = cfg["data"]["out_frames"]
    backbone, adapter = cfg["model"]["backbone"], cfg["model"].get("adapter")
    try:
        net = _build_backbone(backbone, in_shape, out_frames)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{cfg.origin('model.backbone')}: model.backbone ({backbone['name']}): {exc}") from exc
    try:
        wrap = _build_adapter(adapter, in_shape, net)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{cfg.origin('model.adapter')}: model.adapter ({adapter['name']}): {exc}") from exc
    return _assemble(backbone, adapter, net, wrap, in_shape, out_frames)
