"""Train variants ("arms") of one config the same way and compare them in one table.

    from pdr.compare import compare, resolve_arms
    arms = resolve_arms("paper", "configs/demo/simvp_predgs.yaml")
    result = compare("configs/demo/simvp_predgs.yaml", arms, "runs/demo", overrides=["train.max_steps=350"])

An arm is a name and a list of ``--set`` overrides applied after the base config and the overrides shared by
every arm. Arms may change the model and the loss, never what makes the comparison fair: the data, the seed,
the budget and the checkpoint rule (``SHARED_KEYS``) are the base config's for every arm, and every arm's
checkpoint is picked the same way (``select="best"`` by one monitored value for all arms, overriding each
config's own ``train.monitor``, or ``select="last"``).

Each arm is an ordinary run folder ``<work_dir>/<arm>`` (``tools/eval.py`` works on it). A folder that holds
the finished run of the same config is not retrained; an interrupted one resumes from ``checkpoints/last.pt``;
a folder that holds a run of another config is an error. Rerunning an interrupted comparison finishes it.

Outputs in ``work_dir``:

* ``comparison.md``, ``comparison.csv``, ``comparison.json``: one row per arm, then the trivial predictions
  (``TRIVIAL_ROWS``) on the same test sequences, and notes (the checkpoint rule, each arm's overrides);
* ``comparison_per_frame.png``: every metric per predicted frame, all arms in each panel;
* ``comparison_predictions.png``: the same test sequences, one row per arm, adjacent.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import yaml

from .config import Config, load_config, parse_override
from .errors import ConfigError, PDRError
from .model import data_shape

log = logging.getLogger("pdr")

BUILTIN_ARM_SETS = ("paper",)
# Keys (and their sub-keys) that every arm takes from the base config: an arm may not set them.
SHARED_KEYS = ("data", "train.seed", "train.epochs", "train.max_steps", "train.accumulate_steps", "train.monitor",
               "train.deterministic", "train.max_val_batches", "train.val_every", "eval")
SELECT_RULES = ("best", "last")
# PredGS settings of the paper arms when the base config has no adapter, by the larger frame side: those of
# the benchmark configs (configs/*/simvp_predgs.yaml); pool brings every frame to 16x16 before the heads.
DEFAULT_PREDGS = {
    32: {"name": "predgs", "num_gaussians": 300, "kernel_size": 15, "pool": 2, "hidden": 128},
    64: {"name": "predgs", "num_gaussians": 400, "kernel_size": 15, "pool": 4, "hidden": 128},
    128: {"name": "predgs", "num_gaussians": 400, "kernel_size": 51, "pool": 8, "hidden": 128},
    256: {"name": "predgs", "num_gaussians": 400, "kernel_size": 51, "pool": 16, "hidden": 128},
}
PAPER_L1_SSIM = {"name": "l1_ssim", "lam": 0.5}
TRIVIAL_ROWS = {
    "background": "all background (no model)",
    "last_input": "last input repeated (no model)",
}
OUTPUT_STEM = "comparison"
_ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class Arm:
    """One variant: ``name`` (its run folder and table row), its ``--set`` overrides, what it is in words."""

    name: str
    overrides: tuple[str, ...] = ()
    description: str = ""


@dataclass
class ComparisonResult:
    results: list  # RunResult per arm, then per trivial prediction
    notes: list[str]
    files: list[Path] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)  # arms trained (or resumed) by this call
    reused: list[str] = field(default_factory=list)  # arms whose finished run was kept


# ----------------------------------------------------------------------------- arms


def _flow(value) -> str:
    """A value as one line of YAML, for a ``KEY=VALUE`` override."""
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6).strip()


def paper_adapter(cfg: Config, adapter_overrides: Sequence[str] = ()) -> dict:
    """PredGS settings of the paper arms: the base config's adapter, else ``DEFAULT_PREDGS`` for its frame size;
    ``adapter_overrides`` (``KEY=VALUE`` such as ``pool=4``) change single settings of either."""
    spec = cfg["model"].get("adapter")
    if spec is None:
        c, h, w = data_shape(cfg)
        if max(h, w) not in DEFAULT_PREDGS and not adapter_overrides:
            raise ConfigError(
                f"{cfg.filename}: the paper arms need PredGS settings: the base config has no model.adapter and there "
                f"is no default for {h}x{w} frames (defaults for sides {sorted(DEFAULT_PREDGS)}); give them with "
                "--adapter KEY=VALUE ..., e.g. --adapter num_gaussians=400 kernel_size=15 pool=4 hidden=128"
            )
        spec = DEFAULT_PREDGS.get(max(h, w), {"name": "predgs"})
    spec = dict(spec)
    for text in adapter_overrides:
        key, value = parse_override(text)
        if "." in key:
            raise ConfigError(f"--adapter {text!r}: expected a PredGS argument such as pool=4, not a dotted key")
        spec[key] = value
    return spec


def paper_arms(cfg: Config, adapter_overrides: Sequence[str] = ()) -> list[Arm]:
    """The paper's ablation: backbone + MSE, + L1/SSIM, + PredGS + L1/SSIM, + PredGS + MSE.

    L1/SSIM is the base config's ``l1_ssim`` loss when it has one, else ``PAPER_L1_SSIM``; PredGS as
    ``paper_adapter``."""
    backbone = cfg["model"]["backbone"]["name"]
    adapter = _flow(paper_adapter(cfg, adapter_overrides))
    l1_ssim = _flow(cfg["loss"] if cfg["loss"]["name"] == "l1_ssim" else PAPER_L1_SSIM)
    mse = _flow({"name": "mse"})
    return [
        Arm("mse", ("model.adapter=null", f"loss={mse}"), f"{backbone} + MSE"),
        Arm("l1_ssim", ("model.adapter=null", f"loss={l1_ssim}"), f"{backbone} + L1/SSIM"),
        Arm("predgs_l1_ssim", (f"model.adapter={adapter}", f"loss={l1_ssim}"), f"{backbone} + PredGS + L1/SSIM"),
        Arm("predgs_mse", (f"model.adapter={adapter}", f"loss={mse}"), f"{backbone} + PredGS + MSE"),
    ]


def arms_from_file(path: str | Path) -> list[Arm]:
    """Arms from a YAML mapping ``{arm name: [KEY=VALUE, ...]}`` or ``{arm name: {set: [...], description: ...}}``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--arms {path}: no such file (built-in arm sets: {', '.join(BUILTIN_ARM_SETS)})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: expected a mapping of arm names to lists of KEY=VALUE overrides")
    arms = []
    for name, spec in data.items():
        description = ""
        if isinstance(spec, dict):
            unknown = set(spec) - {"set", "description"}
            if unknown:
                raise ConfigError(f"{path}: arm {name!r}: unknown keys {sorted(unknown)} (expected set, description)")
            description, spec = str(spec.get("description", "")), spec.get("set", [])
        if spec is None:
            spec = []
        if not isinstance(spec, list) or not all(isinstance(s, str) for s in spec):
            raise ConfigError(f"{path}: arm {name!r}: expected a list of KEY=VALUE strings, got {spec!r}")
        arms.append(Arm(str(name), tuple(spec), description))
    return arms


