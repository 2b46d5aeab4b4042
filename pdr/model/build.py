"""Building a ``PDRModel`` from registry names and arguments (``create_model``) or from a config (``build_model``)."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Sequence

from ..config import Config, component_kwargs, dataset_kwargs
from ..config.validate import component_error
from ..registry import ADAPTERS, BACKBONES, DATASETS
from .pdr_model import PDRModel

if TYPE_CHECKING:
    from ..adapters.base import Adapter
    from ..backbones.base import Backbone

log = logging.getLogger("pdr")


def _as_component(spec: str | dict | None) -> dict | None:
    if spec is None:
        return None
    return {"name": spec} if isinstance(spec, str) else dict(spec)


def _build_backbone(spec: dict, in_shape: tuple[int, ...], out_frames: int) -> Backbone:
    return BACKBONES.build(spec["name"], in_shape=in_shape, out_frames=out_frames, **component_kwargs(spec))


def _build_adapter(spec: dict | None, in_shape: tuple[int, ...], backbone: Backbone) -> Adapter | None:
    if spec is None:
        return None
    return ADAPTERS.build(
        spec["name"],
        frame_shape=in_shape[1:],
        feature_channels=backbone.feature_channels,
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
        raise component_error(cfg, "model.backbone", str(exc)) from exc
    try:
        wrap = _build_adapter(adapter, in_shape, net)
    except (ValueError, TypeError) as exc:
        raise component_error(cfg, "model.adapter", str(exc)) from exc
    return _assemble(backbone, adapter, net, wrap, in_shape, out_frames)
