"""tools/gpu_check.py: every step time-boxed and isolated, every file written; its dry run on the CPU."""
import json
import sys

import pytest

from pdr.cli import gpu_check

from conftest import SHARED

PY = sys.executable


def fake_commands(work):
    """A failing build, tests that hang past their time box, benchmarks that write their JSON."""
    render = {"rows": [{"case": "A", "backend": "cuda", "forward_frames_per_s": 1.0}]}
    step = {"rows": [{"config": gpu_check.COMPARE_CONFIG, "model": "simvp + predgs", "precision": "fp32",
                      "ms_per_step": 10.0, "spread_ms": 0.0, "peak_mb": None, "parameters": 5}]}
    return {
        "build": [[PY, "-c", "import sys; print('compiler says no'); sys.exit(3)"]],
        "doctor": [[PY, "-c", "print('[  ok] torch')"]],
        "tests": [[PY, "-c", "import time; print('started', flush=True); time.sleep(60)"]],
        "bench_render": [[PY, "-c", f"import json; json.dump({render!r}, open({str(work / 'bench_render.json')!r}, 'w'));"
                                    "print('| a | table |')"]],
        "bench_train_step": [[PY, "-c", f"import json; json.dump({step!r}, "
                                        f"open({str(work / 'bench_train_step_0.json')!r}, 'w'))"]],
    }


def fake_comparison(name, mse):
    """A comparison step that writes its table, JSON and grid into work/<name> (and the MSE arm's last checkpoint,
    the fine-tune step's base)."""
    def command(args, work, steps):
        folder = work / name
        code = (f"import json, pathlib; d = pathlib.Path({str(folder)!r}); d.mkdir(parents=True); "
                f"(d / 'comparison.md').write_text('| run | MSE |\\n|---|---|\\n| mse | {mse} |'); "
                f"(d / 'comparison.json').write_text(json.dumps({{'rows': [{{'run': 'mse', 'steps': {steps}}}]}})); "
                f"(d / 'comparison_predictions.png').write_bytes(b'png'); "
                f"(d / 'mse' / 'checkpoints').mkdir(parents=True); (d / 'mse' / 'checkpoints' / 'last.pt').write_bytes(b'')")
        return [PY, "-c", code]
    return command


