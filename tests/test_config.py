import pytest
import yaml

from pdr.config import load_config, parse_override
from pdr.errors import ConfigError


def write(path, data):
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


BASE = {
    "model": {"backbone": {"name": "simvp", "hid_S": 8, "hid_T": 16, "N_T": 2}},
    "data": {"name": "bouncing_sprites", "in_frames": 10, "out_frames": 10, "num_train": 8},
    "train": {"max_steps": 3},
}


def test_base_inheritance_list_relative_to_file(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "base_model.yaml", {"model": BASE["model"]})
    write(tmp_path / "base_data.yaml", {"data": BASE["data"], "train": BASE["train"]})
    child = write(tmp_path / "sub" / "child.yaml", {
        "_base_": ["../base_model.yaml", "../base_data.yaml"],
        "model": {"backbone": {"hid_S": 12}, "adapter": "predgs"},
        "loss": "l1_ssim",
    })
    cfg = load_config(child)
    assert cfg["model"]["backbone"] == {"name": "simvp", "hid_S": 12, "hid_T": 16, "N_T": 2}
    assert cfg["model"]["adapter"] == {"name": "predgs"}
    assert cfg["loss"] == {"name": "l1_ssim"}
    assert cfg["optim"]["weight_decay"] == 1e-2  # defaults filled
    assert cfg.origin("model.backbone.hid_S").endswith("child.yaml")
    assert cfg.origin("model.backbone.hid_T").endswith("base_model.yaml")


def test_single_base_string_and_overrides(tmp_path):
    write(tmp_path / "base.yaml", BASE)
    child = write(tmp_path / "c.yaml", "_base_: base.yaml\nmodel:\n  adapter: predgs\n")
    cfg = load_config(child, ["model.adapter.num_gaussians=300", "optim.lr=1e-4", "train.seed=3"])
    assert cfg["model"]["adapter"] == {"name": "predgs", "num_gaussians": 300}
    assert cfg["optim"]["lr"] == pytest.approx(1e-4)  # "1e-4" read as a string by YAML, coerced to float
    assert cfg["train"]["seed"] == 3
    assert cfg.origin("model.adapter.num_gaussians") == "--set"


def test_changing_a_component_name_replaces_its_arguments(tmp_path):
    write(tmp_path / "base.yaml", {**BASE, "loss": {"name": "l1_ssim", "lam": 0.3}})
    child = write(tmp_path / "c.yaml", {"_base_": "base.yaml", "loss": {"name": "mse"}})
    assert load_config(child)["loss"] == {"name": "mse"}


def test_misspelt_key_names_file_and_path(tmp_path):
    path = write(tmp_path / "bad.yaml", {**BASE, "train": {"max_stpes": 3}})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert str(path) in msg and "train.max_stpes" in msg and "Did you mean 'max_steps'?" in msg


def test_misspelt_backbone_argument(tmp_path):
    path = write(tmp_path / "bad.yaml", {**BASE, "model": {"backbone": {"name": "simvp", "hid_s": 8}}})
    with pytest.raises(ConfigError, match=r"model.backbone.hid_s: unknown argument of backbone 'simvp'. Did you mean 'hid_S'"):
        load_config(path)


def test_unknown_backbone_lists_choices(tmp_path):
    path = write(tmp_path / "bad.yaml", {**BASE, "model": {"backbone": "simvpp"}})
    with pytest.raises(ConfigError, match=r"bad.yaml: model.backbone.name: unknown backbone 'simvpp'. Did you mean 'simvp'"):
        load_config(path)


def test_wrong_type_and_missing_value(tmp_path):
    path = write(tmp_path / "bad.yaml", {**BASE, "optim": {"lr": "fast"}})
    with pytest.raises(ConfigError, match=r"optim.lr: expected float, got str 'fast'"):
        load_config(path)
    data = {k: v for k, v in BASE["data"].items() if k != "out_frames"}
    path = write(tmp_path / "missing.yaml", {**BASE, "data": data})
    with pytest.raises(ConfigError, match=r"data.out_frames: missing required value"):
        load_config(path)


