"""A stand-in for ``openstl.models`` (SimVP_Model, ConvLSTM_Model, PredRNN_Model) with OpenSTL's published
interfaces, so that the bridge's tests see what a real OpenSTL would do with what the bridge hands it:

- the constructors' arguments and defaults: ``SimVP_Model(in_shape, hid_S, hid_T, N_S, N_T, model_type, ...)``
  and ``<Recurrent>_Model(num_layers, num_hidden, configs)`` reading ``configs.in_shape``, ``patch_size``,
  ``filter_size``, ``stride``, ``layer_norm``, ``pre_seq_length``, ``aft_seq_length``,
  ``reverse_scheduled_sampling``;
- the calls: SimVP on (B, T, C, H, W) -> (B, T, C, H, W), viewed as (B*T, C, H, W) (so the input must be
  contiguous); the recurrent models on patched channels-last frames (B, T_in + T_out, H/p, W/p, p*p*C) with a
  sampling mask of the same layout, returning (B, T_in + T_out - 1, H/p, W/p, p*p*C) and a loss;
- the state-dict names and shapes of their checkpoints (``simvp_names``; ``cell_list.<i>.conv_x.0.weight``, ...).

The recurrent models compute ConvLSTM and PredRNN as published (OpenSTL's ConvLSTM cell has no peephole and no
forget-gate bias; its ``conv_o`` and ``conv_last`` are created and never used). SimVP computes with PDR's own
SimVP, which tests/test_openstl_bridge.py checks against OpenSTL's (with ``PDR_OPENSTL_ROOT``), as it checks
these models' names, shapes and outputs against OpenSTL's own.
"""
import torch
import torch.nn.functional as F
from torch import nn

from pdr.backbones.simvp import SimVP

