"""One prepared check of PDR on a GPU: correctness, renderer speed, adapter cost and a short quality table.

    python tools/gpu_check.py --out DIR [--budget 480] [--mnist-from FOLDER] [--dry-run] [--only STEP ...]
    make gpu-check OUT=DIR

Steps, each in its own process with its own time box; a step that fails or runs out of time is recorded
and the next one still runs:

1. ``env``: versions of Python, torch, CUDA, the driver and the GPU; the packages PDR needs.
2. ``build``: the CUDA rasterizer, compiled for this GPU's architecture only (fast).
3. ``doctor``: ``python -m pdr.doctor``: which renderer backends load, the CUDA module's first-use
   self-test against the torch backend on this GPU, and a small timing of each backend.
4. ``tests``: the CUDA tests of the suite (``tests/test_render_cuda.py`` and every ``tests/test_*cuda*.py``).
5. ``bench_render``: ``tools/bench_render.py``, cases A, B and C, cuda and torch backends, with the goals.
6. ``bench_train_step``: ``tools/bench_train_step.py``, SimVP (gSTA), TAU and ConvLSTM, alone and with
   PredGS, at the Moving MNIST size (10 -> 10, 1x64x64) and the Human3.6M size (4 -> 4, 3x256x256,
   N = 400, K = 51), bf16 and fp32.
7. ``compare``: ``tools/compare.py`` on Moving MNIST from the real digits with the OpenSTL-size SimVP,
   three arms (MSE, L1/SSIM, PredGS + L1/SSIM) at one step budget chosen from step 6's timing to fit the
   time left, evaluated on 1,000 test sequences. Needs the MNIST digits in ``data/moving_mnist``
   (``--mnist-from FOLDER`` copies them there first); skipped with a note otherwise.
8. ``finetune``: the fine-tune protocol of ``tools/compare.py`` (``--arms finetune``) from step 7's MSE arm as
   the trained base: the backbone trained on with MSE, the no-Gaussian control (``conv_refiner``) and PredGS,
   the backbone frozen in both, at the same step budget, on the same test sequences. Its step budget is
   shared with step 7's when the two are asked for together.

Writes into ``--out``: ``summary.md`` (every table), ``summary.json`` (every step's status, time and
results), ``log.txt`` (every step's output), and, when step 7 ran, ``comparison.md`` and
``comparison_predictions.png`` (step 8: ``finetune.md`` and ``finetune_predictions.png``). Bulky files (the
compare runs) go to ``--work-dir``.

``--dry-run`` runs every step on the CPU with every size shrunk (a few frames, one step, tiny models,
four test sequences), to show that the command and its files are in order before GPU time is spent.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .bench_train_step import StepTiming, format_rows
from .common import ArgumentParser, program

REPO = Path(__file__).resolve().parents[2]
MNIST_FILE = "t10k-images-idx3-ubyte.gz"
MNIST_DIR = Path("data/moving_mnist")  # the root configs/moving_mnist/*.yaml name
TRAIN_STEP_CONFIGS = [f"configs/{bench}/{backbone}_predgs.yaml" for bench in ("moving_mnist", "human36m")
                      for backbone in ("simvp", "tau", "convlstm")]
COMPARE_CONFIG = "configs/moving_mnist/simvp_predgs.yaml"
COMPARE_ARMS = ["mse", "l1_ssim", "predgs_l1_ssim"]
FINETUNE_ARMS = ["mse", "refiner", "predgs"]  # of the built-in arm set ``finetune``: the arms that decide it
STEPS = ("env", "build", "doctor", "tests", "bench_render", "bench_train_step", "compare", "finetune")
# Time boxes in seconds on a GPU; compare and finetune get what is left of --budget.
TIME_BOXES = {"env": 30, "build": 150, "doctor": 45, "tests": 90, "bench_render": 90, "bench_train_step": 120}
DRY_TIME_BOXES = {"env": 60, "build": 300, "doctor": 120, "tests": 120, "bench_render": 120, "bench_train_step": 300}
MIN_COMPARE_S = 60
REQUIRED_PACKAGES = ("torch", "numpy", "timm", "einops", "kornia", "yaml", "lpips", "skimage", "tqdm", "imageio",
                     "matplotlib", "scipy")


@dataclass
class StepResult:
    name: str
    status: str = "not run"  # ok | failed (exit N) | timed out | skipped: why
    seconds: float = 0.0
    command: list[str] = field(default_factory=list)
    results: dict = field(default_factory=dict)
    tail: str = ""


def python() -> list[str]:
    return [sys.executable]


def run_step(result: StepResult, commands: list[list[str]], time_box: float, log, env: dict) -> str:
    """Run ``commands`` one after the other, each in its own process group, all within ``time_box`` seconds
    (a command still running then is killed); output goes to ``log`` and is returned."""
    result.command = commands[0] if len(commands) == 1 else [" ".join(c) for c in commands]
    start, output = time.perf_counter(), []
    result.status = "ok"
    print(f"[gpu-check] {result.name} ...", flush=True)
    for command in commands:
        left = time_box - (time.perf_counter() - start)
        log.write(f"\n===== {result.name}: {' '.join(command)} ({left:.0f} s left of the step's time box)\n")
        log.flush()
        proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=max(left, 1))
            if proc.returncode != 0:
                result.status = f"failed (exit {proc.returncode})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            result.status = f"timed out after {time_box:.0f} s"
        log.write(out or "")
        output.append(out or "")
        if result.status != "ok":
            break
    result.seconds = time.perf_counter() - start
    log.write(f"===== {result.name}: {result.status} in {result.seconds:.1f} s\n")
    print(f"[gpu-check] {result.name}: {result.status} in {result.seconds:.1f} s", flush=True)
    log.flush()
    text = "".join(output)
    result.tail = "\n".join(text.strip().splitlines()[-15:])
    return text


def environment() -> dict:
    """Versions and the GPU, read in this process (no CUDA work)."""
    import importlib

    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "gpu": None, "capability": None, "driver": None, "missing_packages": []}
    for name in REQUIRED_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            info["missing_packages"].append(name)
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["capability"] = "%d.%d" % torch.cuda.get_device_capability(0)
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,memory.total", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            info["driver"] = smi.stdout.strip() or None
        except (OSError, subprocess.TimeoutExpired):
            pass
    return info


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def compare_steps(train_step: dict, seconds_left: float, dry_run: bool, arms: int = len(COMPARE_ARMS)) -> int:
    """Training steps per arm that fit ``seconds_left`` for ``arms`` arms, from the measured step time of the
    wrapped SimVP at the Moving MNIST size (fp32), with a third of the time kept for start-up and evaluation."""
    if dry_run:
        return 2
    ms = [r["ms_per_step"] for r in train_step.get("rows", [])
          if r["config"] == COMPARE_CONFIG and r["precision"] == "fp32" and "+" in r["model"]]
    per_step = (ms[0] / 1e3) if ms else 0.1
    return max(50, int(seconds_left * 2 / 3 / arms / per_step) // 50 * 50)


def commands(args, work: Path) -> dict[str, list[list[str]]]:
    """Every step's command lines but compare's (completed once its step budget is known)."""
    dry = args.dry_run
    device = "cpu" if dry else "cuda"
    build = python() + ["-m", "pdr.render.build", "--quiet", "--only", "cpu" if dry else "cuda"]
    tests = sorted({"tests/test_render_cuda.py", *(str(p.relative_to(REPO)) for p in REPO.glob("tests/test_*cuda*.py"))})
    bench_render = python() + ["tools/bench_render.py", "--device", device, "--json", str(work / "bench_render.json")]
    bench_train = python() + ["tools/bench_train_step.py", "--device", device]
    if dry:
        bench_render += ["--cases", "A", "B", "C", "--cpu-frames", "1", "--repeats", "1", "--warmup", "0"]
        # one call per config: each backbone has its own keys to shrink
        bench_train = [bench_train + ["--config", config, "--json", str(work / f"bench_train_step_{i}.json"),
                                      "--precision", "fp32", "--steps", "1", "--warmup", "0",
                                      "--set", *TINY["common"], *TINY[config.rsplit("/", 1)[1].split("_")[0]]]
                       for i, config in enumerate(TRAIN_STEP_CONFIGS)]
    else:
        bench_render += ["--backends", "torch", "cuda"]
        bench_train = [bench_train + ["--config", *TRAIN_STEP_CONFIGS, "--precision", "bf16", "fp32",
                                      "--json", str(work / "bench_train_step_0.json")]]
    return {"build": [build], "doctor": [python() + ["-m", "pdr.doctor"]], "tests": [python() + ["-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]],
            "bench_render": [bench_render], "bench_train_step": bench_train}


# --dry-run: overrides that shrink the shipped configs to a few seconds of CPU work
TINY = {
    "common": ["data.batch_size=1", "model.adapter.num_gaussians=16"],
    "simvp": ["model.backbone.hid_S=4", "model.backbone.hid_T=8", "model.backbone.N_S=2", "model.backbone.N_T=2"],
    "convlstm": ["model.backbone.num_hidden=[4,4]", "model.backbone.filter_size=3"],
}
TINY["tau"] = TINY["simvp"]


def train_step_rows(work: Path) -> dict:
    """The rows of every bench_train_step JSON of this check, in order."""
    rows = []
    for path in sorted(work.glob("bench_train_step_*.json"), key=lambda p: int(p.stem.rsplit("_", 1)[1])):
        rows += read_json(path).get("rows", [])
    return {"rows": rows}


def _comparison_sets(args, steps: int) -> list[str]:
    if args.dry_run:
        return [f"train.max_steps={steps}", f"data.root={args.mnist_root}", "data.num_train=4", "data.num_val=2",
                "data.num_test=4", "train.log_every=1", "eval.metrics=[mse,mae,psnr,ssim,sharpness,contrast]",
                *TINY["common"], *TINY["simvp"]]
    return [f"train.max_steps={steps}", f"data.root={args.mnist_root}", "data.num_test=1000", "data.num_val=200",
            "train.log_every=50", "eval.metrics=[mse,mae,psnr,ssim,lpips,sharpness,contrast]"]


def compare_command(args, work: Path, steps: int) -> list[str]:
    return python() + ["tools/compare.py", "--config", COMPARE_CONFIG, "--arms", "paper", "--only", *COMPARE_ARMS,
                       "--work-dir", str(work / "compare"), "--select", "last", "--device",
                       "cpu" if args.dry_run else "cuda", "--no-progress", "--set", *_comparison_sets(args, steps)]


def finetune_command(args, work: Path, steps: int) -> list[str]:
    """The fine-tune protocol from the compare step's MSE arm (its last checkpoint, the rule of both steps)."""
    return python() + ["tools/compare.py", "--config", COMPARE_CONFIG, "--arms", "finetune", "--only", *FINETUNE_ARMS,
                       "--base-from", str(work / "compare" / "mse" / "checkpoints" / "last.pt"),
                       "--work-dir", str(work / "finetune"), "--select", "last", "--device",
                       "cpu" if args.dry_run else "cuda", "--no-progress", "--set", *_comparison_sets(args, steps)]


