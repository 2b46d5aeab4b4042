"""The OpenSTL bridge (``backbone: openstl:<Method>``).

Without OpenSTL (CI): the names are registered and validate, building fails with a message that
says how to install OpenSTL, and the bridge runs a stand-in ``openstl`` package whose SimVP, ConvLSTM
and PredRNN have OpenSTL's constructors, calling conventions (layouts) and state-dict names
(tests/support/openstl_stand_in.py). With a real OpenSTL (``PDR_OPENSTL_ROOT=/path/to/OpenSTL`` or an
installed one) the last tests build OpenSTL's own models through the bridge, check that our SimVP
(gSTA, TAU, IncepU) and PredRNN compute exactly what OpenSTL's do with the same weights, that the
bridge calls OpenSTL's recurrent models as OpenSTL's own methods do, and that the stand-in has
OpenSTL's interfaces.
"""
import copy
import importlib
import importlib.util
import logging
import os
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

import pdr
from pdr.backbones.openstl_bridge import (
    OpenSTLBackbone,
    OpenSTLNotFoundError,
    canonical_method,
    load_openstl_config,
)
from pdr.config import config_from_dict
from pdr.errors import ConfigError, PDRError

PREDGS = {"name": "predgs", "num_gaussians": 16, "kernel_size": 5, "pool": 2, "hidden": 16}


def _drop_openstl_modules():
    for name in [m for m in sys.modules if m == "openstl" or m.startswith("openstl.")]:
        del sys.modules[name]


@pytest.fixture
def no_openstl(monkeypatch):
    """An environment where ``import openstl`` finds nothing."""
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "openstl" or name.startswith("openstl.") else real(name, *args, **kwargs)

    saved = {m: sys.modules[m] for m in list(sys.modules) if m == "openstl" or m.startswith("openstl.")}
    _drop_openstl_modules()
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    yield
    _drop_openstl_modules()
    sys.modules.update(saved)


def make_package(root, files: dict):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture
def package_dir(tmp_path, monkeypatch):
    """A folder put first on sys.path for a stand-in ``openstl`` package; restores the real one after."""
    saved = {m: sys.modules[m] for m in list(sys.modules) if m == "openstl" or m.startswith("openstl.")}
    _drop_openstl_modules()
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    yield tmp_path / "pkgs"
    _drop_openstl_modules()
    sys.modules.update(saved)
    importlib.invalidate_caches()


# ----------------------------------------------------------------------------- without OpenSTL


def test_known_methods_are_registered_with_the_prefix():
    for method in ("SimVP", "TAU", "ConvLSTM", "PredRNN", "PredRNNpp", "PredRNNv2", "MIM", "MAU", "E3DLSTM",
                   "PhyDNet", "SwinLSTM", "SwinLSTM_D", "SwinLSTM_B", "WaST"):
        assert f"openstl:{method}" in pdr.BACKBONES
    assert "openstl" in pdr.BACKBONES


def test_config_with_pasted_openstl_values_validates():
    cfg = config_from_dict({
        "model": {"backbone": {"name": "openstl:PredRNN", "num_hidden": "128,128,128,128", "filter_size": 5,
                               "stride": 1, "patch_size": 4, "layer_norm": 0, "lr": 5e-4, "sched": "onecycle"},
                  "adapter": "predgs"},
        "data": {"name": "advected_fields", "in_frames": 4, "out_frames": 4},
    })
    assert cfg["model"]["backbone"]["name"] == "openstl:PredRNN"
    with pytest.raises(ConfigError, match="Did you mean 'openstl:PredRNN'"):
        config_from_dict({"model": {"backbone": "openstl:predrnn"},
                          "data": {"name": "advected_fields", "in_frames": 4, "out_frames": 4}})


def test_missing_openstl_says_how_to_install_it(no_openstl):
    with pytest.raises(OpenSTLNotFoundError) as info:
        pdr.create_model({"name": "openstl:SimVP", "hid_S": 8}, (4, 2, 16, 16), 4, adapter=PREDGS)
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, PDRError)
    message = str(info.value)
    assert "not installed" in message and "from source" in message
    assert "github.com/chengtan9907/OpenSTL" in message and "pip install -e ." in message
    assert "unrelated" in message  # warns against the PyPI package of the same name


def test_the_unrelated_pypi_openstl_is_recognized(package_dir):
    make_package(package_dir, {"openstl/__init__.py": '"""An STL (stereolithography) file library."""\n'})
    with pytest.raises(OpenSTLNotFoundError, match="not OpenSTL .*unrelated PyPI package.*pip uninstall openstl"):
        pdr.create_model("openstl:PredRNN", (4, 1, 16, 16), 4)