_WB = ("weight", "bias")
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def simvp_names(n_s: int, n_t: int, model_type: str) -> dict[str, list[str]]:
    """OpenSTL's SimVP_Model state-dict names, written out from its module definitions
    (openstl/models/simvp_model.py, openstl/modules/simvp_modules.py) for the parts that PDR calls
    ``encoder``, ``translator`` and ``decoder``, each in the order its state dict lists them."""
    samplings = ([False, True] * (n_s // 2))[:n_s]  # OpenSTL's sampling_generator
    enc = [f"enc.enc.{i}.conv.{part}.{p}" for i in range(n_s) for part in ("conv", "norm") for p in _WB]
    dec = []
    for i, up in enumerate(reversed(samplings)):
        dec += [f"dec.dec.{i}.conv.conv{'.0' if up else ''}.{p}" for p in _WB]  # up: Sequential(conv, PixelShuffle)
        dec += [f"dec.dec.{i}.conv.norm.{p}" for p in _WB]
    dec += [f"dec.readout.{p}" for p in _WB]
    hid = []
    if model_type == "incepu":
        for part in ("enc", "dec"):
            for i in range(n_t):
                hid += [f"hid.{part}.{i}.conv1.{p}" for p in _WB]
                hid += [f"hid.{part}.{i}.layers.{k}.{m}.{p}" for k in range(4) for m in ("conv", "norm") for p in _WB]
        return {"encoder": enc, "translator": hid, "decoder": dec}
    for i in range(n_t):
        b = f"hid.enc.{i}.block"
        hid += [f"{b}.layer_scale_1", f"{b}.layer_scale_2", *(f"{b}.norm1.{p}" for p in _BN)]
        hid += [f"{b}.attn.proj_1.{p}" for p in _WB]
        hid += [f"{b}.attn.spatial_gating_unit.{g}.{p}" for g in ("conv0", "conv_spatial", "conv1") for p in _WB]
        if model_type == "tau":  # the squeeze-and-excitation of TAU's temporal attention
            hid += [f"{b}.attn.spatial_gating_unit.fc.0.weight", f"{b}.attn.spatial_gating_unit.fc.2.weight"]
        hid += [f"{b}.attn.proj_2.{p}" for p in _WB]
        hid += [f"{b}.norm2.{p}" for p in _BN]
        hid += [f"{b}.mlp.{m}.{p}" for m in ("fc1", "dwconv.dwconv", "fc2") for p in _WB]
        if i in (0, n_t - 1):  # the first and last blocks change the width: a 1x1 `reduction`
            hid += [f"hid.enc.{i}.reduction.{p}" for p in _WB]
    return {"encoder": enc, "translator": hid, "decoder": dec}


def _attach(module: nn.Module, name: str, tensor: torch.Tensor) -> None:
    """Register ``tensor`` (a Parameter or a buffer) at the dotted ``name`` under ``module``."""
    *path, leaf = name.split(".")
    for part in path:
        if part not in module._modules:
            module.add_module(part, nn.Module())
        module = module._modules[part]
    if isinstance(tensor, nn.Parameter):
        module.register_parameter(leaf, tensor)
    else:
        module.register_buffer(leaf, tensor)


class SimVP_Model(nn.Module):
    """OpenSTL's SimVP (gSTA, TAU, IncepU): (B, T, C, H, W) -> (B, T, C, H, W), weights under ``simvp_names``."""

    def __init__(self, in_shape, hid_S=16, hid_T=256, N_S=4, N_T=4, model_type='gSTA', mlp_ratio=8., drop=0.0,
                 drop_path=0.0, spatio_kernel_enc=3, spatio_kernel_dec=3, act_inplace=True, **kwargs):
        super().__init__()
        kind = "gsta" if model_type is None else model_type.lower()
        net = SimVP(in_shape, in_shape[0], hid_S, hid_T, N_S, N_T, kind, mlp_ratio, drop, drop_path,
                    spatio_kernel_enc, spatio_kernel_dec)
        self.__dict__["_net"] = net  # computes; not a submodule, so that the state dict has OpenSTL's names only
        names = simvp_names(N_S, N_T, kind)
        for part in ("encoder", "decoder", "translator"):  # OpenSTL builds enc, dec, then hid
            tensors = list(getattr(net, part).state_dict(keep_vars=True).values())
            assert len(tensors) == len(names[part]), part
            for name, tensor in zip(names[part], tensors):
                _attach(self, name, tensor)

    def train(self, mode=True):
        self._net.train(mode)
        return super().train(mode)

    def forward(self, x_raw, **kwargs):
        B, T, C, H, W = x_raw.shape
        frames = x_raw.view(B * T, C, H, W)  # as OpenSTL does: a view, which needs contiguous input
        return self._net(frames.view(B, T, C, H, W)).frames


def _gate(c_in, c_out, kernel, stride, layer_norm, hw):
    """A bias-free gate convolution in a Sequential (``conv_x.0``), with its LayerNorm (``conv_x.1``)."""
    layers = [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False)]
    return nn.Sequential(*layers, *([nn.LayerNorm([c_out, *hw])] if layer_norm else []))


class _ConvLSTMCell(nn.Module):
    """(X, H, C, M) -> (H', C', M): i, f, g, o from W_x * X + W_h * H; M passes through."""

    def __init__(self, c_in, hidden, hw, kernel, stride, layer_norm):
        super().__init__()
        self.conv_x = _gate(c_in, 4 * hidden, kernel, stride, layer_norm, hw)
        self.conv_h = _gate(hidden, 4 * hidden, kernel, stride, layer_norm, hw)
        self.conv_o = _gate(2 * hidden, hidden, kernel, stride, layer_norm, hw)  # never used, as in OpenSTL
        self.conv_last = nn.Conv2d(2 * hidden, hidden, 1, bias=False)  # never used, as in OpenSTL

    def forward(self, x, h, c, m):
        i, f, g, o = (self.conv_x(x) + self.conv_h(h)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c, m


class _SpatioTemporalLSTMCell(nn.Module):
    """PredRNN's ST-LSTM (Wang et al., 2017): (X, H, C, M) -> (H', C', M'), forget gates biased by 1."""

    def __init__(self, c_in, hidden, hw, kernel, stride, layer_norm):
        super().__init__()
        self.conv_x = _gate(c_in, 7 * hidden, kernel, stride, layer_norm, hw)
        self.conv_h = _gate(hidden, 4 * hidden, kernel, stride, layer_norm, hw)
        self.conv_m = _gate(hidden, 3 * hidden, kernel, stride, layer_norm, hw)
        self.conv_o = _gate(2 * hidden, hidden, kernel, stride, layer_norm, hw)
        self.conv_last = nn.Conv2d(2 * hidden, hidden, 1, bias=False)

    def forward(self, x, h, c, m):
        xi, xf, xg, xi2, xf2, xg2, xo = self.conv_x(x).chunk(7, dim=1)
        hi, hf, hg, ho = self.conv_h(h).chunk(4, dim=1)
        mi, mf, mg = self.conv_m(m).chunk(3, dim=1)
        c = torch.sigmoid(xf + hf + 1.0) * c + torch.sigmoid(xi + hi) * torch.tanh(xg + hg)
        m = torch.sigmoid(xf2 + mf + 1.0) * m + torch.sigmoid(xi2 + mi) * torch.tanh(xg2 + mg)
        both = torch.cat([c, m], dim=1)
        o = torch.sigmoid(xo + ho + self.conv_o(both))
        return o * torch.tanh(self.conv_last(both)), c, m


class _PatchedRecurrentModel(nn.Module):
    """OpenSTL's recurrent models: stacked cells on patched channels-last frames, a 1x1 readout ``conv_last``.

    forward(frames_tensor (B, T_in + T_out, h, w, p*p*C), mask_true (B, T_out - 1 or, with reverse scheduled
    sampling, T_in + T_out - 2, h, w, p*p*C)) -> (B, T_in + T_out - 1, h, w, p*p*C) and the MSE to the frames
    after the first (None with ``return_loss=False``). ``masks_seen`` keeps every mask's values (B, steps).
    """

    cell = _ConvLSTMCell

    def __init__(self, num_layers, num_hidden, configs, **kwargs):
        super().__init__()
        T, C, H, W = configs.in_shape
        self.configs = configs
        self.frame_channel = configs.patch_size * configs.patch_size * C
        self.num_layers, self.num_hidden = num_layers, num_hidden
        self.hw = (H // configs.patch_size, W // configs.patch_size)
        widths = [self.frame_channel, *num_hidden]
        self.cell_list = nn.ModuleList([
            self.cell(widths[i], widths[i + 1], self.hw, configs.filter_size, configs.stride, configs.layer_norm)
            for i in range(num_layers)])
        self.conv_last = nn.Conv2d(num_hidden[-1], self.frame_channel, 1, bias=False)
        self.masks_seen = []

    def forward(self, frames_tensor, mask_true, **kwargs):
        c = self.configs
        B, T, h, w, ch = frames_tensor.shape
        assert (T, (h, w), ch) == (c.pre_seq_length + c.aft_seq_length, self.hw, self.frame_channel), frames_tensor.shape
        reverse = c.reverse_scheduled_sampling == 1
        assert mask_true.shape == (B, T - 2 if reverse else c.aft_seq_length - 1, h, w, ch), mask_true.shape
        self.masks_seen.append(mask_true[:, :, 0, 0, 0].clone())
        frames, mask = frames_tensor.permute(0, 1, 4, 2, 3), mask_true.permute(0, 1, 4, 2, 3)
        hs = [frames.new_zeros(B, n, h, w) for n in self.num_hidden]
        cs = list(hs)
        memory = frames.new_zeros(B, self.num_hidden[0], h, w)
        outputs = []
        for t in range(T - 1):
            first = 1 if reverse else c.pre_seq_length  # the first step that may read its own prediction
            if t < first:
                net = frames[:, t]
            else:
                m = mask[:, t - first]
                net = m * frames[:, t] + (1 - m) * outputs[-1]
            for i, cell in enumerate(self.cell_list):
                hs[i], cs[i], memory = cell(net if i == 0 else hs[i - 1], hs[i], cs[i], memory)
            outputs.append(self.conv_last(hs[-1]))
        next_frames = torch.stack(outputs, dim=1).permute(0, 1, 3, 4, 2).contiguous()
        loss = F.mse_loss(next_frames, frames_tensor[:, 1:]) if kwargs.get("return_loss", True) else None
        return next_frames, loss


class ConvLSTM_Model(_PatchedRecurrentModel):
    cell = _ConvLSTMCell


class PredRNN_Model(_PatchedRecurrentModel):
    cell = _SpatioTemporalLSTMCell
