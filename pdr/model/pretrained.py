"""Start a backbone from trained weights (``model.init_from``): a PDR run folder or checkpoint, or an
OpenSTL checkpoint (a plain state_dict ``.pth`` or a Lightning ``.ckpt``).

OpenSTL's method classes keep the network under ``.model``, so the ``state_dict`` of a Lightning
checkpoint names it ``model.<layer>``; a plain ``.pth`` holds the network's own names. The bridge
(``openstl:<Method>``) keeps OpenSTL's network under ``.model`` as well, so both load into it as they
are. PDR's own SimVP/TAU, PredRNN and ConvLSTM compute what OpenSTL's compute with other layer names
(docs/backbones.md): ``OPENSTL_RENAMES`` maps OpenSTL's names onto theirs.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import CheckpointError

log = logging.getLogger("pdr")

# OpenSTL name -> PDR name, applied in order (re.sub) to every key; None drops the key.
_SIMVP_RENAMES = (
    (r"^enc\.enc\.(\d+)\.conv\.", r"encoder.layers.\1."),  # ConvSC(BasicConv2d(conv, norm)) -> ConvNormAct
    (r"^dec\.dec\.(\d+)\.conv\.", r"decoder.layers.\1."),
    (r"^dec\.readout\.", "decoder.readout."),
    # gSTA and TAU: MidMetaNet of MetaBlocks (block + 1x1 reduction)
    (r"^hid\.enc\.(\d+)\.reduction\.", r"translator.blocks.\1.reduce."),
    (r"^hid\.enc\.(\d+)\.block\.", r"translator.blocks.\1.block."),
    (r"\.layer_scale_(\d)$", r".scale\1"),
    (r"\.attn\.proj_1\.", ".attn.proj_in."),
    (r"\.attn\.proj_2\.", ".attn.proj_out."),
    (r"\.attn\.spatial_gating_unit\.conv0\.", ".attn.gate.local."),
    (r"\.attn\.spatial_gating_unit\.conv_spatial\.", ".attn.gate.dilated."),
    (r"\.attn\.spatial_gating_unit\.conv1\.", ".attn.gate.mix."),
    (r"\.attn\.spatial_gating_unit\.fc\.0\.", ".attn.gate.squeeze."),  # TAU's squeeze-and-excitation
    (r"\.attn\.spatial_gating_unit\.fc\.2\.", ".attn.gate.excite."),
    (r"\.mlp\.dwconv\.dwconv\.", ".mlp.dw."),
    # IncepU: MidIncepNet of gInception_ST (1x1 conv1, then grouped conv branches `layers`)
    (r"^hid\.(enc|dec)\.(\d+)\.conv1\.", r"translator.\1.\2.squeeze."),
    (r"^hid\.(enc|dec)\.(\d+)\.layers\.(\d+)\.", r"translator.\1.\2.branches.\3."),
    (r"^translator\.enc\.", "translator.encoder."),
    (r"^translator\.dec\.", "translator.decoder."),
)
_PREDRNN_RENAMES = (
    (r"^cell_list\.(\d+)\.conv_last\.", r"cells.\1.fuse."),  # the 1x1 conv of [C, M] inside the cell
    (r"^cell_list\.", "cells."),
    (r"^conv_last\.", "readout."),
)
_CONVLSTM_RENAMES = (
    (r"^cell_list\.\d+\.(conv_o|conv_last)\.", None),  # created by OpenSTL's cell, never used in its forward
    (r"^cell_list\.", "cells."),
    (r"^conv_last\.", "readout."),
)
OPENSTL_RENAMES = {"SimVP": _SIMVP_RENAMES, "PredRNN": _PREDRNN_RENAMES, "ConvLSTM": _CONVLSTM_RENAMES}
_NOTES = {
    "ConvLSTM": "OpenSTL's ConvLSTM cell has no output-gate peephole (conv_c) and no +1 forget-gate bias: its "
                "weights load with model.init_strict: false (conv_c keeps its initialisation) and then compute "
                "another function; backbone openstl:ConvLSTM runs OpenSTL's cell itself",
}


@dataclass
class LoadReport:
    """What ``load_backbone_weights`` did: counts and the names that did not fit."""

    source: str
    loaded: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # "name: checkpoint (a, b) vs model (c, d)"

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


def _run_checkpoint(folder: Path) -> Path:
    for name in ("best", "last"):
        path = folder / "checkpoints" / f"{name}.pt"
        if path.is_file():
            return path
    raise CheckpointError(f"model.init_from: {folder} is a folder without checkpoints/best.pt or checkpoints/last.pt "
                          "(expected a run folder of tools/train.py, or a checkpoint file)")


def read_backbone_state(path: str | os.PathLike) -> tuple[dict[str, Tensor], str, str]:
    """(state dict, naming, description) of the backbone weights in ``path``.

    naming is ``"pdr"`` (a PDR run folder or checkpoint: the keys of ``model.backbone``) or ``"openstl"``
    (an OpenSTL network's keys: a Lightning checkpoint's ``state_dict`` without its ``model.`` prefix, or
    a plain state dict).
    """
    from ..engine.checkpoint import read_torch_file  # here: pdr.engine imports this module

    path = Path(path)
    if path.is_dir():
        path = _run_checkpoint(path)
    elif not path.exists():
        raise CheckpointError(f"model.init_from: {path} does not exist (expected a PDR run folder or checkpoint, "
                              "or an OpenSTL .pth/.ckpt)")
    state = read_torch_file(path)
    if isinstance(state, dict) and isinstance(state.get("model"), dict) and "config" in state:
        backbone = state["config"].get("model", {}).get("backbone", {})
        name = backbone.get("name", "?") if isinstance(backbone, dict) else backbone
        weights = {k[len("backbone."):]: v for k, v in state["model"].items() if k.startswith("backbone.")}
        return weights, "pdr", f"PDR checkpoint {path} (backbone {name})"
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        weights = {k[len("model."):] if k.startswith("model.") else k: v for k, v in state["state_dict"].items()}
        return weights, "openstl", f"checkpoint {path} (its state_dict)"
    if isinstance(state, dict) and state and all(isinstance(v, Tensor) for v in state.values()):
        if all(k.startswith(("backbone.", "adapter.")) for k in state):  # a PDRModel.state_dict()
            return {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}, "pdr", \
                f"PDR model state dict {path}"
        return dict(state), "openstl", f"state dict {path}"
    raise CheckpointError(
        f"model.init_from: {path} is neither a PDR checkpoint (with 'model' and 'config') nor an OpenSTL checkpoint "
        f"(a Lightning .ckpt with 'state_dict', or a plain state dict of tensors); found {type(state).__name__}"
        + (f" with keys {sorted(state)[:10]}" if isinstance(state, dict) else "")
    )


def _rules_for(backbone: nn.Module) -> tuple[str | None, tuple]:
    for cls in type(backbone).__mro__:
        if cls.__name__ in OPENSTL_RENAMES:
            return cls.__name__, OPENSTL_RENAMES[cls.__name__]
    return None, ()


def openstl_to_pdr_names(state: dict[str, Tensor], backbone: nn.Module) -> tuple[dict[str, Tensor], list[str]]:
    """OpenSTL's keys renamed to ``backbone``'s: (renamed state, keys dropped as unused by OpenSTL itself).

    The bridge (``openstl:<Method>``) takes them under ``model.``; PDR's SimVP/TAU, PredRNN and ConvLSTM
    through ``OPENSTL_RENAMES``. OpenSTL wraps a convolution in a one-element Sequential (``conv_x.0``)
    where PDR's plain one is ``conv_x``: such keys lose the ``.0`` when the model has no ``.0``.
    """
    from ..backbones.openstl_bridge import OpenSTLBackbone

    target = backbone.state_dict()
    if isinstance(backbone, OpenSTLBackbone):
        return {f"model.{k}": v for k, v in state.items()}, []
    _, rules = _rules_for(backbone)
    out, dropped = {}, []
    for key, value in state.items():
        new = key
        for pattern, replacement in rules:
            if re.search(pattern, new):
                if replacement is None:
                    new = None
                    break
                new = re.sub(pattern, replacement, new)
        if new is None:
            dropped.append(key)
            continue
        if new not in target:
            collapsed = re.sub(r"\.0\.(weight|bias)$", r".\1", new)
            new = collapsed if collapsed in target else new
        out[new] = value
    return out, dropped


def _listing(names: list[str], first: int | None = None) -> str:
    """The names, or the ``first`` few of them and how many more."""
    if first is None or len(names) <= first:
        return ", ".join(names)
    return ", ".join(names[:first]) + f", ... ({len(names) - first} more)"


def mismatch_summary(missing: list[str], unexpected: list[str], mismatched: list[str], first: int | None = 3) -> str:
    """``2 missing from the checkpoint: a, b; 40 with another shape: x: checkpoint (8,) vs model (16,), ...``:
    each kind of misfit with its count and its ``first`` few names (None: all)."""
    return "; ".join(f"{len(names)} {what}: {_listing(names, first)}" for what, names in (
        ("missing from the checkpoint", missing), ("unexpected (not in the model)", unexpected),
        ("with another shape", mismatched)) if names)


def load_backbone_weights(model: nn.Module, path: str | os.PathLike, strict: bool = True,
                          target: str | None = None) -> LoadReport:
    """Load the backbone weights in ``path`` into ``model.backbone`` (a PDRModel) or ``model`` (a backbone).

    ``path``: a PDR run folder (its checkpoints/best.pt, else last.pt) or checkpoint, or an OpenSTL checkpoint
    for the bridge or for the OpenSTL methods PDR implements (SimVP, TAU, PredRNN, ConvLSTM). The adapter is
    not touched. ``strict``: any missing or unexpected key, or a shape that differs, is one CheckpointError
    that counts them and names the first few (``LoadReport`` of the non-strict load has them all); otherwise
    the tensors that fit are loaded and the rest is logged. ``target``: what the weights go into, in the
    user's words (``backbone 'tau' of configs/x.yaml``; default: the backbone's class).
    """
    backbone = getattr(model, "backbone", model)
    state, naming, source = read_backbone_state(path)
    target_state = backbone.state_dict()
    dropped: list[str] = []
    if naming == "openstl" and not set(state) <= set(target_state):  # a plain state dict of PDR's own backbone loads as it is
        state, dropped = openstl_to_pdr_names(state, backbone)
    missing = [k for k in target_state if k not in state]
    unexpected = [k for k in state if k not in target_state]
    mismatched = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target_state[k].shape)}" for k, v in state.items()
                  if k in target_state and tuple(v.shape) != tuple(target_state[k].shape)]
    fitting = {k: v for k, v in state.items()
               if k in target_state and tuple(v.shape) == tuple(target_state[k].shape)}
    report = LoadReport(source, len(fitting), missing, unexpected, mismatched)
    target = target or f"backbone {type(backbone).__name__}"
    note = _NOTES.get(_rules_for(backbone)[0] or "", "") if naming == "openstl" else ""
    problems = mismatch_summary(missing, unexpected, mismatched)
    if not report.complete:
        log.debug("model.init_from: every tensor that does not fit: %s", mismatch_summary(missing, unexpected,
                                                                                         mismatched, first=None))
    if not report.complete and strict:
        raise CheckpointError(
            f"model.init_from: {source} does not fit {target}: {problems}. Set model.init_strict: false to "
            f"load the {len(fitting)} of {len(target_state)} tensors that fit and keep the initialisation of the rest"
            + (f" ({note})" if note else "")
        )
    backbone.load_state_dict(fitting, strict=False)
    if dropped:
        log.info("model.init_from: skipped %d tensors OpenSTL never uses: %s", len(dropped), _listing(dropped))
    if report.complete:
        log.info("model.init_from: loaded all %d backbone tensors from %s", len(fitting), source)
    else:
        log.warning("model.init_from: loaded %d of %d backbone tensors from %s; not loaded: %s", len(fitting),
                    len(target_state), source, problems)
    return report