def test_a_missing_dependency_of_openstl_is_named(package_dir):
    make_package(package_dir, {"openstl/__init__.py": "", "openstl/models/__init__.py": "import pdr_no_such_dep\n"})
    with pytest.raises(OpenSTLNotFoundError, match="'pdr_no_such_dep', which is missing: `pip install pdr_no_such_dep`"):
        pdr.create_model("openstl:SimVP", (4, 1, 16, 16), 4)


def test_openstl_root_must_be_a_checkout(tmp_path):
    with pytest.raises(OpenSTLNotFoundError, match="openstl_root: .* is not an OpenSTL checkout"):
        pdr.create_model({"name": "openstl:SimVP", "openstl_root": str(tmp_path)}, (4, 1, 16, 16), 4)


def test_method_names():
    assert canonical_method("predrnnpp") == "PredRNNpp"
    assert canonical_method("SwinLSTM") == "SwinLSTM_B"
    with pytest.raises(ValueError, match="method: unknown OpenSTL method 'Nope'"):
        canonical_method("Nope")
    with pytest.raises(ValueError, match="MMVP is not bridged"):
        canonical_method("MMVP")


OPENSTL_PREDRNN_CONFIG = """\
method = 'PredRNN'
# reverse scheduled sampling
reverse_scheduled_sampling = 0
r_sampling_step_1 = 25000
r_sampling_step_2 = 50000
r_exp_alpha = 5000
# scheduled sampling
scheduled_sampling = 1
sampling_stop_iter = 50000
sampling_start_value = 1.0
sampling_changing_rate = 0.00002
# model
num_hidden = '128,128,128,128'
filter_size = 5
stride = 1
patch_size = 4
layer_norm = 0
# training
lr = 5e-4
batch_size = 16
sched = 'onecycle'
"""


def test_openstl_config_files_are_read_without_running_them(tmp_path):
    path = tmp_path / "PredRNN.py"
    path.write_text(OPENSTL_PREDRNN_CONFIG)
    values = load_openstl_config(path)
    assert values["method"] == "PredRNN" and values["num_hidden"] == "128,128,128,128" and values["lr"] == 5e-4
    (tmp_path / "bad.py").write_text("import os\nx = os.getcwd()\n")
    with pytest.raises(ValueError, match="openstl_config: .*line 1"):
        load_openstl_config(tmp_path / "bad.py")
    (tmp_path / "call.py").write_text("x = len('ab')\n")
    with pytest.raises(ValueError, match="only literal values"):
        load_openstl_config(tmp_path / "call.py")
    with pytest.raises(ValueError, match="openstl_config: file not found"):
        load_openstl_config(tmp_path / "missing.py")


# ----------------------------------------------------------------------------- a stand-in OpenSTL

# tests/support/openstl_stand_in.py: OpenSTL's SimVP, ConvLSTM and PredRNN models with their published constructors,
# calling conventions and state-dict names (checked against OpenSTL's own below, with PDR_OPENSTL_ROOT).
SMALL_SIMVP = {"hid_S": 8, "hid_T": 16, "N_S": 2, "N_T": 2}


@pytest.fixture
def fake_openstl(package_dir):
    make_package(package_dir, {"openstl/__init__.py": "", "openstl/models/__init__.py":
                               "from openstl_stand_in import ConvLSTM_Model, PredRNN_Model, SimVP_Model\n"})
    return package_dir


def test_direct_model_through_the_bridge(fake_openstl):
    model = pdr.create_model({"name": "openstl:TAU", **SMALL_SIMVP, "alpha": 0.5}, (3, 2, 16, 16), 7, adapter=PREDGS)
    backbone = model.backbone
    assert isinstance(backbone, OpenSTLBackbone) and backbone.frames_per_call == 3
    assert "hid.enc.0.block.attn.spatial_gating_unit.fc.0.weight" in backbone.model.state_dict()  # TAU's translator
    x, y = torch.rand(2, 3, 2, 16, 16), torch.rand(2, 7, 2, 16, 16)
    model.eval()
    assert model(x).shape == y.shape  # rolled out: 3 + 3 + 1 frames
    model.train()
    out = model(x, targets=y, step=0, return_output=True)
    copy.deepcopy(model)  # the model keeps nothing of the training graph: a copy (EMA) works
    aux = out.aux_losses
    assert set(aux) == {"ddr"} and aux["ddr"] >= 0
    (F.mse_loss(out.frames, y) + aux["ddr"]).backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("reverse", [0, 1])
