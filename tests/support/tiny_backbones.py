"""A backbone for engine tests: no BatchNorm (whose statistics differ per process by design) and no dropout."""
from torch import nn

from pdr.backbones import Backbone, BackboneOutput
from pdr.registry import BACKBONES


@BACKBONES.register("test_convnet", force=True)
class TestConvNet(Backbone):
    def __init__(self, in_shape, out_frames, width: int = 8):
        super().__init__(in_shape, out_frames)
        t, c, h, w = self.in_shape
        self.net = nn.Sequential(nn.Conv2d(t * c, width, 3, padding=1), nn.GELU(), nn.Conv2d(width, t * c, 3, padding=1))

    def forward(self, x, return_features=False):
        b, t, c, h, w = x.shape
        return BackboneOutput(x + self.net(x.reshape(b, t * c, h, w)).reshape(b, t, c, h, w))
