"""A run folder is written only by a run that is accepted: refused resumes, missing folders and bad
values leave nothing behind, and tools/eval.py evaluates the setup the weights were trained with."""
import os
from pathlib import Path

import pytest
import yaml

from pdr.cli import train as train_cli
from pdr.errors import ConfigError
from pdr.results.evaluation import evaluate_run

REPO = Path(__file__).resolve().parents[1]

TINY = [
    "model.backbone.hid_S=8", "model.backbone.hid_T=16", "model.backbone.N_T=2",
    "data.num_train=8", "data.num_val=4", "data.num_test=4", "data.batch_size=4", "train.max_steps=2",
    "train.tensorboard=false",
]
CONFIG = "configs/advected_fields/simvp.yaml"


def train(repo, work, *extra, resume=False):
    argv = ["--config", str(repo / CONFIG), "--set", *TINY, *extra, "--work-dir", str(work), "--no-progress"]
    return train_cli.main(argv + (["--resume"] if resume else []))


def snapshot(folder):
    """Every file of a folder with its bytes and modification time."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, folder)] = (fh.read(), os.stat(path).st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("runs") / "run"
    assert train(REPO, work) == 0
    return work


def test_a_refused_resume_writes_nothing(repo, trained, capsys):
    before = snapshot(trained)
    assert train(repo, trained, "data.num_test=8", resume=True) == 2
    err = capsys.readouterr().err
    assert "different config" in err and "data.num_test: 4 -> 8" in err
    assert snapshot(trained) == before  # config.yaml, log.txt, checkpoints: untouched


def test_resume_of_a_missing_folder_fails_at_once_and_creates_nothing(repo, tmp_path, capsys, monkeypatch):
    import pdr.data

    def no_data(*args, **kwargs):
        raise AssertionError("the data was built before the missing run folder was noticed")

    monkeypatch.setattr("pdr.data.loader.build_dataset", no_data)
    missing = tmp_path / "never" / "trained"
    assert train(repo, missing, resume=True) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"error: --resume: the run folder {missing} does not exist; start the run without --resume"]
    assert not (tmp_path / "never").exists()
    assert pdr.data.build_dataset is not no_data


def test_eval_uses_the_config_stored_in_the_checkpoint(repo, trained):
    result = evaluate_run(trained, device="cpu", metrics=["mse"], save_images=False)
    assert result.metrics["mse"] > 0
    # a config.yaml edited after training (as a refused resume used to do) is not silently evaluated
    edited = trained.parent / "edited"
    edited.mkdir()
    (edited / "checkpoints").mkdir()
    (edited / "checkpoints" / "best.pt").write_bytes((trained / "checkpoints" / "best.pt").read_bytes())
    cfg = yaml.safe_load((trained / "config.yaml").read_text())
    cfg["data"]["num_test"] = 8
    (edited / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=r"data\.num_test: 4 -> 8"):
        evaluate_run(edited, device="cpu", metrics=["mse"], save_images=False)
    # without a config.yaml the checkpoint's own config is used
    (edited / "config.yaml").unlink()
    again = evaluate_run(edited, device="cpu", metrics=["mse"], save_images=False)
    assert again.metrics["mse"] == pytest.approx(result.metrics["mse"], rel=1e-6)


@pytest.mark.parametrize("override,expected", [
    ("data.num_val=many", "error: --set: data.num_val: dataset 'advected_fields' expected int"),
    ("model.backbone.hid_S=[8]", "error: --set: model.backbone.hid_S: backbone 'simvp' expected int"),
])
def test_a_value_of_the_wrong_type_is_one_line_and_writes_nothing(tmp_path, capsys, override, expected):
    work = tmp_path / "run"
    assert train(REPO, work, override) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), lines
    assert not work.exists()
