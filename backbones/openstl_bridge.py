"""The OpenSTL bridge: any model of an OpenSTL installation as a pdr backbone, in one line.

    model:
      backbone:
        name: openstl:PredRNN          # OpenSTL's method name, as its configs spell it
        num_hidden: '128,128,128,128'  # the rest: the values of an OpenSTL config, pasted
        filter_size: 5
        patch_size: 4
      adapter: predgs                  # wraps it like any other backbone

or ``name: openstl`` with ``openstl_config: path/to/OpenSTL/configs/mmnist/PredRNN.py``, which
reads the method and the values from an OpenSTL config file (keys of the section override the
file's). OpenSTL is not a dependency of pdr: it is imported when such a backbone is built.
OpenSTL is not on PyPI (the PyPI package named ``openstl`` is an unrelated STL-file library);
install it from source (see ``INSTALL_HINT``), or point ``openstl_root`` at a checkout.

What the bridge does per OpenSTL model family (all return frames in pdr's contract,
(B, T, C, H, W)):

- direct models (SimVP, TAU, WaST) are called on (B, T_in, C, H, W) and predict T_in frames
  per call (pdr's model rolls out or truncates to T_out, as OpenSTL's SimVP method does). TAU's
  differential divergence regularization (``alpha``, default 0.1) becomes the auxiliary loss
  ``ddr``.
- recurrent models (ConvLSTM, PredRNN, PredRNNpp, PredRNNv2, MIM, E3DLSTM, MAU) are called on
  patched, channels-last frames (B, T_in + T_out, H/p, W/p, p*p*C) with OpenSTL's sampling mask:
  in training (with targets) the (reverse) scheduled sampling mask of the current step, at
  inference the mask that feeds the model its own predictions. They predict T_out frames per
  call. PredRNNv2's decoupling loss becomes the auxiliary loss ``decouple``.
- SwinLSTM_D / SwinLSTM_B (``SwinLSTM`` = SwinLSTM_B, as in OpenSTL) are called on
  channels-last frames and feed back their own predictions.
- PhyDNet is run step by step through its encoder (its ``forward`` returns only a loss); its
  moment constraint becomes the auxiliary loss ``moment``.

OpenSTL's training settings in a pasted config (lr, batch_size, sched, ...) are ignored with a
log line: they belong to the optim / schedule / data sections. OpenSTL's own recurrent training
loss also fits the reconstructed input frames; here the configured loss sees the T_out
predicted frames only.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pdr.errors import PDRError
from pdr.registry import BACKBONES

from .base import Backbone, BackboneOutput
from .recurrent import RecurrentBackbone, SamplingSchedule, inference_mask, parse_num_hidden, patchify, unpatchify
from .simvp import ddr_loss

log = logging.getLogger("pdr")

INSTALL_HINT = (
    "install OpenSTL from source: `git clone https://github.com/chengtan9907/OpenSTL && cd OpenSTL && "
    "pip install -e .` (plus its model dependencies: timm, einops, fvcore, opencv-python, pytorch-lightning), "
    "or set the backbone key openstl_root: /path/to/OpenSTL to use a checkout without installing it. "
    "Do not `pip install openstl`: that PyPI package is an unrelated STL-file library"
)

# pip names of the modules OpenSTL imports, for the message when one is missing
_PIP_NAMES = {"cv2": "opencv-python", "pytorch_lightning": "pytorch-lightning", "lightning": "lightning",
              "skimage": "scikit-image", "fvcore": "fvcore", "timm": "timm", "einops": "einops",
              "sklearn": "scikit-learn", "pywt": "PyWavelets", "hickle": "hickle", "xarray": "xarray", "decord": "decord"}


class OpenSTLNotFoundError(PDRError, RuntimeError):
    """OpenSTL (the spatio-temporal predictive learning library) cannot be imported."""


# ----------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class Method:
    """How to build and call one OpenSTL method."""

    family: str  # "direct", "recurrent", "swinlstm", "phydnet"
    model: str  # attribute of openstl.models (or "module:attribute")
    defaults: dict
    channels_last_output: bool = True  # recurrent models: (B, T, h, w, C) out; MAU returns (B, T, C, h, w)


# OpenSTL's recurrent defaults: those of pdr's own ConvLSTM and PredRNN, with the widths spelled as OpenSTL does
_RNN = {**RecurrentBackbone.default_settings(), "num_hidden": "128,128,128,128"}

METHODS: dict[str, Method] = {
    "SimVP": Method("direct", "SimVP_Model", {"model_type": "gSTA", "drop": 0.0, "drop_path": 0.0}),
    "TAU": Method("direct", "SimVP_Model", {"model_type": "tau", "drop": 0.0, "drop_path": 0.0, "alpha": 0.1}),
    "WaST": Method("direct", "openstl.modules.wast_modules:WaST_level1", {"encoder_dim": 20, "block_list": [2, 8, 2]}),
    "ConvLSTM": Method("recurrent", "ConvLSTM_Model", _RNN),
    "PredRNN": Method("recurrent", "PredRNN_Model", _RNN),
    "PredRNNpp": Method("recurrent", "PredRNNpp_Model", _RNN),
    "PredRNNv2": Method("recurrent", "PredRNNv2_Model", {**_RNN, "reverse_scheduled_sampling": 1, "decouple_beta": 0.1}),
    "MIM": Method("recurrent", "MIM_Model", _RNN),
    "E3DLSTM": Method("recurrent", "E3DLSTM_Model", _RNN),
    "MAU": Method("recurrent", "MAU_Model", {**_RNN, "num_hidden": "64,64,64,64", "patch_size": 1, "sr_size": 4, "tau": 5,
                                             "cell_mode": "normal", "model_mode": "normal"},
                  channels_last_output=False),
    "SwinLSTM_D": Method("swinlstm", "SwinLSTM_D_Model", {"depths_downsample": "2,6", "depths_upsample": "6,2",
                                                          "num_heads": "4,8", "patch_size": 2, "window_size": 4,
                                                          "embed_dim": 128}),
    "SwinLSTM_B": Method("swinlstm", "SwinLSTM_B_Model", {"depths": 12, "num_heads": 4, "patch_size": 2,
                                                          "window_size": 4, "embed_dim": 128}),
    "PhyDNet": Method("phydnet", "PhyDNet_Model", {"patch_size": 4}),
}
ALIASES = {"SwinLSTM": "SwinLSTM_B"}  # as OpenSTL's method_maps
NOT_BRIDGED = {"MMVP": "its training passes the target frames through forward, which a pdr backbone cannot do"}

# OpenSTL settings that are not model hyperparameters: ignored (with a log line) when pasted
TRAINING_KEYS = frozenset({
    "lr", "batch_size", "val_batch_size", "sched", "epoch", "warmup_epoch", "warmup_lr", "min_lr", "final_div_factor",
    "decay_epoch", "decay_rate", "lr_k_decay", "opt", "opt_eps", "opt_betas", "momentum", "weight_decay", "clip_grad",
    "clip_mode", "filter_bias_and_bn", "drop_last", "cutmode", "cutoff", "loss_weight", "noise_type", "seed",
    "device", "dist", "fp16", "res_dir", "ex_name", "dataname", "data_root", "num_workers", "use_augment",
    "use_prefetcher", "log_step", "metric_for_bestckpt", "gpus", "test", "fps", "torchscript", "deterministic",
    "overwrite", "config_file", "no_display_method_info",
})
# set by pdr from the data section
DATA_KEYS = ("in_shape", "pre_seq_length", "aft_seq_length", "total_length")
# keys of the bridge itself
OWN_KEYS = ("openstl_config", "openstl_root", "method")


def canonical_method(name: str) -> str:
    """OpenSTL's spelling of a method name given in any case; ValueError naming ``method`` if unknown."""
    table = {m.lower(): m for m in [*METHODS, *ALIASES]}
    key = str(name).lower()
    if key in {m.lower() for m in NOT_BRIDGED}:
        real = next(m for m in NOT_BRIDGED if m.lower() == key)
        raise ValueError(f"method: OpenSTL's {real} is not bridged: {NOT_BRIDGED[real]}")
    if key not in table:
        raise ValueError(f"method: unknown OpenSTL method {name!r}; bridged: {', '.join(METHODS)} (and SwinLSTM)")
    return ALIASES.get(table[key], table[key])


