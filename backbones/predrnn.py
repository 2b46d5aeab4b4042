"""PredRNN (Wang et al., 2017) on patched frames, with OpenSTL's hyperparameter names.

A stack of spatio-temporal LSTM (ST-LSTM) cells. Besides the per-layer hidden state H and cell
state C that flow along time, a spatio-temporal memory M flows *through the layers* in a zigzag:
from layer l-1 to layer l within a time step, and from the top layer at time t to layer 0 at
time t+1. A 1x1 conv of the top hidden state predicts the next patched frame. See
``recurrent.py`` for patching, the loop over time and (reverse) scheduled sampling.

The ST-LSTM cell, for input X, H and C of this layer at t-1 and M from the layer below (or the
top layer at t-1), with ``*`` a K x K convolution::

    i, f, g, i', f', g', o_x = split(W_x * X)      (7 x num_hidden channels)
    i_h, f_h, g_h, o_h        = split(W_h * H)      (4 x num_hidden)
    i_m, f_m, g_m             = split(W_m * M)      (3 x num_hidden)
    C' = sigmoid(f + f_h + 1) . C + sigmoid(i + i_h) . tanh(g + g_h)
    M' = sigmoid(f' + f_m + 1) . M + sigmoid(i' + i_m) . tanh(g' + g_m)
    o  = sigmoid(o_x + o_h + W_o * [C', M'])
    H' = o . tanh(W_1x1 [C', M'])
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from pdr.registry import BACKBONES

from .recurrent import RecurrentBackbone, gate_conv


class SpatioTemporalLSTMCell(nn.Module):
    """(X (B, c_in, h, w), H, C, M (B, F, h, w)) -> (H', C', M')."""

    def __init__(self, c_in: int, hidden: int, hw: tuple[int, int], kernel_size: int, layer_norm: bool):
        super().__init__()
        self.hidden = hidden
        self.conv_x = gate_conv(c_in, 7 * hidden, kernel_size, layer_norm, hw)
        self.conv_h = gate_conv(hidden, 4 * hidden, kernel_size, layer_norm, hw)
        self.conv_m = gate_conv(hidden, 3 * hidden, kernel_size, layer_norm, hw)
        self.conv_o = gate_conv(2 * hidden, hidden, kernel_size, layer_norm, hw)
        self.fuse = nn.Conv2d(2 * hidden, hidden, 1, bias=False)

    def forward(self, x: Tensor, h: Tensor, c: Tensor, m: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        i, f, g, i2, f2, g2, o = torch.split(self.conv_x(x), self.hidden, dim=1)
        i_h, f_h, g_h, o_h = torch.split(self.conv_h(h), self.hidden, dim=1)
        i_m, f_m, g_m = torch.split(self.conv_m(m), self.hidden, dim=1)
        c_new = torch.sigmoid(f + f_h + 1.0) * c + torch.sigmoid(i + i_h) * torch.tanh(g + g_h)
        m_new = torch.sigmoid(f2 + f_m + 1.0) * m + torch.sigmoid(i2 + i_m) * torch.tanh(g2 + g_m)
        both = torch.cat([c_new, m_new], dim=1)
        o = torch.sigmoid(o + o_h + self.conv_o(both))
        return o * torch.tanh(self.fuse(both)), c_new, m_new


@BACKBONES.register("predrnn")
class PredRNN(RecurrentBackbone):
    """PredRNN: (B, T_in, C, H, W) -> (B, T_out, C, H, W) in one call.

    Arguments: those of ``RecurrentBackbone`` (num_hidden, filter_size, stride, patch_size,
    layer_norm and OpenSTL's scheduled sampling settings). The widths in ``num_hidden`` must all be
    equal: the zigzag memory passes between layers.
    """

    cell_type = SpatioTemporalLSTMCell

    def build_cells(self) -> nn.ModuleList:
        if len(set(self.num_hidden)) != 1:
            raise ValueError(f"num_hidden: PredRNN's zigzag memory passes between layers, so all widths must be equal, "
                             f"got {self.num_hidden}")
        return super().build_cells()

    def init_state(self, batch: int, ref: Tensor):
        zeros = [ref.new_zeros(batch, n, *self.patch_hw) for n in self.num_hidden]
        return list(zeros), list(zeros), ref.new_zeros(batch, self.num_hidden[0], *self.patch_hw)

    def cell_step(self, frame: Tensor, state):
        hs, cs, memory = state
        inp = frame
        new_h, new_c = [], []
        for cell, h, c in zip(self.cells, hs, cs):
            h, c, memory = cell(inp, h, c, memory)  # the memory climbs the stack, then returns to layer 0
            new_h.append(h)
            new_c.append(c)
            inp = h
        return inp, (new_h, new_c, memory)
