import pytest
import torch

import pdr
from pdr.errors import RegistryError
from pdr.registry import BACKBONES, Registry


def test_builtin_names_are_registered():
    assert "simvp" in BACKBONES.names()
    assert "predgs" in pdr.ADAPTERS.names()
    assert {"bouncing_sprites", "advected_fields"} <= set(pdr.DATASETS.names())
    assert {"mse", "l1", "l1_ssim"} <= set(pdr.LOSSES.names())


def test_unknown_name_lists_available_and_closest():
    with pytest.raises(RegistryError) as info:
        BACKBONES.get("simpv")
    message = str(info.value)
    assert "unknown backbone 'simpv'" in message
    assert "Did you mean 'simvp'?" in message
    assert "Available:" in message and "simvp" in message


def test_third_party_backbone_registers_without_editing_the_project():
    from pdr.backbones import Backbone

    registry_name = "test_repeat_last_frame"

    @BACKBONES.register(registry_name, force=True)
    class RepeatLast(Backbone):
        def __init__(self, in_shape, out_frames, gain: float = 1.0):
            super().__init__(in_shape, out_frames)
            self.gain = torch.nn.Parameter(torch.tensor(gain))

        def forward(self, x, return_features=False):
            return self.gain * x[:, -1:].expand(-1, self.in_shape[0], -1, -1, -1)

    model = pdr.create_model({"name": registry_name, "gain": 2.0}, (3, 1, 8, 8), 5, adapter="predgs")
    x = torch.rand(2, 3, 1, 8, 8)
    assert model(x).shape == (2, 5, 1, 8, 8)


def test_duplicate_registration_is_refused():
    reg = Registry("thing")

    @reg.register("a")
    def first():
        return 1

    with pytest.raises(RegistryError, match="already registered"):
        @reg.register("a")
        def second():
            return 2

    assert reg.build("a") == 1
