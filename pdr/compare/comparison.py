"""Train variants ("arms") of one config the same way and compare them in one table.

    from pdr.compare import compare, resolve_arms
    arms = resolve_arms("paper", "configs/demo/simvp_predgs.yaml")
    result = compare("configs/demo/simvp_predgs.yaml", arms, "runs/demo", overrides=["train.max_steps=350"])

An arm is a name and a list of ``--set`` overrides applied after the base config and the overrides shared by
every arm. Arms may change the model and the loss, never what makes the comparison fair: the data, the seed,
the budget and the checkpoint rule (``arms.SHARED_KEYS``) are the base config's for every arm, and every arm's
checkpoint is picked the same way (``select="best"`` by one monitored value for all arms, overriding each
config's own ``train.monitor``, or ``select="last"``).

Each arm is an ordinary run folder ``<work_dir>/<arm>`` (``tools/eval.py`` works on it). A folder that holds
the finished run of the same config is not retrained; an interrupted one resumes from ``checkpoints/last.pt``;
a folder that holds a run of another config is an error. Rerunning an interrupted comparison finishes it.

Outputs in ``work_dir``:

* ``comparison.md``, ``comparison.csv``, ``comparison.json``: one row per arm, then the trivial predictions
  (``trivial.TRIVIAL_ROWS``) on the same test sequences, and notes (the checkpoint rule, each arm's overrides);
* ``comparison_per_frame.png``: every metric per predicted frame, all arms in each panel (an arm of K sampled
  futures: its best-of-K and mean-of-K curves, as in the table);
* ``comparison_predictions.png``: the same test sequences, one row per arm, adjacent.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..config import Config, load_config
from ..errors import ConfigError, PDRError
from ..wording import describe_budget
from .arms import Arm, _check_arms
from .trivial import evaluate_trivial

log = logging.getLogger("pdr")

SELECT_RULES = ("best", "last")
OUTPUT_STEM = "comparison"


@dataclass
class ComparisonResult:
    results: list  # RunResult per arm, then per trivial prediction
    notes: list[str]
    files: list[Path] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)  # arms trained (or resumed) by this call
    reused: list[str] = field(default_factory=list)  # arms whose finished run was kept


# ----------------------------------------------------------------------------- the arms' configs


def arm_configs(config: str | Path, arms: Sequence[Arm], overrides: Sequence[str] = (),
                monitor: str | None = None) -> tuple[dict[str, Config], str]:
    """Every arm's resolved config, validated before anything is trained, and the monitor they share.

    The order of overrides: the base file, ``overrides`` (every arm), the arm's own, ``train.monitor``.
    A bad key or value raises ConfigError naming the arm."""
    from ..metrics import monitor_names

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
    from ..engine.checkpoint import RESUMABLE_CHANGES, config_differences, load_checkpoint

    last = run_dir / "checkpoints" / "last.pt"
    if not last.is_file():
        return "new"
    state = load_checkpoint(last)
    ignore = tuple(k for k in RESUMABLE_CHANGES if k not in ("train.epochs", "train.max_steps"))
    diff = config_differences(state.get("config", {}), dict(cfg), ignore=ignore)
    if diff:
        raise PDRError(
            f"{run_dir} holds a run of another config (differing keys:\n  " + "\n  ".join(diff)
            + f"\n); delete {run_dir}, choose another --work-dir or pass --overwrite to train every arm again"
        )
    return "finished" if _training_finished(state, cfg) else "interrupted"


def train_arms(configs: dict[str, Config], work_dir: Path, device: str | None = None,
               show_progress: bool = True, overwrite: bool = False) -> tuple[list[str], list[str]]:
    """Train every arm that is not finished (resuming interrupted ones), or with ``overwrite`` every arm from
    the start; returns (trained, reused) names."""
    from ..engine import Trainer

    statuses = {name: "new" if overwrite else run_status(work_dir / name, cfg)  # all checks first
                for name, cfg in configs.items()}
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


# ----------------------------------------------------------------------------- the comparison


def _write_outputs(result: ComparisonResult, work_dir: Path, arms: Sequence[Arm]) -> list[Path]:
    from ..results.table import comparison_curves, format_table
    from ..visualize import save_metric_curves, save_prediction_grid

    stem = work_dir / OUTPUT_STEM
    md = format_table(result.results, "md") + "".join(f"\nNote: {n}" for n in result.notes)
    files = [stem.with_suffix(".md"), stem.with_suffix(".csv"), stem.with_suffix(".json")]
    files[0].write_text(md + "\n")
    files[1].write_text(format_table(result.results, "csv") + "\n")
    record = {"arms": [{"name": a.name, "description": a.description, "set": list(a.overrides)} for a in arms],
              "rows": json.loads(format_table(result.results, "json")), "notes": result.notes}
    files[2].write_text(json.dumps(record, indent=2, default=float) + "\n")

    files.append(save_metric_curves(stem.with_name(f"{OUTPUT_STEM}_per_frame.png"), comparison_curves(result.results),
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
            show_progress: bool = True, overwrite: bool = False, start=None) -> ComparisonResult:
    """Train (or resume, or reuse) every arm in ``work_dir/<arm>``, evaluate all on the same test sequences
    and write the table and figures (see the module docstring). ``select``: "best" (checkpoint with the best
    ``monitor``, default the base config's ``train.monitor``, the same for every arm) or "last". ``overwrite``:
    train every arm again from the start instead of keeping finished runs. ``start``: the model every arm started
    from (``pdr.compare.base.Base``, the fine-tune protocol of ``pdr.compare.finetune``): its row comes first, its
    notes and validation curve are added."""
    from ..metrics import load_lpips
    from ..results.evaluation import evaluate_run
    from ..runtime import resolve_device

    if select not in SELECT_RULES:
        raise ConfigError(f"select: expected one of {list(SELECT_RULES)}, got {select!r}")
    configs, monitor = arm_configs(config, arms, overrides, monitor)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    trained, reused = train_arms(configs, work_dir, device, show_progress, overwrite)

    dev = resolve_device(device)
    base = next(iter(configs.values()))
    metrics = list(base["eval"]["metrics"])
    num_vis = base["eval"]["num_vis"] if num_vis is None else num_vis
    lpips_model = load_lpips(dev)[0] if "lpips" in metrics else None
    results = [evaluate_run(work_dir / arm.name, checkpoint=select, metrics=metrics, device=dev, num_vis=num_vis,
                            lpips_model=lpips_model, show_progress=show_progress) for arm in arms]
    results += evaluate_trivial(base, metrics, device=dev, lpips_model=lpips_model, num_vis=num_vis)
    if start is not None:
        results.insert(0, start.row(metrics, dev, num_vis, lpips_model))

    rule = (f"every arm's checkpoint is the best by {monitor} on the validation split (checkpoints/best.pt)"
            if select == "best" else "every arm's checkpoint is its last step (checkpoints/last.pt)")
    t = base["train"]
    notes = sorted({n for r in results for n in r.notes.values()})
    notes += [f"{rule}; the same data, seed {t['seed']} and budget ({describe_budget(t)}, batch "
              f"{base['data']['batch_size']}) for every arm; all rows on the same test sequences"]
    notes += start.notes() if start is not None else []
    notes += [f"{a.name}: {a.description + ': ' if a.description else ''}{' '.join(a.overrides) or 'the base config'}"
              for a in arms]
    result = ComparisonResult(results=results, notes=notes, trained=trained, reused=reused)
    for r in results:  # the notes are gathered above, once
        r.notes = {}
    result.files = _write_outputs(result, work_dir, arms)
    if start is not None:
        result.files += start.figures(work_dir)
    return result