def test_recurrent_model_through_the_bridge(fake_openstl, reverse):
    spec = {"name": "openstl:PredRNN", "num_hidden": "8,8", "filter_size": 3, "patch_size": 2,
            "reverse_scheduled_sampling": reverse, "sampling_stop_iter": 100, "sampling_changing_rate": 0.01}
    model = pdr.create_model(spec, (4, 2, 16, 16), 3, adapter=PREDGS)
    backbone = model.backbone
    assert backbone.uses_targets and backbone.frames_per_call == 3
    x, y = torch.rand(2, 4, 2, 16, 16), torch.rand(2, 3, 2, 16, 16)
    model.eval()
    assert model(x).shape == y.shape
    inference_mask = backbone.model.masks_seen[-1]
    assert torch.all(inference_mask[:, : 3 if reverse else 0] == 1) and torch.all(inference_mask[:, 3 if reverse else 0:] == 0)
    model.train()
    pred = model(x, targets=y, step=0)
    train_mask = backbone.model.masks_seen[-1]
    if not reverse:
        assert torch.all(train_mask == 1)  # step 0: eta = sampling_start_value = 1
    F.mse_loss(pred, y).backward()
    assert all(p.grad is not None for p in model.parameters())
    model(x, targets=y, step=1000)
    if not reverse:
        assert torch.all(backbone.model.masks_seen[-1] == 0)  # past sampling_stop_iter


def test_recurrent_bridge_equals_a_direct_openstl_call(fake_openstl):
    """The bridge hands OpenSTL exactly what OpenSTL's PredRNN method would: inputs, zeros, patched."""
    model = pdr.create_model({"name": "openstl:ConvLSTM", "num_hidden": [8], "filter_size": 3, "patch_size": 4},
                             (2, 3, 16, 16), 2).eval()
    net = model.backbone.model
    x = torch.rand(1, 2, 3, 16, 16)
    ims = torch.cat([x, torch.zeros(1, 2, 3, 16, 16)], 1).permute(0, 1, 3, 4, 2)
    a = ims.reshape(1, 4, 4, 4, 4, 4, 3).transpose(3, 4).reshape(1, 4, 4, 4, 48)  # OpenSTL's reshape_patch
    out, _ = net(a, torch.zeros(1, 1, 4, 4, 48), return_loss=False)
    back = out.reshape(1, 3, 4, 4, 4, 4, 3).transpose(3, 4).reshape(1, 3, 16, 16, 3)  # reshape_patch_back
    with torch.no_grad():
        torch.testing.assert_close(model(x), back[:, -2:].permute(0, 1, 4, 2, 3))


def test_openstl_config_file_through_the_bridge(fake_openstl, tmp_path, caplog):
    path = tmp_path / "PredRNN.py"
    path.write_text(OPENSTL_PREDRNN_CONFIG)
    with caplog.at_level(logging.INFO, logger="pdr"):
        model = pdr.create_model({"name": "openstl", "openstl_config": str(path), "num_hidden": "8"}, (2, 1, 16, 16), 2)
    assert model.backbone.method == "PredRNN" and model.backbone.hparams["num_hidden"] == "8"
    assert model.backbone.hparams["filter_size"] == 5
    assert any("ignoring OpenSTL training settings batch_size, lr, sched" in r.message for r in caplog.records)
    with pytest.raises(ValueError, match="method: the backbone is OpenSTL's SimVP but openstl_config says 'PredRNN'"):
        pdr.create_model({"name": "openstl:SimVP", "openstl_config": str(path)}, (2, 1, 16, 16), 2)
    with pytest.raises(ValueError, match="method: name the OpenSTL method"):
        pdr.create_model("openstl", (2, 1, 16, 16), 2)


def test_data_keys_must_agree_with_the_data_section(fake_openstl):
    with pytest.raises(ValueError, match="pre_seq_length: set by pdr from the data section"):
        pdr.create_model({"name": "openstl:SimVP", **SMALL_SIMVP, "pre_seq_length": 10}, (4, 1, 16, 16), 4)
    pdr.create_model({"name": "openstl:SimVP", **SMALL_SIMVP, "pre_seq_length": 4, "aft_seq_length": 4}, (4, 1, 16, 16), 4)
    with pytest.raises(ValueError, match="patch_size must be a positive integer dividing"):
        pdr.create_model({"name": "openstl:PredRNN", "patch_size": 0}, (4, 1, 16, 16), 4)