def run_comparison(result: StepResult, command: list[str], folder: Path, out: Path, prefix: str, steps: int,
                   time_box: float, log, env: dict) -> None:
    """Run one comparison step; its table and prediction grid are copied into ``out`` as ``<prefix>.md`` and
    ``<prefix>_predictions.png``."""
    run_step(result, [command], time_box, log, env)
    result.results = {"steps_per_arm": steps, **read_json(folder / "comparison.json")}
    table = folder / "comparison.md"
    if table.is_file():
        result.results["table"] = table.read_text().strip()
        shutil.copy2(table, out / f"{prefix}.md")
    grid = folder / "comparison_predictions.png"
    if grid.is_file():
        shutil.copy2(grid, out / f"{prefix}_predictions.png")


def copy_digits(root: Path, source: Path | None) -> str | None:
    """Put the MNIST digits into ``root``, where the compare step reads them; None when they are there, else
    why not."""
    target = root / MNIST_FILE
    if target.is_file():
        return None
    if source is None:
        return f"no MNIST digits at {target} (pass --mnist-from FOLDER to copy them there)"
    if not (source / MNIST_FILE).is_file():
        return f"--mnist-from {source}: no {MNIST_FILE} there"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / MNIST_FILE, target)
    return None


def summary_markdown(results: dict[str, StepResult], env: dict, args, started: str, total: float) -> str:
    lines = ["# GPU check", "", f"Started {started}; {total:.0f} s in all{' (dry run on the CPU)' if args.dry_run else ''}.",
             "", f"GPU {env.get('gpu')} (compute capability {env.get('capability')}), driver {env.get('driver')}; "
             f"Python {env.get('python')}, torch {env.get('torch')}, CUDA {env.get('cuda')}.", ""]
    if env.get("missing_packages"):
        lines += [f"Missing packages: {', '.join(env['missing_packages'])}.", ""]
    lines += ["| step | status | seconds |", "|---|---|---|"]
    lines += [f"| {r.name} | {r.status} | {r.seconds:.1f} |" for r in results.values()]
    for r in results.values():
        body = r.results.get("table") or r.tail
        if body:
            lines += ["", f"## {r.name}", "", f"`{' '.join(r.command)}`" if r.command else "", "", body]
    return "\n".join(lines) + "\n"