# ----------------------------------------------------------------------------- OpenSTL config files


def load_openstl_config(path: str | Path) -> dict:
    """The values of an OpenSTL config file (``NAME = literal`` lines), without running it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"openstl_config: file not found: {path}")
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as exc:
        raise ValueError(f"openstl_config: {path}: invalid Python: {exc}") from None
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring or comment string
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                raise ValueError(f"openstl_config: {path}, line {node.lineno}: only literal values are supported "
                                 f"(numbers, strings, lists, dicts)") from None
            for target in node.targets:
                values[target.id] = value
            continue
        raise ValueError(f"openstl_config: {path}, line {node.lineno}: only `name = value` lines are supported")
    return values


# ----------------------------------------------------------------------------- importing OpenSTL


def import_openstl(root: str | Path | None = None):
    """Import ``openstl.models`` from an OpenSTL installation (or the checkout ``root``).

    Raises OpenSTLNotFoundError saying how to install OpenSTL when it is missing, when the
    installed ``openstl`` is another package, or when one of its dependencies is missing.
    """
    if root is not None:
        root = Path(root).expanduser().resolve()
        if not (root / "openstl" / "models").is_dir():
            raise OpenSTLNotFoundError(f"openstl_root: {root} is not an OpenSTL checkout (no openstl/models in it); "
                                       + INSTALL_HINT)
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        loaded = sys.modules.get("openstl")
        if loaded is not None and not str(getattr(loaded, "__file__", "") or "").startswith(str(root)):
            raise OpenSTLNotFoundError(f"openstl_root: another 'openstl' is already imported from "
                                       f"{getattr(loaded, '__file__', '?')}; cannot switch to {root} in this process")
    try:
        spec = importlib.util.find_spec("openstl")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise OpenSTLNotFoundError("the OpenSTL backbones need OpenSTL, which is not installed: " + INSTALL_HINT)
    where = spec.origin or (list(spec.submodule_search_locations or []) or ["?"])[0]
    try:
        return importlib.import_module("openstl.models")
    except ModuleNotFoundError as exc:
        if exc.name in ("openstl.models", "openstl"):
            raise OpenSTLNotFoundError(
                f"the installed package 'openstl' ({where}) is not OpenSTL (it has no openstl.models); it is probably "
                f"the unrelated PyPI package of that name: `pip uninstall openstl`, then " + INSTALL_HINT
            ) from exc
        pip = _PIP_NAMES.get(str(exc.name).split(".")[0], str(exc.name).split(".")[0])
        raise OpenSTLNotFoundError(
            f"OpenSTL ({where}) needs the module {exc.name!r}, which is missing: `pip install {pip}`"
        ) from exc
    except ImportError as exc:
        raise OpenSTLNotFoundError(f"OpenSTL ({where}) failed to import: {exc}. " + INSTALL_HINT) from exc


def _resolve(models_module, target: str):
    if ":" in target:
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)
    return getattr(models_module, target)


# ----------------------------------------------------------------------------- the backbone


class OpenSTLBackbone(Backbone):
    """An OpenSTL model in pdr's backbone contract.

    ``forward(x)``: (B, T_in, C, H, W) -> frames (B, frames_per_call, C, H, W), where frames_per_call is
    T_in for direct models and T_out for the others. The OpenSTL module is ``self.model`` (its
    state_dict keys start with ``model.``). No feature maps: PredGS uses ``source: output``.

    Args:
        method: OpenSTL's method name (``SimVP``, ``PredRNN``, ...; any case), or None to take it
            from ``openstl_config``.
        openstl_config: an OpenSTL config file whose values are used (the section's keys win).
        openstl_root: an OpenSTL checkout to import from, instead of an installed OpenSTL.
        **hparams: OpenSTL hyperparameters of the method (its config's names and values).
    """

    def __init__(self, in_shape: Sequence[int], out_frames: int, method: str | None = None,
                 openstl_config: str | None = None, openstl_root: str | None = None, **hparams):
        super().__init__(in_shape, out_frames)
        values = load_openstl_config(openstl_config) if openstl_config else {}
        file_method = values.pop("method", None)
        values.update(hparams)
        if method is None and file_method is None:
            raise ValueError("method: name the OpenSTL method (backbone openstl:<Method>, or `method:` / an "
                             "openstl_config file with a `method = ...` line)")
        if method is not None and file_method is not None and canonical_method(method) != canonical_method(file_method):
            raise ValueError(f"method: the backbone is OpenSTL's {method} but openstl_config says {file_method!r}")
        self.method = canonical_method(method if method is not None else file_method)
        spec = METHODS[self.method]
        self.family = spec.family
        self.channels_last_output = spec.channels_last_output

        t_in, _, h, w = self.in_shape
        own = {"in_shape": list(self.in_shape), "pre_seq_length": t_in, "aft_seq_length": self.out_frames,
               "total_length": t_in + self.out_frames}
        for key in DATA_KEYS:
            if key in values:
                given = list(values[key]) if isinstance(values[key], (list, tuple)) else values[key]
                if given != own[key]:
                    raise ValueError(f"{key}: set by pdr from the data section ({own[key]}), got {values.pop(key)!r}; "
                                     "remove it or change data.in_frames / data.out_frames")
                values.pop(key)
        ignored = sorted(k for k in values if k in TRAINING_KEYS)
        if ignored:
            log.info("openstl:%s: ignoring OpenSTL training settings %s (set them in the optim, schedule and data "
                     "sections)", self.method, ", ".join(ignored))
        hp = {**spec.defaults, **{k: v for k, v in values.items() if k not in TRAINING_KEYS}}
        self.hparams = dict(hp)

        self.alpha = float(hp.pop("alpha", 0.0)) if self.method == "TAU" else 0.0
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        self.schedule = None
        if self.family in ("recurrent", "swinlstm", "phydnet"):
            p = hp.get("patch_size", 1)
            if not isinstance(p, int) or p < 1 or h % p or w % p:
                raise ValueError(f"patch_size must be a positive integer dividing the frame size {h}x{w}, got {p!r}")
            self.patch_size = p
        if self.family == "recurrent":
            if self.method == "MAU" and hp.get("reverse_scheduled_sampling"):
                raise ValueError("reverse_scheduled_sampling: OpenSTL's MAU has no reverse scheduled sampling; use 0")
            self.schedule = SamplingSchedule.from_settings(hp)
        self.uses_targets = self.family == "recurrent" or self.alpha > 0

        models = import_openstl(openstl_root)
        self.model = self._build(_resolve(models, spec.model), hp, own)

    @classmethod
    def size_multiple(cls, in_shape: Sequence[int], method: str | None = None, openstl_config: str | None = None,
                      openstl_root: str | None = None, **hparams) -> int:
        """The multiple of H and W the method needs: 2^(N_S // 2) for SimVP and TAU, the patch size of patched
        methods (times ``sr_size`` for MAU; PhyDNet patches by 2 or else 4); 1 for WaST (not declared)."""
        values = load_openstl_config(openstl_config) if openstl_config else {}
        name = method if method is not None else values.get("method")
        if name is None:
            return 1
        name = canonical_method(name)
        spec = METHODS[name]
        hp = {**spec.defaults, **values, **hparams}
        p = int(hp.get("patch_size", 1))
        if spec.family == "direct":
            return 2 ** (int(hp.get("N_S", 4)) // 2) if spec.model == "SimVP_Model" else 1
        if name == "MAU":
            return p * int(hp.get("sr_size", 4))
        if name == "PhyDNet":
            return p if p in (2, 4) else 4
        return p

    # -- building ----------------------------------------------------------------------------------
    def _namespace(self, hp: dict, own: dict) -> SimpleNamespace:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        return SimpleNamespace(**{**hp, **own, "in_shape": tuple(self.in_shape), "device": device})

    def _build(self, cls, hp: dict, own: dict) -> nn.Module:
        try:
            if self.family == "direct":
                return cls(in_shape=tuple(self.in_shape), **hp)
            configs = self._namespace(hp, own)
            if self.family == "recurrent":
                num_hidden = parse_num_hidden(hp["num_hidden"])
                configs.num_hidden = ",".join(map(str, num_hidden))
                return cls(len(num_hidden), num_hidden, configs)
            if self.method == "SwinLSTM_D":
                lists = {k: parse_num_hidden(hp[k], k) for k in ("depths_downsample", "depths_upsample", "num_heads")}
                return cls(lists["depths_downsample"], lists["depths_upsample"], lists["num_heads"], configs)
            return cls(configs)
        except (TypeError, KeyError, AssertionError) as exc:
            raise ValueError(f"OpenSTL's {self.method} rejected the hyperparameters {self.hparams}: "
                             f"{type(exc).__name__}: {exc}") from exc

    @property
    def frames_per_call(self) -> int:
        return self.in_shape[0] if self.family == "direct" else self.out_frames

    # -- calling -----------------------------------------------------------------------------------
    def forward(self, x: Tensor, return_features: bool = False, targets: Tensor | None = None,
                step: int | None = None) -> BackboneOutput:
        """(B, T_in, C, H, W) -> frames (B, frames_per_call, C, H, W), with PredRNNv2's ``decouple`` and PhyDNet's
        ``moment`` as auxiliary losses in training. ``targets`` (B, T_out, C, H, W) and ``step`` (training only)
        drive the sampling mask of recurrent models (TAU's ``alpha``: ``rollout_losses``)."""
        if return_features:
            raise ValueError(f"openstl:{self.method} exposes no feature maps; use PredGS with source: output")
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"input must have shape (B, {', '.join(map(str, self.in_shape))}), got {tuple(x.shape)}")
        training = self.training and targets is not None
        if self.family == "direct":  # OpenSTL's SimVP views the input: a rollout window is not contiguous
            return BackboneOutput(self.model(x.contiguous()))
        if self.family == "recurrent":
            return self._forward_recurrent(x, targets if training else None, step)
        if self.family == "swinlstm":
            return BackboneOutput(self._forward_swinlstm(x))
        return self._forward_phydnet(x)

    def _future(self, x: Tensor, targets: Tensor | None) -> Tensor:
        """The T_out frames after the input: the targets in training, zeros (never read) otherwise."""
        if targets is None:
            return x.new_zeros(x.shape[0], self.out_frames, *x.shape[2:])
        if targets.dim() != 5 or tuple(targets.shape[2:]) != self.in_shape[1:] or targets.shape[1] < self.out_frames:
            raise ValueError(f"targets must have shape (B, {self.out_frames}, {', '.join(map(str, self.in_shape[1:]))}), "
                             f"got {tuple(targets.shape)}")
        return targets[:, : self.out_frames].to(x.dtype)

    def _forward_recurrent(self, x: Tensor, targets: Tensor | None, step: int | None) -> BackboneOutput:
        b, t_in = x.shape[:2]
        t_out, p = self.out_frames, self.patch_size
        frames = torch.cat([x, self._future(x, targets)], dim=1)
        patched = patchify(frames, p).permute(0, 1, 3, 4, 2).contiguous()  # OpenSTL's reshape_patch layout
        if targets is not None:
            mask = self.schedule.mask(b, t_in, t_out, step or 0, device=x.device)
        else:
            mask = inference_mask(b, t_in, t_out, device=x.device)
        if not self.schedule.reverse_scheduled_sampling:
            mask = mask[:, t_in - 1:]  # OpenSTL's mask covers the future steps only
        mask = mask[:, :, None, None, None].to(x.dtype).expand(-1, -1, *patched.shape[2:]).contiguous()
        want_loss = self.method == "PredRNNv2" and self.training
        out, loss = self.model(patched, mask, return_loss=want_loss)
        aux = {}
        if want_loss:  # OpenSTL's loss = MSE(all frames) + decouple_beta * decoupling: keep the second term
            aux["decouple"] = loss - F.mse_loss(out, patched[:, 1:])
        if self.channels_last_output:
            out = out.permute(0, 1, 4, 2, 3)
        out = unpatchify(out, p)
        return BackboneOutput(out[:, -t_out:], aux_losses=aux)

    def _forward_swinlstm(self, x: Tensor) -> Tensor:
        frames = torch.cat([x, self._future(x, None)], dim=1).permute(0, 1, 3, 4, 2).contiguous()
        out, _ = self.model(frames, return_loss=False)
        return out.permute(0, 1, 4, 2, 3)[:, -self.out_frames:]

    def _forward_phydnet(self, x: Tensor) -> BackboneOutput:
        for module in self.model.modules():  # PhyDNet creates its hidden states on `configs.device`
            if isinstance(getattr(module, "device", None), (str, torch.device)):
                module.device = x.device
        encoder = self.model.encoder
        first = True
        for t in range(x.shape[1] - 1):
            encoder(x[:, t], first)
            first = False
        frame, predictions = x[:, -1], []
        for _ in range(self.out_frames):
            _, _, frame, _, _ = encoder(frame, first)
            first = False
            predictions.append(frame)
        aux = {"moment": self._phydnet_moment_loss()} if self.training else {}
        return BackboneOutput(torch.stack(predictions, dim=1), aux_losses=aux)

    def _phydnet_moment_loss(self) -> Tensor:
        """PhyDNet's constraint: the moments of PhyCell's 7x7 filters match the identity moments."""
        weight = self.model.encoder.phycell.cell_list[0].F.conv1.weight  # (49, input_dim, 7, 7)
        k = weight.shape[-1]
        target = torch.eye(k * k, device=weight.device).view(k * k, k, k)
        total = weight.new_zeros(())
        for b in range(weight.shape[1]):
            moments = self.model.k2m(weight[:, b].double()).float()
            total = total + F.mse_loss(moments, target)
        return total

    def rollout_losses(self, frames: Tensor, targets: Tensor) -> dict[str, Tensor]:
        """TAU's ``ddr`` (``ddr_loss``) of the rollout's frames (B, >= T_out, C, H, W) and the targets
        (B, T_out, C, H, W) in training; {} in eval mode and for the other methods (``alpha`` 0)."""
        return ddr_loss(frames, targets, self.alpha) if self.training else {}

    def extra_repr(self) -> str:
        return f"method={self.method}, family={self.family}"


# ----------------------------------------------------------------------------- registration


def _factory(method: str | None) -> Callable[..., OpenSTLBackbone]:
    def build(in_shape: Sequence[int], out_frames: int, **kwargs) -> OpenSTLBackbone:
        if method is not None and "method" in kwargs and canonical_method(kwargs["method"]) != method:
            raise ValueError(f"method: the backbone openstl:{method} was given method {kwargs['method']!r}")
        kwargs.setdefault("method", method)
        return OpenSTLBackbone(in_shape, out_frames, **kwargs)

    def size_multiple(in_shape: Sequence[int], **kwargs) -> int:
        return OpenSTLBackbone.size_multiple(in_shape, **{"method": method, **kwargs})

    build.size_multiple = size_multiple
    name = "openstl" if method is None else f"openstl:{method}"
    build.__name__ = build.__qualname__ = f"build_{name.replace(':', '_')}"
    build.__doc__ = (f"Backbone {name}: OpenSTL's {method or '<method from openstl_config>'} through the bridge; "
                     "keyword arguments are OpenSTL hyperparameters (see OpenSTLBackbone).")
    return build


BACKBONES.register("openstl")(_factory(None))
for _method in [*METHODS, *ALIASES]:
    BACKBONES.register(f"openstl:{_method}")(_factory(canonical_method(_method)))

__all__ = ["INSTALL_HINT", "METHODS", "OpenSTLBackbone", "OpenSTLNotFoundError", "canonical_method", "import_openstl",
           "load_openstl_config"]