def test_a_config_trains_through_the_bridge_and_predicts_new_clips(fake_openstl, tmp_path):
    """At 30x30, which the patch size 4 does not divide: the bridge declares it, the model pads to 32x32."""
    import json

    import numpy as np

    from pdr.cli.predict import main
    from pdr.engine import Trainer

    cfg = config_from_dict({
        "model": {"backbone": {"name": "openstl:PredRNN", "num_hidden": "8", "filter_size": 3, "patch_size": 4},
                  "adapter": {**PREDGS, "hidden": 8}},
        "data": {"name": "advected_fields", "in_frames": 4, "out_frames": 4, "num_train": 4, "num_val": 2,
                 "num_test": 2, "batch_size": 2, "size": 30},
        "train": {"max_steps": 2, "tensorboard": False, "device": "cpu"},
        "eval": {"metrics": ["mse"]},
    })
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    trainer.fit()
    assert trainer.global_step == 2 and trainer.model.backbone.in_shape == (4, 2, 32, 32)

    clip = np.random.default_rng(0).random((6, 2, 30, 30), dtype=np.float32)  # (T, C, H, W) in the data's units
    np.save(tmp_path / "clip.npy", clip)
    assert main([str(tmp_path / "run"), "--input", str(tmp_path / "clip.npy"), "--out", str(tmp_path / "out"),
                 "--format", "npy", "--frames", "6", "--no-progress"]) == 0
    written = np.load(tmp_path / "out" / "clip" / "pred.npy")
    expected = pdr.load_run(tmp_path / "run").predict(clip[:4], num_frames=6)
    np.testing.assert_allclose(written, expected, rtol=1e-5, atol=1e-6)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["clips"]["clip"]["compared_frames"] == 2


# ----------------------------------------------------------------------------- with a real OpenSTL


def _real_openstl_root():
    root = os.environ.get("PDR_OPENSTL_ROOT")
    if root:
        return root
    try:
        return "" if importlib.util.find_spec("openstl.models") is not None else None
    except (ImportError, ValueError):
        return None


REAL = _real_openstl_root()
needs_openstl = pytest.mark.skipif(REAL is None, reason="OpenSTL is not installed (set PDR_OPENSTL_ROOT to a checkout)")


@pytest.fixture
def openstl_models():
    if REAL and REAL not in sys.path:
        sys.path.insert(0, REAL)
    _drop_openstl_modules()
    return importlib.import_module("openstl.models")


def _root_kwargs():
    return {"openstl_root": REAL} if REAL else {}


@needs_openstl
@pytest.mark.parametrize("spec", [
    {"name": "openstl:SimVP", "hid_S": 8, "hid_T": 16, "N_S": 2, "N_T": 2, "model_type": "gSTA"},
    {"name": "openstl:TAU", "hid_S": 8, "hid_T": 16, "N_S": 2, "N_T": 2},
    {"name": "openstl:ConvLSTM", "num_hidden": "8,8", "filter_size": 3, "patch_size": 2},
    {"name": "openstl:PredRNN", "num_hidden": "8,8", "filter_size": 3, "patch_size": 2},
    {"name": "openstl:PredRNNv2", "num_hidden": "8,8", "filter_size": 3, "patch_size": 2},
])
def test_real_openstl_models_train_through_the_bridge(openstl_models, spec):
    model = pdr.create_model({**spec, **_root_kwargs()}, (4, 2, 16, 16), 6, adapter=PREDGS)
    x, y = torch.rand(2, 4, 2, 16, 16), torch.rand(2, 6, 2, 16, 16)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == y.shape
    model.train()
    out = model(x, targets=y, step=5, return_output=True)
    pred = out.frames
    loss = F.mse_loss(pred, y) + sum(out.aux_losses.values())
    loss.backward()
    assert pred.shape == y.shape and torch.isfinite(loss)


def _copy_by_position(src: torch.nn.Module, dst: torch.nn.Module) -> None:
    """Load src's state into dst entry by entry (same architecture, different names)."""
    a, b = src.state_dict(), dst.state_dict()
    assert len(a) == len(b)
    for (ka, va), (kb, vb) in zip(a.items(), b.items()):
        assert va.shape == vb.shape, (ka, kb)
    dst.load_state_dict(dict(zip(b, a.values())))


@needs_openstl
@pytest.mark.parametrize("model_type", ["gSTA", "tau", "IncepU"])
def test_our_simvp_computes_what_openstl_computes(openstl_models, model_type):
    in_shape = (4, 2, 16, 16)
    theirs = openstl_models.SimVP_Model(in_shape, hid_S=8, hid_T=16, N_S=2, N_T=3, model_type=model_type).eval()
    ours = pdr.create_model({"name": "simvp", "hid_S": 8, "hid_T": 16, "N_S": 2, "N_T": 3, "model_type": model_type},
                            in_shape, 4).backbone.eval()
    for mine, their in ((ours.encoder, theirs.enc), (ours.translator, theirs.hid), (ours.decoder, theirs.dec)):
        _copy_by_position(their, mine)
    x = torch.rand(2, *in_shape)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).frames, theirs(x))


