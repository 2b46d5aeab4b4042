"""tools/train.py and tools/eval.py as a user runs them: end to end, and one clear line for bad input."""
import json
import subprocess
import sys

import pytest
import yaml

TINY = [
    "model.backbone.hid_S=8", "model.backbone.hid_T=16", "model.backbone.N_T=2",
    "data.num_train=8", "data.num_val=4", "data.num_test=4", "data.batch_size=4", "train.max_steps=2",
]


def run(repo, *args, check=True):
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=repo, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_train_then_eval_prints_a_table_and_writes_images(repo, tmp_path):
    runs = []
    for name in ("simvp", "simvp_predgs"):
        work = tmp_path / name
        overrides = TINY + (["model.adapter.num_gaussians=16", "model.adapter.hidden=8"] if "predgs" in name else [])
        proc = run(repo, "tools/train.py", "--config", f"configs/advected_fields/{name}.yaml", "--set", *overrides,
                   "--work-dir", work, "--no-progress")
        assert json.loads(proc.stdout.strip().splitlines()[-1])["work_dir"] == str(work)
        assert yaml.safe_load((work / "config.yaml").read_text())["train"]["max_steps"] == 2
        runs.append(work)
    proc = run(repo, "tools/eval.py", *runs, "--format", "md", "--out", tmp_path / "table.md")
    assert (tmp_path / "table_per_frame.png").stat().st_size > 1000  # both runs in one figure
    assert (tmp_path / "table.md").read_text().strip() in proc.stdout
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("| run | MSE | MAE | RMSE | PSNR | SSIM | LPIPS")
    rows = [line for line in lines if line.startswith("| simvp")]
    assert len(rows) == 2
    cells = rows[1].strip("|").split("|")
    assert all(c.strip() not in ("", "n/a", "nan") for c in cells[1:6])  # real numbers for MSE..SSIM
    # advected_fields has 2 channels: LPIPS (an RGB network) is empty with the reason below the table
    assert "LPIPS n/a: it needs 1 or 3 channels, the data has 2" in proc.stdout
    for work in runs:
        assert (work / "eval" / "predictions_test.png").stat().st_size > 1000
        assert (work / "eval" / "metrics_per_frame_test.png").is_file()
    proc = run(repo, "tools/eval.py", runs[0], "--format", "csv", "--metrics", "mse", "psnr", "--no-images")
    header, row = proc.stdout.strip().splitlines()
    assert header == "run,mse,psnr" and row.startswith("simvp,")


def test_resume_and_overwrite_flags(repo, tmp_path):
    work = tmp_path / "run"
    args = ["tools/train.py", "--config", "configs/advected_fields/simvp.yaml", "--set", *TINY, "--work-dir", work,
            "--no-progress"]
    run(repo, *args)
    again = run(repo, *args, check=False)
    assert again.returncode == 2 and "already holds a run; pass --resume" in again.stderr
    resumed = run(repo, *args[:-1], "--set", "train.max_steps=4", "--no-progress", "--resume")
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["step"] == 4
    run(repo, *args, "--overwrite")


def write_config(tmp_path, repo, **changes):
    base = yaml.safe_load((repo / "configs" / "advected_fields" / "simvp.yaml").read_text())
    base["_base_"] = [str(repo / "configs" / "_base_" / "runtime.yaml"),
                      str(repo / "configs" / "_base_" / "data" / "advected_fields.yaml")]
    for dotted, value in changes.items():
        node = base
        *parents, last = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


@pytest.mark.parametrize(
    "changes,expected",
    [
        ({"train__epohcs": 3}, "train.epohcs: unknown key. Did you mean 'epochs'?"),
        ({"model__backbone__name": "convlstmm"}, "model.backbone.name: unknown backbone 'convlstmm'"),
        ({"data__in_frames": 6}, "data.in_frames + data.out_frames = 6 + 4 = 10, but advected_fields sequences have 8"),
    ],
)
def test_bad_input_ends_in_one_clear_line(repo, tmp_path, changes, expected):
    path = write_config(tmp_path, repo, **changes)
    proc = run(repo, "tools/train.py", "--config", path, "--work-dir", tmp_path / "w", check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_config_path_and_bad_override(repo, tmp_path):
    proc = run(repo, "tools/train.py", "--config", tmp_path / "nope.yaml", check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: config file not found: {tmp_path / 'nope.yaml'}"
    proc = run(repo, "tools/train.py", "--config", "configs/advected_fields/simvp.yaml", "--set", "train.max_steps",
               check=False)
    assert proc.returncode == 2 and "expected KEY=VALUE" in proc.stderr


def test_eval_of_something_that_is_not_a_run(repo, tmp_path):
    proc = run(repo, "tools/eval.py", tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: ")
    assert "no checkpoints/best.pt" in proc.stderr and "Traceback" not in proc.stderr
