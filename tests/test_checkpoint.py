import errno
import stat
import os

import pytest
import torch

from pdr.engine.checkpoint import config_differences, load_checkpoint, save_checkpoint
from pdr.errors import CheckpointError


def test_round_trip(tmp_path):
    state = {"model": {"w": torch.arange(5.0)}, "epoch": 3}
    path = save_checkpoint(state, tmp_path / "ckpt" / "last.pt")
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3 and torch.equal(loaded["model"]["w"], torch.arange(5.0))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint({"model": {"w": torch.zeros(3)}, "epoch": 1}, tmp_path / "last.pt")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(CheckpointError, match="No space left on device; the previous one is intact"):
        save_checkpoint({"model": {"w": torch.ones(3)}, "epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_truncated_and_corrupt_files_are_reported(tmp_path):
    path = save_checkpoint({"model": {"w": torch.randn(1000)}}, tmp_path / "last.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_config_differences_list_keys():
    saved = {"model": {"backbone": {"name": "simvp", "hid_S": 8}}, "train": {"epochs": 5}}
    current = {"model": {"backbone": {"name": "simvp", "hid_S": 16}}, "train": {"epochs": 10}}
    assert config_differences(saved, current) == ["model.backbone.hid_S: 8 -> 16"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_checkpoints_respect_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        path = save_checkpoint({"model": {"w": torch.zeros(2)}}, tmp_path / "last.pt")
        plain = tmp_path / "plain"
        plain.write_bytes(b"")  # what any other file written by the same process gets
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask == stat.S_IMODE(plain.stat().st_mode)