def resolve_arms(spec: str, config: str | Path, overrides: Sequence[str] = (),
                 adapter_overrides: Sequence[str] = ()) -> list[Arm]:
    """The arms ``--arms`` names: a built-in set (``paper``) for this base config, or a YAML file of arms."""
    if spec == "paper":
        return paper_arms(load_config(config, overrides), adapter_overrides)
    if spec.endswith((".yaml", ".yml")) or Path(spec).is_file():
        return arms_from_file(spec)
    raise ConfigError(f"--arms {spec!r}: not a built-in arm set ({', '.join(BUILTIN_ARM_SETS)}) nor a YAML file")


def _check_arms(arms: Sequence[Arm]) -> None:
    if not arms:
        raise ConfigError("no arms to compare: give --arms paper, --arms FILE.yaml or --arm NAME KEY=VALUE ...")
    seen = set()
    for arm in arms:
        if not _ARM_NAME.match(arm.name):
            raise ConfigError(f"arm {arm.name!r}: a name is a folder name: letters, digits and _ . + - only")
        if arm.name in seen:
            raise ConfigError(f"arm {arm.name!r} is given twice; arm names must be unique")
        seen.add(arm.name)
        for text in arm.overrides:
            key, _ = parse_override(text)
            for shared in SHARED_KEYS:
                if key == shared or key.startswith(shared + ".") or shared.startswith(key + "."):
                    raise ConfigError(
                        f"arm {arm.name!r}: --set {text!r}: {shared} is shared by every arm (data, seed, budget and "
                        "checkpoint rule keep the comparison fair); set it with --set for all arms instead"
                    )


