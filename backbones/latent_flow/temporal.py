"""The temporal model: a convolutional GRU over latent maps with four heads.

At step t it reads the latent z_t (B, L, h, w) and its change z_t - z_{t-1}, updates a hidden state
(B, hidden, h, w) and predicts, for the transition t -> t+1:

* ``flow``      (B, 2, h, w): backward flow t+1 -> t in latent pixels (see warp.py for the convention);
* ``occ``       (B, 1, h, w): sigmoid, 1 where the content of t+1 was visible in t (the warp is valid);
* ``residual``  (B, L, h, w): an additive correction of the composed latent;
* ``collision`` (B,): logit of the probability that a collision happens in the step.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class ConvGRUCell(nn.Module):
    """(B, c_in, h, w), hidden (B, hid, h, w) -> new hidden (B, hid, h, w)."""

    def __init__(self, c_in: int, hidden: int, kernel: int = 3):
        super().__init__()
        self.gates = nn.Conv2d(c_in + hidden, 2 * hidden, kernel, 1, kernel // 2)
        self.cand = nn.Conv2d(c_in + hidden, hidden, kernel, 1, kernel // 2)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        r, u = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, 1)
        c = torch.tanh(self.cand(torch.cat([x, r * h], 1)))
        return (1 - u) * h + u * c


def _head(c_in: int, hidden: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, hidden, 3, 1, 1), nn.SiLU(), nn.Conv2d(hidden, c_out, 3, 1, 1))


class TemporalModel(nn.Module):
    """ConvGRU stack (``layers`` cells) and the flow / occlusion / residual / collision heads."""

    def __init__(self, latent_channels: int, hidden: int = 64, layers: int = 2, max_flow: float = 4.0):
        super().__init__()
        self.hidden, self.max_flow = hidden, float(max_flow)
        self.cells = nn.ModuleList(
            [ConvGRUCell(2 * latent_channels if i == 0 else hidden, hidden) for i in range(layers)])
        head_in = hidden + latent_channels
        self.flow_head = _head(head_in, hidden, 2)
        self.occ_head = _head(head_in, hidden, 1)
        self.residual_head = _head(head_in, hidden, latent_channels)
        self.collision_head = nn.Sequential(nn.Conv2d(hidden, hidden, 3, 1, 1), nn.SiLU(),
                                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(hidden, 1))
        with torch.no_grad():  # start near "copy the latent": small flow, visible, no residual
            for head in (self.flow_head, self.residual_head):
                head[-1].weight.mul_(0.01)
                head[-1].bias.zero_()
            self.occ_head[-1].bias.fill_(2.0)

    def init_state(self, z: Tensor) -> list[Tensor]:
        """Zero hidden states for latents shaped like z (B, L, h, w)."""
        b, _, h, w = z.shape
        return [z.new_zeros(b, self.hidden, h, w) for _ in self.cells]

    def step(self, z_t: Tensor, z_prev: Tensor, state: list[Tensor]) -> tuple[dict, list[Tensor]]:
        """One transition: z_t, z_prev (B, L, h, w) -> heads dict and the new state."""
        inp = torch.cat([z_t, z_t - z_prev], 1)
        new_state = []
        for cell, h in zip(self.cells, state):
            h = cell(inp, h)
            new_state.append(h)
            inp = h
        top = torch.cat([new_state[-1], z_t], 1)
        heads = {
            "flow": self.max_flow * torch.tanh(self.flow_head(top) / self.max_flow),
            "occ": torch.sigmoid(self.occ_head(top)),
            "residual": self.residual_head(top),
            "collision": self.collision_head(new_state[-1]).squeeze(-1),
        }
        return heads, new_state