@pytest.mark.parametrize("train, key, message", [
    ({"max_steps": 0}, "max_steps", "must be >= 1, got 0"),
    ({"max_steps": None, "epochs": -2}, "epochs", "must be >= 1, got -2"),
    ({"max_steps": 3, "monitor_after": -1}, "monitor_after", "must be >= 0, got -1"),
])
def test_a_budget_out_of_range_is_refused_with_its_key(tmp_path, train, key, message):
    path = write(tmp_path / "budget.yaml", {**BASE, "train": train})
    with pytest.raises(ConfigError, match=rf"budget.yaml.*train.{key}: {message}"):
        load_config(path)


def test_loss_warmup_is_checked_and_kept(tmp_path):
    loss = {"name": "l1_ssim", "mse_weight": 1.0, "warmup": {"steps": 50, "start": {"mse_weight": "20"}}}
    cfg = load_config(write(tmp_path / "ok.yaml", {**BASE, "loss": loss}))
    assert cfg["loss"]["warmup"] == {"steps": 50, "start": {"mse_weight": 20.0}}
    bad = {**loss, "warmup": {"steps": 50, "start": {"mse_wieght": 20.0}}}
    with pytest.raises(ConfigError, match=r"bad.yaml: loss.warmup.start.mse_wieght: unknown argument of loss "
                                          r"'l1_ssim'. Did you mean 'mse_weight'"):
        load_config(write(tmp_path / "bad.yaml", {**BASE, "loss": bad}))
    with pytest.raises(ConfigError, match=r"bad2.yaml: loss.warmup.steps: expected an integer >= 1"):
        load_config(write(tmp_path / "bad2.yaml", {**BASE, "loss": {**loss, "warmup": {"steps": -1, "start": {}}}}))
    out_of_range = {**loss, "warmup": {"steps": 5, "start": {"lam": 2.0}}}
    with pytest.raises(ConfigError, match=r"bad3.yaml: loss.warmup.start.lam: lam must be in \[0, 1\]"):
        load_config(write(tmp_path / "bad3.yaml", {**BASE, "loss": out_of_range}))
    with pytest.raises(ConfigError, match=r"bad4.yaml: loss: lam must be in \[0, 1\]"):
        load_config(write(tmp_path / "bad4.yaml", {**BASE, "loss": {"name": "l1_ssim", "lam": 2.0}}))
    with pytest.raises(ConfigError, match=r"bad5.yaml: train.monitor: val/loss changes meaning along loss.warmup"):
        load_config(write(tmp_path / "bad5.yaml", {**BASE, "loss": loss, "train": {"monitor": "val/loss"}}))


def test_dataset_argument_is_checked(tmp_path):
    path = write(tmp_path / "bad.yaml", {**BASE, "data": {**BASE["data"], "num_trian": 3}})
    with pytest.raises(ConfigError, match=r"data.num_trian: unknown argument of dataset 'bouncing_sprites'"):
        load_config(path)