def arm_configs(config: str | Path, arms: Sequence[Arm], overrides: Sequence[str] = (),
                monitor: str | None = None) -> tuple[dict[str, Config], str]:
    """Every arm's resolved config, validated before anything is trained, and the monitor they share.

    The order of overrides: the base file, ``overrides`` (every arm), the arm's own, ``train.monitor``.
    A bad key or value raises ConfigError naming the arm."""
    from .metrics import monitor_names

    _check_arms(arms)
    base = load_config(config, overrides)
    monitor = monitor or base["train"]["monitor"]
    allowed = [name for name in monitor_names() if name.startswith("val/")]  # a validation value, as before
    if monitor not in allowed:
        raise ConfigError(f"--monitor {monitor!r}: expected one of {allowed}")
    configs = {}
    for arm in arms:
        try:
            configs[arm.name] = load_config(config, [*overrides, *arm.overrides, f"train.monitor={monitor}"])
        except ConfigError as exc:
            raise ConfigError(f"arm {arm.name!r}: {exc}") from None
    return configs, monitor


# ----------------------------------------------------------------------------- runs


def _training_finished(state: dict, cfg: Config) -> bool:
    """Whether a Trainer checkpoint is the end of the config's budget (Trainer._fit's loop condition)."""
    t = cfg["train"]
    if t["max_steps"]:
        return state["global_step"] >= t["max_steps"]
    return state["epoch"] >= t["epochs"]


def run_status(run_dir: Path, cfg: Config) -> str:
    """"new", "interrupted" (resume from last.pt) or "finished" for the run folder of an arm.

    A folder whose last.pt was written with another config (budget included) is an error: its results
    would not belong to this comparison."""
    from .engine.checkpoint import RESUMABLE_CHANGES, config_differences, load_checkpoint

    last = run_dir / "checkpoints" / "last.pt"
    if not last.is_file():
        return "new"
    state = load_checkpoint(last)
    ignore = tuple(k for k in RESUMABLE_CHANGES if k not in ("train.epochs", "train.max_steps"))
    diff = config_differences(state.get("config", {}), dict(cfg), ignore=ignore)
    if diff:
        raise PDRError(
            f"{run_dir} holds a run of another config (differing keys:\n  " + "\n  ".join(diff)
            + f"\n); delete {run_dir} or choose another --work-dir"
        )
    return "finished" if _training_finished(state, cfg) else "interrupted"


