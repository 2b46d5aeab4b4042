"""Building a ``PDRModel`` from registry names and arguments (``create_model``) or from a config (``build_model``)."""
from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Sequence

from ..config import Config, component_kwargs, dataset_kwargs
from ..config.validate import component_error, frames_set_note
from ..errors import ConfigError
from ..registry import ADAPTERS, BACKBONES, DATASETS
from .padding import FramePadding, plan_padding, size_multiple_of
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


def size_multiple(backbone: dict, adapter: dict | None, in_shape: tuple[int, ...]) -> int:
    """The multiple of H and W that the backbone and adapter specs (``{"name": ..., **arguments}``) need at in_shape
    (T_in, C, H, W): the least common multiple of what each declares (``size_multiple``)."""
    t, c, h, w = in_shape
    m = size_multiple_of(BACKBONES.get(backbone["name"]), in_shape, component_kwargs(backbone), "in_shape")
    if adapter is not None:
        m = math.lcm(m, size_multiple_of(ADAPTERS.get(adapter["name"]), (c, h, w), component_kwargs(adapter),
                                         "frame_shape"))
    return m


def plan_model_padding(backbone: dict, adapter: dict | None, in_shape: tuple[int, ...], pad: str = "auto",
                       pad_mode: str = "replicate") -> FramePadding:
    """How frames of in_shape (T_in, C, H, W) are padded for these specs: ``pad`` "auto" to the size they need,
    "none" not at all (a ValueError when they need another size)."""
    t, c, h, w = in_shape
    if pad not in ("auto", "none"):
        raise ValueError(f"pad must be 'auto' or 'none', got {pad!r}")
    if pad == "auto":
        return plan_padding(h, w, lambda ph, pw: size_multiple(backbone, adapter, (t, c, ph, pw)), pad_mode)
    m = size_multiple(backbone, adapter, in_shape)
    if h % m or w % m:
        parts = backbone["name"] + (f" with adapter {adapter['name']}" if adapter else "")
        raise ValueError(f"{parts} needs H and W multiples of {m}, the frames are {h}x{w}; set pad: auto to pad them "
                         "and crop the predictions back")
    return FramePadding()


def _assemble(backbone_spec, adapter_spec, net, wrap, in_shape, out_frames, padding: FramePadding) -> PDRModel:
    model = PDRModel(net, wrap, in_shape[0], out_frames, padding=padding)
    if padding:
        log.info("model: %s (%s needs multiples of %d)", padding.describe(*in_shape[2:]), backbone_spec["name"] + (
            f" + {adapter_spec['name']}" if adapter_spec else ""), size_multiple(backbone_spec, adapter_spec,
                                                                                   tuple(net.in_shape)))
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


def _padded_shape(in_shape: tuple[int, ...], padding: FramePadding) -> tuple[int, ...]:
    return (*in_shape[:2], *padding.padded_size(*in_shape[2:]))


def create_model(
    backbone: str | dict,
    in_shape: Sequence[int],
    out_frames: int,
    adapter: str | dict | None = None,
    pad: str = "auto",
    pad_mode: str = "replicate",
) -> PDRModel:
    """Build from names and arguments: ``create_model("simvp", (10, 3, 64, 64), 10, adapter="predgs")``.

    ``backbone``/``adapter`` are registry names or mappings ``{"name": ..., **arguments}``. ``pad``: "auto" pads
    frames whose size the backbone or adapter does not divide (``pad_mode`` "replicate" or "reflect") and crops the
    predictions back; "none" leaves them as they are.
    """
    backbone, adapter = _as_component(backbone), _as_component(adapter)
    in_shape = tuple(int(v) for v in in_shape)
    padding = plan_model_padding(backbone, adapter, in_shape, pad, pad_mode)
    net = _build_backbone(backbone, _padded_shape(in_shape, padding), int(out_frames))
    wrap = _build_adapter(adapter, _padded_shape(in_shape, padding), net)
    return _assemble(backbone, adapter, net, wrap, in_shape, int(out_frames), padding)


def data_shape(cfg: Config) -> tuple[int, int, int]:
    """(C, H, W) of the configured dataset, without generating or reading any frames."""
    cls = DATASETS.get(cfg["data"]["name"])
    return tuple(cls.frame_shape(**dataset_kwargs(cfg)))


def build_model(cfg: Config) -> PDRModel:
    """The model a config describes; its input shape comes from the data section (padded as ``model.pad`` says)."""
    c, h, w = data_shape(cfg)
    in_shape = (cfg["data"]["in_frames"], c, h, w)
    out_frames = cfg["data"]["out_frames"]
    backbone, adapter = cfg["model"]["backbone"], cfg["model"].get("adapter")
    pad = cfg["model"].get("pad", "auto")
    try:
        padding = plan_model_padding(backbone, adapter, in_shape, pad, cfg["model"].get("pad_mode", "replicate"))
    except ValueError as exc:
        raise ConfigError(f"{cfg.origin('model.pad')}: model.pad: {pad}: {exc}{frames_set_note(cfg, 'model.pad')}") from exc
    padded = _padded_shape(in_shape, padding)
    try:
        net = _build_backbone(backbone, padded, out_frames)
    except (ValueError, TypeError) as exc:
        raise component_error(cfg, "model.backbone", str(exc)) from exc
    try:
        wrap = _build_adapter(adapter, padded, net)
    except (ValueError, TypeError) as exc:
        raise component_error(cfg, "model.adapter", str(exc)) from exc
    return _assemble(backbone, adapter, net, wrap, in_shape, out_frames, padding)