def test_missing_file_and_missing_base(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    path = write(tmp_path / "c.yaml", {"_base_": "gone.yaml"})
    with pytest.raises(ConfigError, match=r"c.yaml: _base_ file not found: gone.yaml"):
        load_config(path)


def test_base_cycle_and_bad_yaml(tmp_path):
    write(tmp_path / "a.yaml", {"_base_": "b.yaml"})
    write(tmp_path / "b.yaml", {"_base_": "a.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    write(tmp_path / "broken.yaml", "model: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: line \d+"):
        load_config(tmp_path / "broken.yaml")


@pytest.mark.parametrize("text", ["novalue", "=3", "a..b=1"])
def test_bad_override_syntax(text):
    with pytest.raises(ConfigError, match="--set"):
        parse_override(text)


def test_every_shipped_config_validates(repo):
    paths = [p for p in (repo / "configs").rglob("*.yaml") if "_base_" not in p.parts]
    assert len(paths) >= 6
    for path in paths:
        cfg = load_config(path)
        assert cfg["model"]["backbone"]["name"]


def test_resolved_config_round_trips(tmp_path, repo):
    cfg = load_config(repo / "configs" / "demo" / "simvp_predgs.yaml")
    cfg.save(tmp_path / "saved.yaml")
    again = load_config(tmp_path / "saved.yaml")
    assert dict(again) == dict(cfg)


@pytest.mark.parametrize(
    "override,expected",
    [
        ("data.speed=3.0", "data.speed: dataset 'bouncing_sprites' expected a list (default: [1.0, 3.0]), got float 3.0"),
        ("model.adapter.num_gaussians=lots", "model.adapter.num_gaussians: adapter 'predgs' expected int or null (default: 300), "
                                             "got str 'lots'"),
        ("model.adapter.num_gaussians=12.5", "model.adapter.num_gaussians: adapter 'predgs' expected int"),
        ("model.adapter.scale_range=[0.5, x]", "model.adapter.scale_range: adapter 'predgs' expected a list of float or null"),
        ("model.backbone.hid_S=true", "model.backbone.hid_S: backbone 'simvp' expected int"),
        ("model.adapter.position_init=3", "model.adapter.position_init: adapter 'predgs' expected str"),
    ],
)
def test_argument_types_are_checked_against_the_constructors(tmp_path, override, expected):
    path = write(tmp_path / "c.yaml", {**BASE, "model": {**BASE["model"], "adapter": "predgs"}})
    with pytest.raises(ConfigError) as info:
        load_config(path, [override])
    assert str(info.value) == f"--set: {expected}" or str(info.value).startswith(f"--set: {expected}")


def test_a_choice_among_names_is_checked(tmp_path):
    path = write(tmp_path / "c.yaml", {**BASE, "data": {"name": "clevrer", "in_frames": 2, "out_frames": 2}})
    with pytest.raises(ConfigError) as info:
        load_config(path, ["data.flow_method=raft"])
    assert str(info.value) == ("--set: data.flow_method: dataset 'clevrer' expected one of 'auto', 'raft_large', "
                               "'farneback' (default: 'auto'), got str 'raft'")
    assert load_config(path, ["data.flow_method=farneback"])["data"]["flow_method"] == "farneback"


def test_values_that_fit_their_annotations_pass_and_float_strings_convert(tmp_path):
    path = write(tmp_path / "c.yaml", {**BASE, "model": {**BASE["model"], "adapter": "predgs"}})
    cfg = load_config(path, ["data.speed=[1, 2.5]", "model.adapter.kernel_size=null", "model.adapter.scale_range=[0.4, null]",
                             "model.backbone.drop_path=1e-2"])
    assert cfg["data"]["speed"] == [1, 2.5] and cfg["model"]["adapter"]["kernel_size"] is None
    assert cfg["model"]["backbone"]["drop_path"] == 0.01 and isinstance(cfg["model"]["backbone"]["drop_path"], float)


def test_an_error_in_a_set_key_names_set_not_the_file(tmp_path):
    path = write(tmp_path / "c.yaml", BASE)
    with pytest.raises(ConfigError) as info:
        load_config(path, ["model.backbone.hid_s=8"])
    assert str(info.value).startswith("--set: model.backbone.hid_s: unknown argument of backbone 'simvp'. "
                                      "Did you mean 'hid_S'?")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["data.num_trian=8"])
    assert str(info.value).startswith("--set: data.num_trian: unknown argument of dataset 'bouncing_sprites'")
    # the same mistake in the file is blamed on the file
    bad = write(tmp_path / "bad.yaml", {**BASE, "model": {"backbone": {**BASE["model"]["backbone"], "hid_s": 8}}})
    with pytest.raises(ConfigError, match=rf"^{bad}: model.backbone.hid_s: unknown argument"):
        load_config(bad)