def train_arms(configs: dict[str, Config], work_dir: Path, device: str | None = None,
               show_progress: bool = True) -> tuple[list[str], list[str]]:
    """Train every arm that is not finished (resuming interrupted ones); returns (trained, reused) names."""
    from .engine import Trainer

    statuses = {name: run_status(work_dir / name, cfg) for name, cfg in configs.items()}  # all checks first
    trained, reused = [], []
    for name, cfg in configs.items():
        status = statuses[name]
        if status == "finished":
            log.info("arm %s: finished run in %s, not retrained", name, work_dir / name)
            reused.append(name)
            continue
        log.info("arm %s: %s", name, "resuming" if status == "interrupted" else "training")
        trainer = Trainer(cfg, work_dir / name, device=device, resume=status == "interrupted",
                          overwrite=status == "new", show_progress=show_progress)
        trainer.fit()
        trained.append(name)
    return trained, reused


# ----------------------------------------------------------------------------- trivial predictions


def background_value(dataset) -> np.ndarray:
    """The value of an empty frame in the dataset's units, per channel: ``dataset.background`` (raw units,
    a float or one per channel; 0 when the dataset does not say) normalised like the data."""
    raw = np.asarray(getattr(dataset, "background", 0.0) or 0.0, dtype=np.float64).reshape(-1)
    mean = np.asarray(0.0 if dataset.mean is None else dataset.mean, dtype=np.float64).reshape(-1)
    std = np.asarray(1.0 if dataset.std is None else dataset.std, dtype=np.float64).reshape(-1)
    return (raw - mean) / std


def trivial_predictions(x: torch.Tensor, y: torch.Tensor, background: np.ndarray) -> dict[str, torch.Tensor]:
    """Predictions without a model, for inputs x (B, T_in, C, H, W) and targets y (B, T_out, C, H, W):
    ``background`` every pixel the background value (C,) or scalar, ``last_input`` the last observed frame."""
    fill = torch.as_tensor(background, dtype=y.dtype).reshape(1, 1, -1, 1, 1)
    return {"background": fill.expand_as(y).clone(), "last_input": x[:, -1:].expand_as(y).clone()}


@torch.no_grad()
def evaluate_trivial(cfg: Config, metrics: Sequence[str], split: str = "test", device="cpu", lpips_model=None,
                     num_vis: int = 0) -> list:
    """RunResults of the trivial predictions on the sequences ``evaluate_run`` uses for ``cfg``."""
    from .data import build_dataset, build_eval_loader, split_batch
    from .evaluation import RunResult, _denormalise_for_display
    from .metrics import MetricAccumulator

    dataset = build_dataset(cfg, split)
    background = background_value(dataset)
    loader = build_eval_loader(dataset, cfg["data"]["eval_batch_size"] or cfg["data"]["batch_size"],
                               cfg["data"]["num_workers"])
    options = {"lpips_model": lpips_model, "device": device, **loader.normalisation.metric_options()}
    accs = {k: MetricAccumulator(metrics, **options) for k in TRIVIAL_ROWS}
    shown: dict[str, list] = {k: [] for k in TRIVIAL_ROWS}
    max_batches = cfg["eval"]["max_batches"]
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        x, y, _ = split_batch(batch)
        for key, pred in trivial_predictions(x, y, background).items():
            accs[key].update(pred, y)
            if sum(len(p) for p in shown[key]) < num_vis:
                shown[key].append(pred.numpy())
    results = []
    for key, label in TRIVIAL_ROWS.items():
        values = accs[key].compute(per_frame=True)
        scalars = {m: v for m, v in values.items() if not m.endswith("_per_frame")}
        curves = {m: values[f"{m}_per_frame"] for m in metrics if values.get(f"{m}_per_frame") is not None}
        run = RunResult(name=label, metrics=scalars, notes=dict(accs[key].notes), per_frame=curves)
        if shown[key]:
            run.shown = (None, None, _denormalise_for_display(np.concatenate(shown[key])[:num_vis], dataset))
        results.append(run)
    return results


# ----------------------------------------------------------------------------- the comparison