def table_of(text: str) -> str:
    """The markdown table lines (and goal lines) of a tool's output."""
    return "\n".join(line for line in text.splitlines() if line.startswith("|") or line.startswith("goal "))


def main(argv=None) -> int:
    p = ArgumentParser(prog=program("gpu_check"), description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for summary.md, summary.json and log.txt")
    p.add_argument("--work-dir", type=Path, default=Path("runs/gpu_check"), help="folder for the compare runs")
    p.add_argument("--budget", type=float, help="seconds for all steps together (default 480; 1800 with --dry-run)")
    p.add_argument("--mnist-root", type=Path, default=MNIST_DIR,
                   help=f"folder of the MNIST digits ({MNIST_FILE}) for the compare step (default {MNIST_DIR})")
    p.add_argument("--mnist-from", type=Path, help=f"folder holding {MNIST_FILE}, copied into --mnist-root first")
    p.add_argument("--compare-steps", type=int, help="training steps per compare arm (default: what fits)")
    p.add_argument("--only", nargs="+", choices=STEPS, help="run only these steps")
    p.add_argument("--dry-run", action="store_true", help="every step on the CPU with every size shrunk")
    args = p.parse_args(argv)
    if args.budget is None:
        args.budget = 1800.0 if args.dry_run else 480.0
    started, t0 = time.strftime("%Y-%m-%d %H:%M:%S %Z"), time.perf_counter()
    out, work = args.out.resolve(), (REPO / args.work_dir).resolve()
    args.mnist_root = (REPO / args.mnist_root).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if work.exists():  # results of an earlier check must not pass for this one's
        shutil.rmtree(work)
    work.mkdir(parents=True)
    env_vars = dict(os.environ, PDR_OFFLINE="1", PYTHONUNBUFFERED="1")
    boxes = DRY_TIME_BOXES if args.dry_run else TIME_BOXES
    wanted = args.only or STEPS
    results = {name: StepResult(name) for name in STEPS if name in wanted}
    env: dict = {}

    with open(out / "log.txt", "w") as log:
        if "env" in results:
            start = time.perf_counter()
            env = environment()
            results["env"].status = "ok" if not env["missing_packages"] else "failed (missing packages)"
            if not args.dry_run and env["gpu"] is None:
                results["env"].status = "failed (torch sees no GPU)"
            results["env"].results = env
            results["env"].seconds = time.perf_counter() - start
            log.write(f"===== env\n{json.dumps(env, indent=1)}\n")
        if not args.dry_run and env.get("capability"):
            env_vars["TORCH_CUDA_ARCH_LIST"] = env["capability"]  # this GPU only: the build takes seconds, not minutes
        cmds = commands(args, work)
        for name in ("build", "doctor", "tests", "bench_render", "bench_train_step"):
            if name not in results:
                continue
            if time.perf_counter() - t0 > args.budget:
                results[name].status = "skipped: the budget is spent"
                continue
            output = run_step(results[name], cmds[name],
                              min(boxes[name], args.budget - (time.perf_counter() - t0)), log, env_vars)
            if name == "bench_render":
                results[name].results = read_json(work / "bench_render.json")
                results[name].results["table"] = table_of(output)
            elif name == "bench_train_step":
                results[name].results = train_step_rows(work)
                rows = [StepTiming(**row) for row in results[name].results["rows"]]
                results[name].results["table"] = "\n".join(format_rows(rows)) if rows else ""
        steps = None
        arms = len(COMPARE_ARMS) * ("compare" in results) + len(FINETUNE_ARMS) * ("finetune" in results)
        for name, command, prefix in (("compare", compare_command, "comparison"), ("finetune", finetune_command,
                                                                                     "finetune")):
            if name not in results:
                continue
            result = results[name]
            left = args.budget - (time.perf_counter() - t0)
            missing = copy_digits(args.mnist_root, args.mnist_from)
            base = work / "compare" / "mse" / "checkpoints" / "last.pt"
            if missing:
                result.status = f"skipped: {missing}"
            elif name == "finetune" and not base.is_file():
                result.status = "skipped: its base is the compare step's mse arm, which did not finish"
            elif left < MIN_COMPARE_S and not args.dry_run:
                result.status = f"skipped: {left:.0f} s left of the budget, under {MIN_COMPARE_S} s"
            else:
                # one budget per arm for both steps: the first step to run fixes it for the arms of both
                steps = steps or args.compare_steps or compare_steps(train_step_rows(work), left, args.dry_run, arms)
                time_box = max(left, MIN_COMPARE_S) if not args.dry_run else 900
                run_comparison(result, command(args, work, steps), work / name, out, prefix, steps, time_box, log,
                               env_vars)

    total = time.perf_counter() - t0
    (out / "summary.json").write_text(json.dumps({"started": started, "seconds": total, "dry_run": args.dry_run,
                                                  "steps": {k: asdict(v) for k, v in results.items()}}, indent=1))
    text = summary_markdown(results, env, args, started, total)
    (out / "summary.md").write_text(text)
    print(text)
    print(f"written: {', '.join(sorted(p.name for p in out.iterdir()))} in {out}")
    return 0 if all(r.status == "ok" for r in results.values()) else 1