def test_failed_and_hung_steps_do_not_stop_the_later_ones(tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    monkeypatch.setattr(gpu_check, "commands", lambda args, w: fake_commands(w))
    monkeypatch.setattr(gpu_check, "compare_command", fake_comparison("compare", 1.0))
    monkeypatch.setattr(gpu_check, "finetune_command", fake_comparison("finetune", 2.0))
    monkeypatch.setattr(gpu_check, "DRY_TIME_BOXES", dict(gpu_check.DRY_TIME_BOXES, tests=3))
    digits = tmp_path / "digits"
    digits.mkdir()
    (digits / gpu_check.MNIST_FILE).write_bytes(b"not read by the fake")
    out = tmp_path / "out"
    code = gpu_check.main(["--out", str(out), "--work-dir", str(work), "--dry-run", "--mnist-root",
                           str(tmp_path / "mnist"), "--mnist-from", str(digits)])
    assert code == 1  # something failed
    summary = json.loads((out / "summary.json").read_text())["steps"]
    assert summary["build"]["status"] == "failed (exit 3)"
    assert summary["tests"]["status"] == "timed out after 3 s" and summary["tests"]["seconds"] < 20
    assert summary["doctor"]["status"] == "ok" and "[  ok] torch" in summary["doctor"]["tail"]
    assert summary["bench_render"]["status"] == "ok"
    assert summary["bench_render"]["results"]["rows"][0]["forward_frames_per_s"] == 1.0
    assert summary["bench_train_step"]["status"] == "ok"
    assert summary["compare"]["status"] == "ok" and summary["compare"]["results"]["steps_per_arm"] == 2
    assert summary["finetune"]["status"] == "ok" and summary["finetune"]["results"]["steps_per_arm"] == 2
    assert (tmp_path / "mnist" / gpu_check.MNIST_FILE).read_bytes() == b"not read by the fake"  # copied
    assert sorted(p.name for p in out.iterdir()) == ["comparison.md", "comparison_predictions.png", "finetune.md",
                                                     "finetune_predictions.png", "log.txt", "summary.json", "summary.md"]
    log = (out / "log.txt").read_text()
    assert "compiler says no" in log and "started" in log
    markdown = (out / "summary.md").read_text()
    assert "| build | failed (exit 3) |" in markdown and "| mse | 1.0 |" in markdown and "| a | table |" in markdown
    assert "| mse | 2.0 |" in markdown


def test_a_spent_budget_skips_the_remaining_steps(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "commands", lambda args, w: fake_commands(w))
    out = tmp_path / "out"
    gpu_check.main(["--out", str(out), "--work-dir", str(tmp_path / "w"), "--dry-run", "--budget", "0",
                    "--only", "build", "tests", "compare", "finetune", "--mnist-root", str(tmp_path / "none")])
    steps = json.loads((out / "summary.json").read_text())["steps"]
    assert steps["build"]["status"] == steps["tests"]["status"] == "skipped: the budget is spent"
    assert steps["compare"]["status"].startswith("skipped: no MNIST digits at")
    assert steps["finetune"]["status"].startswith("skipped: no MNIST digits at")


def test_finetune_without_its_base_is_skipped(tmp_path):
    digits = tmp_path / "mnist"
    digits.mkdir()
    (digits / gpu_check.MNIST_FILE).write_bytes(b"")
    out = tmp_path / "out"
    gpu_check.main(["--out", str(out), "--work-dir", str(tmp_path / "w"), "--dry-run", "--only", "finetune",
                    "--mnist-root", str(digits)])
    steps = json.loads((out / "summary.json").read_text())["steps"]
    assert steps["finetune"]["status"] == "skipped: its base is the compare step's mse arm, which did not finish"


def test_compare_steps_fit_the_time_left():
    rows = {"rows": [{"config": gpu_check.COMPARE_CONFIG, "model": "simvp + predgs", "precision": "fp32",
                      "ms_per_step": 100.0}]}
    # 300 s left: two thirds for 3 arms at 0.1 s a step -> 666 steps, rounded down to a multiple of 50
    assert gpu_check.compare_steps(rows, 300, dry_run=False) == 650
    assert gpu_check.compare_steps(rows, 1, dry_run=False) == 50  # never fewer than 50
    assert gpu_check.compare_steps(rows, 300, dry_run=False, arms=6) == 300  # compare and finetune: 333 -> 300


@pytest.mark.skipif(not (SHARED / "data" / "mnist" / gpu_check.MNIST_FILE).is_file(),
                    reason="the real MNIST digits (../shared/data/mnist) are absent")
def test_dry_run_writes_every_file(tmp_path, monkeypatch):
    """The real commands, shrunk: one train-step config, three tiny compare arms of two steps, and the fine-tune
    protocol's three arms from the compare step's MSE arm."""
    monkeypatch.setattr(gpu_check, "TRAIN_STEP_CONFIGS", ["configs/moving_mnist/simvp_predgs.yaml"])
    out = tmp_path / "out"
    code = gpu_check.main(["--out", str(out), "--work-dir", str(tmp_path / "work"), "--dry-run",
                           "--only", "env", "bench_train_step", "compare", "finetune",
                           "--mnist-root", str(SHARED / "data" / "mnist")])
    steps = json.loads((out / "summary.json").read_text())["steps"]
    assert {name: s["status"] for name, s in steps.items()} == {"env": "ok", "bench_train_step": "ok", "compare": "ok",
                                                                "finetune": "ok"}
    assert code == 0
    assert [r["model"] for r in steps["bench_train_step"]["results"]["rows"]] == ["simvp alone", "simvp + predgs"]
    runs = [r["run"] for r in steps["compare"]["results"]["rows"]]
    assert runs[:3] == gpu_check.COMPARE_ARMS
    finetune = [r["run"] for r in steps["finetune"]["results"]["rows"]]
    assert finetune[0].startswith("base") and finetune[1:4] == gpu_check.FINETUNE_ARMS, finetune
    assert sorted(p.name for p in out.iterdir()) == ["comparison.md", "comparison_predictions.png", "finetune.md",
                                                     "finetune_predictions.png", "log.txt", "summary.json", "summary.md"]