@needs_openstl
def test_our_predrnn_computes_what_openstl_computes(openstl_models):
    from types import SimpleNamespace

    configs = SimpleNamespace(in_shape=(3, 1, 16, 16), patch_size=2, filter_size=3, stride=1, layer_norm=0,
                              pre_seq_length=3, aft_seq_length=2, total_length=5, reverse_scheduled_sampling=0)
    theirs = openstl_models.PredRNN_Model(2, [8, 8], configs).eval()
    ours = pdr.create_model({"name": "predrnn", "num_hidden": [8, 8], "filter_size": 3, "patch_size": 2},
                            (3, 1, 16, 16), 2).backbone.eval()
    _copy_by_position(theirs.cell_list, ours.cells)
    ours.readout.load_state_dict(theirs.conv_last.state_dict())
    bridged = pdr.create_model({"name": "openstl:PredRNN", "num_hidden": "8,8", "filter_size": 3, "patch_size": 2,
                                **_root_kwargs()}, (3, 1, 16, 16), 2).backbone.eval()
    bridged.model.load_state_dict(theirs.state_dict())
    x = torch.rand(2, 3, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).frames, bridged(x).frames)


@needs_openstl
def test_openstl_parameter_counts_are_the_hard_coded_ones(openstl_models):
    from types import SimpleNamespace

    from test_backbones import OPENSTL_COUNTS

    def count(m):
        return sum(p.numel() for p in m.parameters())

    for key, model_type in (("simvp_gsta", "gSTA"), ("simvp_incepu", "IncepU"), ("tau", "tau")):
        model = openstl_models.SimVP_Model((10, 1, 64, 64), hid_S=64, hid_T=512, N_S=4, N_T=8, model_type=model_type)
        assert count(model) == OPENSTL_COUNTS[key][1]
    configs = SimpleNamespace(in_shape=(10, 1, 64, 64), patch_size=4, filter_size=5, stride=1, layer_norm=0)
    assert count(openstl_models.ConvLSTM_Model(4, [128] * 4, configs)) == OPENSTL_COUNTS["convlstm"][1]
    assert count(openstl_models.PredRNN_Model(4, [128] * 4, configs)) == OPENSTL_COUNTS["predrnn"][1]



@needs_openstl
def test_the_stand_in_has_openstls_interfaces(openstl_models):
    """tests/support/openstl_stand_in.py against OpenSTL itself: the same constructor and forward signatures, the
    same state-dict names in the same order with the same shapes, and, with OpenSTL's weights, the same outputs."""
    import inspect
    from types import SimpleNamespace

    import openstl_stand_in as stand_in

    def same_interface(theirs, ours):
        for method in ("__init__", "forward"):
            assert inspect.signature(getattr(type(ours), method)) == inspect.signature(getattr(type(theirs), method))
        assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
               [(k, v.shape) for k, v in theirs.state_dict().items()]
        ours.load_state_dict(theirs.state_dict())

    x = torch.rand(2, 4, 2, 16, 16)
    for model_type in ("gSTA", "tau", "IncepU"):
        args = ((4, 2, 16, 16),)
        kwargs = {**SMALL_SIMVP, "N_T": 3, "model_type": model_type}
        theirs, ours = openstl_models.SimVP_Model(*args, **kwargs).eval(), stand_in.SimVP_Model(*args, **kwargs).eval()
        same_interface(theirs, ours)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), theirs(x))
    for name in ("ConvLSTM_Model", "PredRNN_Model"):
        for layer_norm, reverse in ((0, 0), (1, 1)):
            configs = SimpleNamespace(in_shape=(3, 2, 16, 16), patch_size=2, filter_size=3, stride=1,
                                      layer_norm=layer_norm, pre_seq_length=3, aft_seq_length=2, total_length=5,
                                      reverse_scheduled_sampling=reverse)
            theirs, ours = (getattr(module, name)(2, [8, 8], configs) for module in (openstl_models, stand_in))
            same_interface(theirs, ours)
            frames = torch.rand(2, 5, 8, 8, 8)
            mask = (torch.rand(2, 3 if reverse else 1, 1, 1, 1) > 0.5).float().expand(-1, -1, 8, 8, 8)
            with torch.no_grad():
                for mine, their in zip(ours(frames, mask), theirs(frames, mask)):
                    torch.testing.assert_close(mine, their)
