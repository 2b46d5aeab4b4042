"""model.init_from / freeze_backbone: start a PredGS run from a trained backbone (a PDR run or an OpenSTL
checkpoint), strict key checks, and training only the adapter."""
import logging

import pytest
import torch

import pdr
from pdr.config import load_config
from pdr.engine import Trainer
from pdr.engine.checkpoint import load_checkpoint
from pdr.errors import CheckpointError, ConfigError
from pdr.model import build_model
from pdr.model.pretrained import load_backbone_weights
from test_openstl_bridge import _root_kwargs, fake_openstl, needs_openstl, openstl_models, package_dir  # noqa: F401

ADAPTER = ["model.adapter.num_gaussians=16", "model.adapter.hidden=8"]


def config(repo, name, overrides, *extra):
    return load_config(repo / "configs" / "advected_fields" / f"{name}.yaml", [*overrides, *extra])


@pytest.fixture(scope="module")
def backbone_run(tmp_path_factory):
    """A SimVP trained alone for 4 steps (its run folder, and that backbone rebuilt from best.pt)."""
    from conftest import REPO

    tiny = ["model.backbone.hid_S=8", "model.backbone.hid_T=16", "model.backbone.N_T=2", "data.num_train=8",
            "data.num_val=4", "data.num_test=4", "data.batch_size=4", "train.max_steps=4", "train.log_every=1"]
    work = tmp_path_factory.mktemp("init") / "simvp"
    Trainer(config(REPO, "simvp", tiny), work, show_progress=False).fit()
    state = load_checkpoint(work / "checkpoints" / "best.pt")
    trained = build_model(config(REPO, "simvp", tiny))
    trained.load_state_dict(state["model"])
    return work, trained.backbone.eval(), tiny


def frames(seed=0):
    return torch.rand(3, 4, 2, 32, 32, generator=torch.Generator().manual_seed(seed))


def coarse_output(model: pdr.PDRModel, x: torch.Tensor) -> torch.Tensor:
    """What the wrapped model's backbone hands the adapter in a forward pass of the whole model."""
    seen = []
    handle = model.backbone.register_forward_hook(lambda module, args, out: seen.append(out.frames))
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        handle.remove()
    return seen[0]


