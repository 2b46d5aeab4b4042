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
# OpenSTL's own names, written out from its module definitions (openstl/models/simvp_model.py,
# openstl/modules/simvp_modules.py, predrnn_modules.py), in the order its state_dict lists them.

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
WB = ("weight", "bias")


def _openstl_simvp_keys(n_s: int, n_t: int, model_type: str) -> dict[str, list[str]]:
    samplings = ([False, True] * (n_s // 2))[:n_s]
    enc = [f"enc.enc.{i}.conv.{part}.{p}" for i in range(n_s) for part in ("conv", "norm") for p in WB]
    dec = []
    for i, up in enumerate(reversed(samplings)):
        dec += [f"dec.dec.{i}.conv.conv{'.0' if up else ''}.{p}" for p in WB]
        dec += [f"dec.dec.{i}.conv.norm.{p}" for p in WB]
    dec += [f"dec.readout.{p}" for p in WB]
    hid = []
    if model_type == "incepu":
        for part in ("enc", "dec"):
            for i in range(n_t):
                hid += [f"hid.{part}.{i}.conv1.{p}" for p in WB]
                hid += [f"hid.{part}.{i}.layers.{k}.{m}.{p}" for k in range(4) for m in ("conv", "norm") for p in WB]
        return {"encoder": enc, "translator": hid, "decoder": dec}
    gate = ["conv0", "conv_spatial", "conv1"]
    for i in range(n_t):
        b = f"hid.enc.{i}.block"
        hid += [f"{b}.layer_scale_1", f"{b}.layer_scale_2", *(f"{b}.norm1.{p}" for p in BN)]
        hid += [f"{b}.attn.proj_1.{p}" for p in WB]
        hid += [f"{b}.attn.spatial_gating_unit.{g}.{p}" for g in gate for p in WB]
        if model_type == "tau":
            hid += [f"{b}.attn.spatial_gating_unit.fc.0.weight", f"{b}.attn.spatial_gating_unit.fc.2.weight"]
        hid += [f"{b}.attn.proj_2.{p}" for p in WB]
        hid += [f"{b}.norm2.{p}" for p in BN]
        hid += [f"{b}.mlp.{m}.{p}" for m in ("fc1", "dwconv.dwconv", "fc2") for p in WB]
        if i in (0, n_t - 1):  # the first and last MetaBlock change the width: a 1x1 `reduction`
            hid += [f"hid.enc.{i}.reduction.{p}" for p in WB]
    return {"encoder": enc, "translator": hid, "decoder": dec}


def _as_openstl_simvp(backbone, model_type: str, n_s: int = 2, n_t: int = 2) -> dict:
    """The backbone's weights under OpenSTL's names (part by part, in state_dict order, as
    tests/test_openstl_bridge.py pairs them with a real OpenSTL)."""
    out = {}
    for part, names in _openstl_simvp_keys(n_s, n_t, model_type).items():
        values = list(getattr(backbone, part).state_dict().values())
        assert len(values) == len(names), part
        out.update(zip(names, values))
    return out


def _trained_like(model: pdr.PDRModel, seed: int = 1) -> None:
    """Perturb every float tensor so that loaded weights cannot be mistaken for an initialisation."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for v in model.state_dict().values():
            if v.is_floating_point():
                v.add_(0.1 * torch.randn(v.shape, generator=g))


@pytest.mark.parametrize("model_type", ["gSTA", "tau", "IncepU"])
def test_openstl_simvp_checkpoint_loads_into_our_simvp(tmp_path, model_type):
    spec = {"name": "simvp", "hid_S": 8, "hid_T": 16, "N_S": 2, "N_T": 2, "model_type": model_type}
    source = pdr.create_model(spec, (4, 2, 32, 32), 4).eval()
    _trained_like(source)
    weights = _as_openstl_simvp(source.backbone, model_type.lower())
    lightning = {"state_dict": {f"model.{k}": v for k, v in weights.items()}, "epoch": 3, "global_step": 120,
                 "pytorch-lightning_version": "2.1.0"}
    torch.save(lightning, tmp_path / "best.ckpt")
    torch.save(weights, tmp_path / "checkpoint.pth")
    x = frames(1)
    with torch.no_grad():
        expected = source.backbone(x).frames
    for path in (tmp_path / "best.ckpt", tmp_path / "checkpoint.pth"):
        target = pdr.create_model(spec, (4, 2, 32, 32), 4, adapter={"name": "predgs", "num_gaussians": 16,
                                                                    "hidden": 8, "source": "output"})
        report = load_backbone_weights(target, path)
        assert report.complete and report.loaded == len(weights)
        torch.testing.assert_close(coarse_output(target, x), expected, rtol=0, atol=0)


def _openstl_predrnn_state(backbone, layers: int) -> dict:
    sd = backbone.state_dict()
    out = {}
    for i in range(layers):
        for conv in ("conv_x", "conv_h", "conv_m", "conv_o"):
            out[f"cell_list.{i}.{conv}.0.weight"] = sd[f"cells.{i}.{conv}.weight"]  # a Sequential(conv) in OpenSTL
        out[f"cell_list.{i}.conv_last.weight"] = sd[f"cells.{i}.fuse.weight"]
    out["conv_last.weight"] = sd["readout.weight"]
    return out


def test_openstl_predrnn_checkpoint_loads_into_our_predrnn(tmp_path):
    spec = {"name": "predrnn", "num_hidden": [8, 8], "filter_size": 3, "patch_size": 2}
    source = pdr.create_model(spec, (4, 2, 16, 16), 3).eval()
    _trained_like(source)
    torch.save({"state_dict": {f"model.{k}": v for k, v in _openstl_predrnn_state(source.backbone, 2).items()}},
               tmp_path / "predrnn.ckpt")
    target = pdr.create_model(spec, (4, 2, 16, 16), 3).eval()
    assert load_backbone_weights(target, tmp_path / "predrnn.ckpt").complete
    x = torch.rand(2, 4, 2, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


def test_openstl_convlstm_needs_non_strict_and_says_why(tmp_path):
    spec = {"name": "convlstm", "num_hidden": [8], "filter_size": 3, "patch_size": 2}
    source = pdr.create_model(spec, (4, 2, 16, 16), 3)
    sd = source.backbone.state_dict()
    weights = {"cell_list.0.conv_x.0.weight": sd["cells.0.conv_x.weight"],
               "cell_list.0.conv_h.0.weight": sd["cells.0.conv_h.weight"],
               "cell_list.0.conv_o.0.weight": torch.zeros(8, 16, 3, 3),  # OpenSTL's unused convolutions
               "cell_list.0.conv_last.weight": torch.zeros(8, 16, 1, 1),
               "conv_last.weight": sd["readout.weight"]}
    torch.save(weights, tmp_path / "convlstm.pth")
    target = pdr.create_model(spec, (4, 2, 16, 16), 3)
    with pytest.raises(CheckpointError, match=r"1 missing from the checkpoint: cells\.0\.conv_c\.weight.*no output-gate peephole"):
        load_backbone_weights(target, tmp_path / "convlstm.pth")
    report = load_backbone_weights(target, tmp_path / "convlstm.pth", strict=False)
    assert report.missing == ["cells.0.conv_c.weight"] and not report.unexpected
    torch.testing.assert_close(target.backbone.state_dict()["cells.0.conv_x.weight"], sd["cells.0.conv_x.weight"])


def test_openstl_checkpoints_load_into_the_bridge(tmp_path, fake_openstl):
    spec = {"name": "openstl:SimVP", "hid_S": 8}
    source = pdr.create_model(spec, (4, 2, 16, 16), 4).eval()
    _trained_like(source)
    network = source.backbone.model.state_dict()  # what OpenSTL's own model saves
    torch.save(network, tmp_path / "plain.pth")
    torch.save({"state_dict": {f"model.{k}": v for k, v in network.items()}}, tmp_path / "lightning.ckpt")
    x = torch.rand(2, 4, 2, 16, 16)
    with torch.no_grad():
        expected = source.backbone(x).frames
    for name in ("plain.pth", "lightning.ckpt"):
        target = pdr.create_model(spec, (4, 2, 16, 16), 4, adapter={"name": "predgs", "num_gaussians": 16,
                                                                    "hidden": 8})
        assert load_backbone_weights(target, tmp_path / name).complete
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