def _write_outputs(result: ComparisonResult, work_dir: Path, arms: Sequence[Arm]) -> list[Path]:
    from .cli.eval import COLUMNS, format_table
    from .visualize import save_metric_curves, save_prediction_grid

    stem = work_dir / OUTPUT_STEM
    md = format_table(result.results, "md") + "".join(f"\nNote: {n}" for n in result.notes)
    files = [stem.with_suffix(".md"), stem.with_suffix(".csv"), stem.with_suffix(".json")]
    files[0].write_text(md + "\n")
    files[1].write_text(format_table(result.results, "csv") + "\n")
    record = {"arms": [{"name": a.name, "description": a.description, "set": list(a.overrides)} for a in arms],
              "rows": json.loads(format_table(result.results, "json")), "notes": result.notes}
    files[2].write_text(json.dumps(record, indent=2, default=float) + "\n")

    metrics = [m for m in COLUMNS if any(m in r.per_frame for r in result.results)]
    curves = {m: {r.name: r.per_frame[m] for r in result.results if m in r.per_frame} for m in metrics}
    files.append(save_metric_curves(stem.with_name(f"{OUTPUT_STEM}_per_frame.png"), curves,
                                    title="per predicted frame, same test sequences"))
    with_images = [r for r in result.results if r.shown is not None]
    first = next((r for r in with_images if r.shown[0] is not None), None)
    if first is not None:
        inputs, truth, _ = first.shown
        preds = {r.name: r.shown[2] for r in with_images}
        files.append(save_prediction_grid(stem.with_name(f"{OUTPUT_STEM}_predictions.png"), inputs, truth, preds,
                                          title="the same test sequences, one row per arm"))
    return files


def compare(config: str | Path, arms: Sequence[Arm], work_dir: str | Path, overrides: Sequence[str] = (),
            select: str = "best", monitor: str | None = None, device: str = "auto", num_vis: int | None = None,
            show_progress: bool = True) -> ComparisonResult:
    """Train (or resume, or reuse) every arm in ``work_dir/<arm>``, evaluate all on the same test sequences
    and write the table and figures (see the module docstring). ``select``: "best" (checkpoint with the best
    ``monitor``, default the base config's ``train.monitor``, the same for every arm) or "last"."""
    from .runtime import resolve_device
    from .evaluation import evaluate_run
    from .metrics import load_lpips

    if select not in SELECT_RULES:
        raise ConfigError(f"select: expected one of {list(SELECT_RULES)}, got {select!r}")
    configs, monitor = arm_configs(config, arms, overrides, monitor)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    trained, reused = train_arms(configs, work_dir, device, show_progress)

    dev = resolve_device(device)
    base = next(iter(configs.values()))
    metrics = list(base["eval"]["metrics"])
    num_vis = base["eval"]["num_vis"] if num_vis is None else num_vis
    lpips_model = load_lpips(dev)[0] if "lpips" in metrics else None
    results = [evaluate_run(work_dir / arm.name, checkpoint=select, metrics=metrics, device=dev, num_vis=num_vis,
                            lpips_model=lpips_model) for arm in arms]
    results += evaluate_trivial(base, metrics, device=dev, lpips_model=lpips_model, num_vis=num_vis)

    rule = (f"every arm's checkpoint is the best by {monitor} on the validation split (checkpoints/best.pt)"
            if select == "best" else "every arm's checkpoint is its last step (checkpoints/last.pt)")
    t = base["train"]
    budget = f"{t['max_steps']} steps" if t["max_steps"] else f"{t['epochs']} epochs"
    notes = sorted({n for r in results for n in r.notes.values()})
    notes += [f"{rule}; the same data, seed {t['seed']} and budget ({budget}, batch {base['data']['batch_size']}) "
              "for every arm; all rows on the same test sequences"]
    notes += [f"{a.name}: {a.description + ': ' if a.description else ''}{' '.join(a.overrides) or 'the base config'}"
              for a in arms]
    result = ComparisonResult(results=results, notes=notes, trained=trained, reused=reused)
    for r in results:  # the notes are gathered above, once
        r.notes = {}
    result.files = _write_outputs(result, work_dir, arms)
    return result