def test_a_predgs_run_starts_from_the_trained_backbone(tmp_path, repo, backbone_run, caplog):
    work, trained, tiny = backbone_run
    with caplog.at_level(logging.INFO, logger="pdr"):
        started = Trainer(config(repo, "simvp_predgs", tiny, *ADAPTER, f"model.init_from={work}"), tmp_path / "a",
                          show_progress=False)
    fresh = Trainer(config(repo, "simvp_predgs", tiny, *ADAPTER), tmp_path / "b", show_progress=False)
    assert "loaded all" in caplog.text and "best.pt" in caplog.text
    x = frames()
    with torch.no_grad():
        expected = trained(x).frames
    torch.testing.assert_close(coarse_output(started.model, x), expected, rtol=0, atol=0)
    assert not torch.allclose(coarse_output(fresh.model, x), expected)  # random weights would not pass
    # the adapter keeps its own initialisation: the one a run without init_from gets from the same seed
    for (name, a), b in zip(started.model.adapter.state_dict().items(), fresh.model.adapter.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_train_cli_init_from_flag(tmp_path, repo, backbone_run):
    from pdr.cli.train import main

    work, trained, tiny = backbone_run
    out = tmp_path / "cli"
    assert main(["--config", str(repo / "configs/advected_fields/simvp_predgs.yaml"), "--set", *tiny, *ADAPTER,
                 "train.max_steps=1", "--work-dir", str(out), "--init-from", str(work), "--no-progress"]) == 0
    saved = load_config(out / "config.yaml")
    assert saved["model"]["init_from"] == str(work)
    assert "model.init_from: loaded all" in (out / "log.txt").read_text()


def test_freeze_backbone_trains_only_the_adapter(tmp_path, repo, backbone_run, caplog):
    work, trained, tiny = backbone_run
    cfg = config(repo, "simvp_predgs", tiny, *ADAPTER, f"model.init_from={work}", "model.freeze_backbone=true",
                 "train.max_steps=2")
    with caplog.at_level(logging.INFO, logger="pdr"):
        trainer = Trainer(cfg, tmp_path / "frozen", show_progress=False)
    adapter_params = sum(p.numel() for p in trainer.model.adapter.parameters())
    assert trainer.trainable_parameters == adapter_params
    assert f"backbone frozen: {adapter_params:,} trainable parameters" in caplog.text
    adapter_before = {k: v.clone() for k, v in trainer.model.adapter.state_dict().items()}
    trainer.fit()
    for (name, a), b in zip(trainer.model.backbone.state_dict().items(), trained.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)  # BatchNorm statistics included
    changed = [k for k, v in trainer.model.adapter.state_dict().items() if not torch.equal(v, adapter_before[k])]
    assert changed


def test_freeze_backbone_needs_an_adapter(repo):
    with pytest.raises(ConfigError, match="model.freeze_backbone: true trains only the adapter, but model.adapter is null"):
        load_config(repo / "configs/advected_fields/simvp.yaml", ["model.freeze_backbone=true"])


# ----------------------------------------------------------------------------- strict checks


def test_strict_counts_what_does_not_fit_and_names_the_first(tmp_path, repo, backbone_run):
    work, trained, tiny = backbone_run
    wider = pdr.create_model({"name": "simvp", "hid_S": 16, "hid_T": 16, "N_S": 2, "N_T": 2}, (4, 2, 32, 32), 4)
    with pytest.raises(CheckpointError) as err:
        load_backbone_weights(wider, work)
    message = str(err.value)
    assert "does not fit backbone SimVP" in message and "model.init_strict: false" in message
    report = load_backbone_weights(wider, work, strict=False)  # the full lists
    shapes = report.mismatched
    assert len(shapes) > 3 and shapes[0] == "encoder.layers.0.conv.weight: checkpoint (8, 2, 3, 3) vs model (16, 2, 3, 3)"
    assert "decoder.readout.weight: checkpoint (2, 8, 1, 1) vs model (2, 16, 1, 1)" in shapes
    assert f"{len(shapes)} with another shape: {', '.join(shapes[:3])}, ... ({len(shapes) - 3} more)" in message

    other = pdr.create_model({"name": "predrnn", "num_hidden": [8, 8], "filter_size": 3, "patch_size": 2},
                             (4, 2, 32, 32), 4)
    with pytest.raises(CheckpointError) as err:
        load_backbone_weights(other, work)
    message = str(err.value)
    assert "missing from the checkpoint: readout.weight, cells.0.conv_x.weight" in message
    assert "unexpected (not in the model): encoder.layers.0.conv.weight" in message


def test_non_strict_loads_what_fits_and_logs_the_rest(tmp_path, repo, backbone_run, caplog):
    work, trained, tiny = backbone_run
    # N_T=3 adds a translator block; every other tensor has the trained shape
    deeper = pdr.create_model({"name": "simvp", "hid_S": 8, "hid_T": 16, "N_S": 2, "N_T": 3}, (4, 2, 32, 32), 4)
    init = {k: v.clone() for k, v in deeper.backbone.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="pdr"):
        report = load_backbone_weights(deeper, work, strict=False)
    source = trained.state_dict()
    target = deeper.backbone.state_dict()
    assert "translator.blocks.2.block.scale1" in report.missing
    assert "not loaded" in caplog.text and "translator.blocks.2.block.scale1" in caplog.text
    torch.testing.assert_close(target["encoder.layers.0.conv.weight"], source["encoder.layers.0.conv.weight"])
    torch.testing.assert_close(target["decoder.readout.weight"], source["decoder.readout.weight"])
    torch.testing.assert_close(target["translator.blocks.2.block.scale1"], init["translator.blocks.2.block.scale1"])
    fits = [k for k in target if k in source and source[k].shape == target[k].shape]
    assert report.loaded == len(fits) and all(torch.equal(target[k], source[k]) for k in fits)


def test_unreadable_sources_are_clear_errors(tmp_path):
    model = pdr.create_model({"name": "simvp", "hid_S": 8, "hid_T": 16, "N_S": 2, "N_T": 2}, (4, 2, 32, 32), 4)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_backbone_weights(model, tmp_path / "nope.pth")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(CheckpointError, match="without checkpoints/best.pt or checkpoints/last.pt"):
        load_backbone_weights(model, tmp_path / "empty_run")
    torch.save({"weights": [1, 2]}, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match="neither a PDR checkpoint .* nor an OpenSTL checkpoint"):
        load_backbone_weights(model, tmp_path / "odd.pth")


# ----------------------------------------------------------------------------- OpenSTL checkpoints
# OpenSTL's networks: tests/support/openstl_stand_in.py (OpenSTL's names, shapes and calls; checked against
# OpenSTL's own in tests/test_openstl_bridge.py), built through the bridge (backbone openstl:<Method>).
PREDGS_ON_OUTPUT = {"name": "predgs", "num_gaussians": 16, "hidden": 8, "source": "output"}


def _trained_like(model: pdr.PDRModel, seed: int = 1) -> None:
    """Perturb every float tensor so that loaded weights cannot be mistaken for an initialisation."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for v in model.state_dict().values():
            if v.is_floating_point():
                v.add_(0.1 * torch.randn(v.shape, generator=g))


def _openstl_checkpoints(tmp_path, spec: dict, in_shape, out_frames: int):
    """A trained-like OpenSTL network (backbone ``spec``, openstl:<Method>) saved as OpenSTL saves one: a Lightning
    ``best.ckpt`` (its names under ``model.``) and a plain ``checkpoint.pth``. Returns the bridge (eval) and paths."""
    source = pdr.create_model(spec, in_shape, out_frames).eval()
    _trained_like(source)
    network = source.backbone.model.state_dict()
    torch.save({"state_dict": {f"model.{k}": v for k, v in network.items()}, "epoch": 3, "global_step": 120,
                "pytorch-lightning_version": "2.1.0"}, tmp_path / "best.ckpt")
    torch.save(network, tmp_path / "checkpoint.pth")
    return source.backbone, [tmp_path / "best.ckpt", tmp_path / "checkpoint.pth"]


@pytest.mark.parametrize("method, model_type", [("SimVP", "gSTA"), ("TAU", "tau"), ("SimVP", "IncepU")])
def test_openstl_simvp_checkpoint_loads_into_our_simvp(tmp_path, fake_openstl, method, model_type):
    """Renamed (pdr.model.pretrained.OPENSTL_RENAMES), OpenSTL's SimVP/TAU weights make our SimVP compute what
    OpenSTL's network computes, bit for bit."""
    small = {"hid_S": 8, "hid_T": 16, "N_S": 2, "N_T": 2, "model_type": model_type}
    theirs, paths = _openstl_checkpoints(tmp_path, {"name": f"openstl:{method}", **small}, (4, 2, 32, 32), 4)
    x = frames(1)
    with torch.no_grad():
        expected = theirs(x).frames
    for path in paths:
        target = pdr.create_model({"name": "simvp", **small}, (4, 2, 32, 32), 4, adapter=PREDGS_ON_OUTPUT)
        report = load_backbone_weights(target, path)
        assert report.complete and report.loaded == len(theirs.model.state_dict())
        torch.testing.assert_close(coarse_output(target, x), expected, rtol=0, atol=0)


def test_openstl_predrnn_checkpoint_loads_into_our_predrnn(tmp_path, fake_openstl):
    """Our PredRNN with OpenSTL's PredRNN weights predicts what OpenSTL's network does through the bridge (patched,
    channels last), fed its own predictions and, in training at step 0, the true frames."""
    small = {"num_hidden": "8,8", "filter_size": 3, "patch_size": 2}
    theirs, paths = _openstl_checkpoints(tmp_path, {"name": "openstl:PredRNN", **small}, (4, 2, 16, 16), 3)
    target = pdr.create_model({"name": "predrnn", **small}, (4, 2, 16, 16), 3)
    assert load_backbone_weights(target, paths[0]).complete
    x, y = torch.rand(2, 4, 2, 16, 16), torch.rand(2, 3, 2, 16, 16)
    ours = target.backbone
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x).frames, theirs.eval()(x).frames)
        torch.testing.assert_close(ours.train()(x, targets=y, step=0).frames,
                                   theirs.train()(x, targets=y, step=0).frames)  # sampling_start_value 1: all true


