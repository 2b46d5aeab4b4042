"""One vocabulary of data options for every dataset: `image_size` for the frame size (the old `size` and
`img_size` still read, with a deprecation note) and `num_train`/`num_val`/`num_test` accepted by all."""
import inspect
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from pdr.config import load_config
from pdr.config.data_options import DATA_RENAMED, SPLIT_COUNTS
from pdr.data import build_dataset
from pdr.errors import ConfigError
from pdr.registry import DATASETS

TINY = ["model.backbone.hid_S=8", "model.backbone.hid_T=16", "model.backbone.N_T=2", "data.num_train=4",
        "data.num_val=2", "data.num_test=2", "data.batch_size=2", "train.max_steps=1", "train.tensorboard=false"]


def run(repo, *args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=repo, capture_output=True, text=True, timeout=600)


def test_no_dataset_uses_an_old_name_and_every_frame_size_is_image_size():
    for name in DATASETS.names():
        params = inspect.signature(DATASETS.get(name)).parameters
        assert not set(DATA_RENAMED) & set(params), name
        shape = inspect.signature(DATASETS.get(name).frame_shape).parameters
        assert not set(DATA_RENAMED) & set(shape), name


def test_old_frame_size_name_trains_with_a_deprecation_note(repo, tmp_path):
    proc = run(repo, "tools/train.py", "--config", "configs/advected_fields/simvp.yaml", "--set", *TINY,
               "data.size=16", "--work-dir", tmp_path / "run", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--set: data.size is deprecated, read as data.image_size" in proc.stderr
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]
    assert saved["image_size"] == 16 and "size" not in saved
    assert json.loads(proc.stdout.strip().splitlines()[-1])["step"] == 1


def test_old_and_new_name_in_one_mapping_is_one_clear_error(repo, tmp_path):
    config = tmp_path / "both.yaml"
    config.write_text(yaml.safe_dump({"_base_": str(repo / "configs" / "advected_fields" / "simvp.yaml"),
                                      "data": {"size": 16, "image_size": 16}}))
    proc = run(repo, "tools/train.py", "--config", config, "--set", *TINY, "--work-dir", tmp_path / "run")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: {config}: data.size and data.image_size ({config}) are both set; "
                                   "data.size is the old name of data.image_size: keep data.image_size alone")
    assert not (tmp_path / "run").exists()


def test_the_name_set_later_wins_whichever_name_it_is(repo, tmp_path, caplog):
    old = tmp_path / "old.yaml"  # a user's config written before the rename, over a base that has the new name
    old.write_text(yaml.safe_dump({"_base_": str(repo / "configs" / "clevrer" / "simvp.yaml"),
                                   "data": {"img_size": 32}}))
    data = load_config(old)["data"]
    assert data["image_size"] == 32 and "img_size" not in data
    assert f"{old}: data.img_size is deprecated, read as data.image_size" in caplog.text
    assert load_config(old, ["data.image_size=48"])["data"]["image_size"] == 48
    new = tmp_path / "new.yaml"  # the new name over a base written with the old one
    new.write_text(yaml.safe_dump({"_base_": str(old), "data": {"image_size": 24}}))
    assert load_config(new)["data"]["image_size"] == 24
    assert load_config(new, ["data.size=40"])["data"]["image_size"] == 40


def test_every_dataset_takes_the_split_counts(repo):
    """Datasets without num_* arguments get them from pdr.data: no config is refused for them."""
    for name in DATASETS.names():
        params = inspect.signature(DATASETS.get(name)).parameters
        cfg_path = repo / "configs" / "_base_" / "data" / f"{name}.yaml"
        if not cfg_path.is_file() or set(SPLIT_COUNTS) <= set(params):
            continue
        cfg = load_config(repo / "configs" / "demo" / "simvp.yaml",
                          [f"data={{_delete_: true, name: {name}, in_frames: 2, out_frames: 2}}", "data.num_test=3"])
        assert cfg["data"]["num_test"] == 3
    with pytest.raises(ConfigError, match=r"data.num_test: expected an int >= 0 .* got -1"):
        load_config(repo / "configs" / "kth" / "simvp.yaml", ["data.num_test=-1"])


def test_split_counts_keep_the_first_sequences_of_a_dataset_that_does_not_generate(repo, tmp_path, capsys):
    from test_benchmark_data import write_kth

    from pdr.cli.prepare_data import main

    write_kth(tmp_path, persons=(1, 2, 17), frames=36)
    small = [f"data.root={tmp_path}", "data.clip_stride=5", "data.eval_clip_stride=5", "data.num_workers=0"]
    full = {s: build_dataset(load_config(repo / "configs" / "kth" / "simvp.yaml", small), s) for s in ("train", "test")}
    cfg = load_config(repo / "configs" / "kth" / "simvp.yaml", [*small, "data.num_train=3", "data.num_test=1"])
    train, test = build_dataset(cfg, "train"), build_dataset(cfg, "test")
    assert (len(full["train"]), len(full["test"])) == (4, 2) and (len(train), len(test)) == (3, 1)
    for i in range(3):
        assert torch.equal(train[i][0], full["train"][i][0])
    with pytest.raises(IndexError):
        train[3]
    assert train.mean == full["train"].mean and train.validation_is_test and train.clips is train.dataset.clips

    assert main(["kth", "--root", str(tmp_path), "--set", "data.clip_stride=5", "data.eval_clip_stride=5",
                 "data.num_test=1"]) == 0
    out = capsys.readouterr().out
    assert "train        4" in out and "test         1" in out


def test_moving_mnist_test_file_is_cut_to_num_test(tmp_path):
    from test_benchmark_data import fake_digits, write_idx

    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", fake_digits(40))
    np.save(tmp_path / "mnist_test_seq.npy", np.zeros((20, 5, 64, 64), np.uint8))
    kw = dict(split="test", in_frames=10, out_frames=10, root=str(tmp_path), val_digits=5, test_digits=5)
    assert len(DATASETS.build("moving_mnist", num_test=3, **kw)) == 3
    assert len(DATASETS.build("moving_mnist", **kw)) == 5
