"""Training under torchrun, killed and resumed, and stopped by SIGTERM: subprocesses as a user runs them."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from pdr.engine.checkpoint import load_checkpoint

SUPPORT = os.path.join(os.path.dirname(__file__), "support")
COMMON = [
    "imports=[tiny_backbones]", "model.backbone={name: test_convnet, width: 8}", "data.num_train=32",
    "data.num_val=8", "data.batch_size=8", "train.log_every=1", "train.tensorboard=false",
]


def env():
    return {**os.environ, "PYTHONPATH": SUPPORT + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}


def train_cmd(work, *extra):
    return ["tools/train.py", "--config", "configs/advected_fields/simvp.yaml", "--set", *COMMON, *extra,
            "--work-dir", str(work), "--no-progress"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def weights(work, key="model"):
    return load_checkpoint(work / "checkpoints" / "last.pt")[key]


def assert_same_weights(a, b, atol):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=k)


def test_two_processes_match_one_with_the_same_global_batch(repo, tmp_path):
    one = subprocess.run([sys.executable, *train_cmd(tmp_path / "one", "train.max_steps=6")], cwd=repo, env=env(),
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         *train_cmd(tmp_path / "two", "train.max_steps=6")],
        cwd=repo, env=env(), capture_output=True, text=True, timeout=600,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert "(2 processes)" in (tmp_path / "two" / "log.txt").read_text()
    assert_same_weights(weights(tmp_path / "one"), weights(tmp_path / "two"), atol=1e-5)
    # validation metrics are reduced over both processes' halves of the val split
    csv_one = (tmp_path / "one" / "metrics.csv").read_text().splitlines()[-1].split(",")
    csv_two = (tmp_path / "two" / "metrics.csv").read_text().splitlines()[-1].split(",")
    assert [float(v) for v in csv_one[5:]] == pytest.approx([float(v) for v in csv_two[5:]], rel=1e-4)


def test_sigkill_then_resume_equals_an_uninterrupted_run(repo, tmp_path):
    """With an EMA of the weights and dropout (training draws random numbers): the weights, their EMA and every
    random generator come back from last.pt."""
    steps = ["train.max_steps=12", "train.save_every=1", "train.ema_decay=0.7", "model.backbone.dropout=0.3"]
    straight = subprocess.run([sys.executable, *train_cmd(tmp_path / "straight", *steps)], cwd=repo, env=env(),
                              capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-2000:]

    work = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, *train_cmd(work, *steps)], cwd=repo, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        ckpt = work / "checkpoints" / "last.pt"
        if ckpt.is_file() and load_checkpoint(ckpt)["global_step"] >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    killed_at = load_checkpoint(work / "checkpoints" / "last.pt")["global_step"]
    assert killed_at < 12, "the run finished before it could be killed; make it longer"

    resumed = subprocess.run([sys.executable, *train_cmd(work, *steps), "--resume"], cwd=repo, env=env(),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {work / 'checkpoints' / 'last.pt'}" in (work / "log.txt").read_text()
    assert_same_weights(weights(tmp_path / "straight"), weights(work), atol=0)
    assert_same_weights(weights(tmp_path / "straight", "ema"), weights(work, "ema"), atol=0)


def test_sigterm_saves_a_checkpoint(repo, tmp_path):
    work = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, *train_cmd(work, "train.max_steps=100000")], cwd=repo, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (work / "log.txt").is_file() or "step 2/" not in (work / "log.txt").read_text():
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted: stopped by SIGTERM; checkpoint saved to" in err
    state = load_checkpoint(work / "checkpoints" / "last.pt")
    assert state["global_step"] >= 2


def test_truncated_checkpoint_on_resume_is_reported(repo, tmp_path):
    work = tmp_path / "run"
    first = subprocess.run([sys.executable, *train_cmd(work, "train.max_steps=2")], cwd=repo, env=env(),
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    ckpt = work / "checkpoints" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    again = subprocess.run([sys.executable, *train_cmd(work, "train.max_steps=4"), "--resume"], cwd=repo, env=env(),
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1].startswith(f"error: checkpoint {ckpt} is corrupt or truncated")
    assert "Traceback" not in again.stderr


def test_latent_flow_without_collision_labels_trains_under_two_processes(repo, tmp_path):
    """Heads whose loss a batch does not have (collision: no labels in bouncing_sprites) still take part in
    every step, as DistributedDataParallel requires."""
    work = tmp_path / "lf"
    small = ["data.image_size=16", "data.sprite_size=[3,6]", "data.in_frames=3", "data.out_frames=2", "data.seq_len=5",
             "data.num_train=8", "data.num_val=2", "data.batch_size=4", "model.backbone.nf=8",
             "model.backbone.hidden=8", "model.backbone.layers=1", "model.backbone.perceptual=random",
             "model.backbone.temporal_checkpoint=null", "train.max_steps=3", "train.log_every=1",
             "train.tensorboard=false", "eval.metrics=[mse]"]
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         "tools/train.py", "--config", "configs/bouncing_sprites/latent_flow_joint.yaml", "--set", *small,
         "--work-dir", str(work), "--no-progress"],
        cwd=repo, env=env(), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (work / "log.txt").read_text()
    assert "(2 processes)" in log and "step 3/3" in log
    assert "lf_collision" not in log  # no labels: no collision term
    state = load_checkpoint(work / "checkpoints" / "last.pt")
    assert state["global_step"] == 3


def test_each_process_reads_its_own_share_of_every_global_batch(repo, tmp_path, monkeypatch):
    """Two processes, faked in this one (rank and world size as torchrun gives them): each reads its half of every
    global batch one process reads, the halves disjoint, and every other validation sequence."""
    from pdr.config import load_config
    from pdr.engine import Trainer, distributed

    cfg = load_config(repo / "configs" / "advected_fields" / "simvp.yaml", [*COMMON, "data.size=16"])

    def loaders(rank, world_size):
        monkeypatch.setattr(distributed, "init_distributed",
                            lambda device: (distributed.DistInfo(rank, rank, world_size), device))
        monkeypatch.setattr(distributed, "wrap_model", lambda model, *args, **kwargs: model)  # no process group
        trainer = Trainer(cfg, tmp_path / f"rank{rank}of{world_size}", show_progress=False)
        assert trainer.dist.world_size == world_size
        trainer.train_loader.set_epoch(1)
        train = [x for x, _ in trainer.train_loader]
        return train, torch.cat([x for x, _ in trainer.val_loader])

    one_train, one_val = loaders(0, 1)
    (first, first_val), (second, second_val) = loaders(0, 2), loaders(1, 2)
    assert len(one_train) == len(first) == len(second) == 4  # 32 sequences, global batch 8
    for whole, a, b in zip(one_train, first, second):
        assert a.shape[0] == b.shape[0] == 4
        torch.testing.assert_close(torch.cat([a, b]), whole, rtol=0, atol=0)
    assert len(one_val) == 8 and len(first_val) == len(second_val) == 4
    torch.testing.assert_close(first_val, one_val[0::2], rtol=0, atol=0)
    torch.testing.assert_close(second_val, one_val[1::2], rtol=0, atol=0)