def test_openstl_convlstm_needs_non_strict_and_says_why(tmp_path, fake_openstl):
    spec = {"num_hidden": "8", "filter_size": 3, "patch_size": 2}
    theirs, paths = _openstl_checkpoints(tmp_path, {"name": "openstl:ConvLSTM", **spec}, (4, 2, 16, 16), 3)
    target = pdr.create_model({"name": "convlstm", **spec}, (4, 2, 16, 16), 3)
    with pytest.raises(CheckpointError, match=r"1 missing from the checkpoint: cells\.0\.conv_c\.weight.*no output-gate peephole"):
        load_backbone_weights(target, paths[1])
    report = load_backbone_weights(target, paths[1], strict=False)
    assert report.missing == ["cells.0.conv_c.weight"] and not report.unexpected and report.loaded == 3
    ours, network = target.backbone.state_dict(), theirs.model.state_dict()
    for mine, their in (("cells.0.conv_x.weight", "cell_list.0.conv_x.0.weight"),
                        ("cells.0.conv_h.weight", "cell_list.0.conv_h.0.weight"), ("readout.weight", "conv_last.weight")):
        torch.testing.assert_close(ours[mine], network[their], rtol=0, atol=0)


def test_openstl_checkpoints_load_into_the_bridge(tmp_path, fake_openstl):
    spec = {"name": "openstl:SimVP", "hid_S": 8, "hid_T": 16, "N_S": 2, "N_T": 2}
    source, paths = _openstl_checkpoints(tmp_path, spec, (4, 2, 16, 16), 4)
    assert "enc.enc.0.conv.conv.weight" in source.model.state_dict()  # OpenSTL's names, not PDR's
    x = torch.rand(2, 4, 2, 16, 16)
    with torch.no_grad():
        expected = source(x).frames
    for path in paths:
        target = pdr.create_model(spec, (4, 2, 16, 16), 4, adapter={"name": "predgs", "num_gaussians": 16,
                                                                    "hidden": 8})
        assert load_backbone_weights(target, path).complete
        torch.testing.assert_close(coarse_output(target, x), expected, rtol=0, atol=0)


