"""A backbone for engine tests: no BatchNorm (whose statistics differ per process by design); dropout on its input
only when asked (``dropout``: training then draws random numbers, which a resumed run must draw alike)."""
import torch.nn.functional as F
from torch import nn

from pdr.backbones import Backbone, BackboneOutput
from pdr.registry import BACKBONES


@BACKBONES.register("test_convnet", force=True)
class TestConvNet(Backbone):
    def __init__(self, in_shape, out_frames, width: int = 8, dropout: float = 0.0):
        super().__init__(in_shape, out_frames)
        t, c, h, w = self.in_shape
        self.dropout = dropout
        self.net = nn.Sequential(nn.Conv2d(t * c, width, 3, padding=1), nn.GELU(), nn.Conv2d(width, t * c, 3, padding=1))

    def forward(self, x, return_features=False):
        b, t, c, h, w = x.shape
        flat = F.dropout(x.reshape(b, t * c, h, w), self.dropout, self.training)
        return BackboneOutput(x + self.net(flat).reshape(b, t, c, h, w))
