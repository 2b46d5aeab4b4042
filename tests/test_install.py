"""PDR installed like a library: a wheel of the project, installed apart from the checkout, trains and evaluates.

The wheel is built without build isolation and installed without dependencies (both offline) into a folder
of its own; the console scripts run with that folder on PYTHONPATH from outside the checkout, so the installed
copy is imported, and the checkout's configs/, csrc/ and tools/ are out of reach.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pdr.optional import MissingDependencyError, require

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("pdr-train", "pdr-eval", "pdr-compare", "pdr-infer", "pdr-predict", "pdr-prepare-data",
           "pdr-precompute-flow", "pdr-bench-render", "pdr-bench-train-step", "pdr-doctor")
SOURCES = ("pyproject.toml", "setup.py", "README.md", "pdr", "adapters", "backbones", "csrc", "configs", "tools")
TINY = [
    "model.backbone.hid_S=8", "model.backbone.hid_T=16", "model.backbone.N_T=2",
    "data.num_train=8", "data.num_val=4", "data.num_test=4", "data.batch_size=4", "train.max_steps=2",
    "train.tensorboard=false", "eval.metrics=[mse,psnr]", "eval.num_vis=2",
]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(folder the wheel is installed in, a working folder outside the checkout)."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"  # a clean copy: no build/ or caches of the checkout can slip into the wheel
    src.mkdir()
    for name in SOURCES:
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyc"))
        else:
            shutil.copy2(origin, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp / "dist"),
                    str(src)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp / "dist").glob("pdr_predgs-*.whl")
    site = tmp / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)], check=True,
                   capture_output=True, timeout=300)
    work = tmp / "elsewhere"
    work.mkdir()
    return site, work


def run(installed, script, *args, check=True):
    site, work = installed
    env = {**os.environ, "PYTHONPATH": str(site)}
    command = [str(site / "bin" / script), *map(str, args)] if script.startswith("pdr-") else [sys.executable, *args]
    proc = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_the_installed_copy_is_imported_and_ships_configs_and_sources(installed):
    site, _ = installed
    proc = run(installed, "python", "-c", "import pdr, pdr.resources as r, pdr.render._extension as c; "
               "print(pdr.__file__); print(r.config_dir()); print(c.source_directory())")
    module, configs, csrc = map(Path, proc.stdout.split())
    assert site in module.parents and site in configs.parents and site in csrc.parents
    assert (configs / "demo" / "simvp.yaml").is_file() and (configs / "_base_" / "data" / "taxibj.yaml").is_file()
    sources = {p.relative_to(REPO / "csrc") for p in (REPO / "csrc").rglob("*") if p.suffix in (".cu", ".cpp", ".h", ".cuh")}
    assert sources and sources <= {p.relative_to(csrc) for p in csrc.rglob("*")}


USAGE_LINES = """
import contextlib, io, sys
from importlib.metadata import distribution

scripts = {ep.name: ep for ep in distribution("pdr-predgs").entry_points if ep.group == "console_scripts"}
for name in sys.argv[1:]:
    sys.argv[0] = name  # what a console script sees
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        scripts[name].load()(["--help"])
    print(out.getvalue().splitlines()[0])
"""


def test_every_console_script_shows_its_own_name(installed):
    site, _ = installed
    assert run(installed, "pdr-train", "--help").stdout.startswith("usage: pdr-train ")
    assert all((site / "bin" / script).is_file() for script in SCRIPTS)
    # the other scripts' entry points in one process (each would import torch again)
    lines = run(installed, "python", "-c", USAGE_LINES, *SCRIPTS).stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [["usage:", script] for script in SCRIPTS]


def test_installed_scripts_train_evaluate_and_check_data(installed):
    # configs/... names the shipped config: there is no configs/ folder here
    _, work = installed
    assert not (work / "configs").exists()
    proc = run(installed, "pdr-train", "--config", "configs/advected_fields/simvp.yaml", "--set", *TINY,
               "--work-dir", "run", "--no-progress")
    assert json.loads(proc.stdout.strip().splitlines()[-1])["step"] == 2
    proc = run(installed, "pdr-eval", "run", "--format", "json", "--device", "cpu")
    (record,) = json.loads(proc.stdout)
    assert record["run"] == "run" and record["mse"] > 0 and record["psnr"] > 0
    assert (work / "run" / "eval" / "predictions_test.png").is_file()
    # prepare-data finds the benchmark's base config in the package: it reads data.root etc. from it
    proc = run(installed, "pdr-prepare-data", "taxibj", "--root", "no_such_folder", check=False)
    assert proc.returncode == 1 and "[missing] the folder itself" in proc.stdout, proc.stderr[-2000:]


def test_a_missing_extra_is_named_in_the_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # as if not installed: importing it raises ImportError
    with pytest.raises(MissingDependencyError, match=r"reading TaxiBJ's h5 files needs .*'h5py'.*"
                                                     r"pip install 'pdr-predgs\[taxibj\]'"):
        from pdr.data.taxibj import read_bj_h5

        read_bj_h5(Path("BJ13_M32x32_T30_InOut.h5"))
    assert require("json", "all", "anything") is json


def test_flags_are_kebab_case_and_the_old_spellings_still_work_unlisted():
    from pdr.cli import compare, eval as eval_cli, infer, precompute_flow, train

    for module in (train, eval_cli, compare, infer, precompute_flow):
        parser = module.parser()
        options = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
        assert options and all("_" not in o for o in options), (module.__name__, options)
    parser = infer.parser()
    new = parser.parse_args(["--temporal-checkpoint", "a.pt", "--video-folders", "v", "w", "--img-h", "32",
                             "--output-dir=o"])
    old = parser.parse_args(["--temporal_checkpoint", "a.pt", "--video_folders", "v", "w", "--img_h", "32",
                             "--output_dir=o"])
    assert vars(new) == vars(old) and new.img_h == 32 and new.video_folders == ["v", "w"]
    assert "--img-h" in parser.format_help() and "--img_h" not in parser.format_help()
    # a value that looks like an old flag after `--` is left alone
    assert precompute_flow.parser().parse_args(["--img_w", "8", "--", "--img_h"]).paths == ["--img_h"]