@needs_openstl
@pytest.mark.parametrize("model_type", ["gSTA", "tau", "IncepU"])
def test_a_real_openstl_simvp_state_dict_loads_into_our_simvp(openstl_models, tmp_path, model_type):
    in_shape = (4, 2, 16, 16)
    theirs = openstl_models.SimVP_Model(in_shape, hid_S=8, hid_T=16, N_S=2, N_T=3, model_type=model_type).eval()
    torch.save({"state_dict": {f"model.{k}": v for k, v in theirs.state_dict().items()}}, tmp_path / "simvp.ckpt")
    ours = pdr.create_model({"name": "simvp", "hid_S": 8, "hid_T": 16, "N_S": 2, "N_T": 3, "model_type": model_type},
                            in_shape, 4).eval()
    assert load_backbone_weights(ours, tmp_path / "simvp.ckpt").complete
    x = torch.rand(2, *in_shape)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


@needs_openstl
def test_a_real_openstl_predrnn_state_dict_loads_into_our_predrnn(openstl_models, tmp_path):
    from types import SimpleNamespace

    configs = SimpleNamespace(in_shape=(3, 1, 16, 16), patch_size=2, filter_size=3, stride=1, layer_norm=0,
                              pre_seq_length=3, aft_seq_length=2, total_length=5, reverse_scheduled_sampling=0)
    theirs = openstl_models.PredRNN_Model(2, [8, 8], configs).eval()
    torch.save(theirs.state_dict(), tmp_path / "predrnn.pth")
    spec = {"name": "predrnn", "num_hidden": [8, 8], "filter_size": 3, "patch_size": 2}
    ours = pdr.create_model(spec, (3, 1, 16, 16), 2).eval()
    bridged = pdr.create_model({"name": "openstl:PredRNN", "num_hidden": "8,8", "filter_size": 3, "patch_size": 2,
                                **_root_kwargs()}, (3, 1, 16, 16), 2).eval()
    assert load_backbone_weights(ours, tmp_path / "predrnn.pth").complete
    assert load_backbone_weights(bridged, tmp_path / "predrnn.pth").complete
    x = torch.rand(2, 3, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), bridged(x))


def test_a_checkpoint_that_needs_a_missing_module_says_which(tmp_path, monkeypatch):
    import sys
    import types

    module = types.ModuleType("lightning_stand_in")

    class AttributeDict(dict):
        pass

    AttributeDict.__module__ = "lightning_stand_in"
    AttributeDict.__qualname__ = "AttributeDict"
    module.AttributeDict = AttributeDict
    monkeypatch.setitem(sys.modules, "lightning_stand_in", module)
    torch.save({"state_dict": {}, "hyper_parameters": AttributeDict(lr=1e-3)}, tmp_path / "pl.ckpt")
    monkeypatch.delitem(sys.modules, "lightning_stand_in")
    model = pdr.create_model({"name": "simvp", "hid_S": 8, "hid_T": 16, "N_S": 2, "N_T": 2}, (4, 2, 32, 32), 4)
    with pytest.raises(CheckpointError, match="holds objects of the module 'lightning_stand_in', which is not installed"):
        load_backbone_weights(model, tmp_path / "pl.ckpt")
