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
    from pdr.backbones import Backbone, BackboneOutput

    registry_name = "test_repeat_last_frame"

    @BACKBONES.register(registry_name, force=True)
    class RepeatLast(Backbone):
        def __init__(self, in_shape, out_frames, gain: float = 1.0):
            super().__init__(in_shape, out_frames)
            self.gain = torch.nn.Parameter(torch.tensor(gain))

        def forward(self, x, return_features=False):
            return BackboneOutput(self.gain * x[:, -1:].expand(-1, self.in_shape[0], -1, -1, -1))

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


def test_preset_is_the_original_with_other_defaults_and_checked_arguments():
    from pdr.errors import ConfigError

    reg = Registry("thing")

    @reg.register("affine")
    def affine(value: float, extra: int = 0, scale: float = 1.0, mode: str = "add"):
        return value * scale + extra, mode

    reg.register_preset("double", affine, doc="affine with scale 2", defaults={"scale": 2.0}, fixed={"mode": "add"},
                        omit=("extra",))
    assert reg.build("double", value=3.0) == (6.0, "add")  # scale 2 reaches `scale`, not the omitted `extra`
    assert reg.build("double", value=3.0, scale=0.5, mode="ADD") == (1.5, "add")
    assert reg.build("affine", value=3.0) == (3.0, "add")  # the original keeps its defaults
    with pytest.raises(ValueError, match=r"mode: thing 'double' is thing 'affine' with mode 'add', got 'mul'"):
        reg.build("double", value=1.0, mode="mul")
    with pytest.raises(ConfigError) as info:
        reg.check_kwargs("double", {"extra": 1}, "x")
    assert str(info.value) == "x.extra: unknown argument of thing 'double'. Accepted: value, scale, mode"
    with pytest.raises(ConfigError, match=r"x\.scale: thing 'double' expected float \(default: 2\.0\)"):
        reg.check_kwargs("double", {"scale": "big"}, "x")
    with pytest.raises(RegistryError, match="has no argument offset"):
        reg.register_preset("bad", affine, doc="", defaults={"offset": 1})
