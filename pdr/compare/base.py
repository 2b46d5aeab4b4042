"""The base stage of the fine-tune protocol (``pdr.compare.finetune``): the model every arm starts from.

    from pdr.compare.base import BaseSpec, prepare_base
    base = prepare_base("configs/demo/simvp_predgs_conv.yaml", [], BaseSpec(steps=1200), Path("runs/ft/sprites"))

The base is the backbone alone with its own loss (``loss: mse`` unless ``BaseSpec.overrides`` says otherwise),
trained for ``BaseSpec.steps`` steps (best checkpoint by the base config's ``train.monitor``), or a given trained
model (``BaseSpec.source``: a PDR run folder or checkpoint, or an OpenSTL checkpoint). A trained base is a run folder
``<bases>/<name>`` named by its data, backbone, budget and a digest of its config: it is trained once, reused by every
comparison whose base has the same config, and resumed when interrupted. ``plateau`` says whether its validation
curve stopped improving; ``Base`` gives the comparison its row, notes and ``base_curve.png``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .arms import _flow
from ..config import Config, load_config
from ..errors import ConfigError
from ..wording import describe_budget

log = logging.getLogger("pdr")

# What makes a config the backbone alone: the base stage sets these after the comparison's --set overrides (the
# adapter's settings reset too, so that comparisons of other adapters share the base).
BASE_RESETS = ("model.adapter=null", "model.init_from=null", "model.freeze_backbone=false",
               "optim.adapter_lr_scale=1.0", "train.monitor_after=0")
BASE_LOSS = {"name": "mse"}
# The base's validation curve has reached a plateau when the best monitored value of its last quarter of steps
# improves on the best before it by less than this fraction.
PLATEAU_TOLERANCE = 0.02
PLATEAU_WINDOW = 0.25
BASE_ROW = "base"  # the folder, under the comparison, of a base imported from a given model
BASE_LABEL = "base (the model every arm starts from)"


@dataclass(frozen=True)
class BaseSpec:
    """Where the base comes from: trained for ``steps`` steps, or ``source`` (a trained PDR run folder or
    checkpoint, or an OpenSTL checkpoint). ``overrides``: ``KEY=VALUE`` settings of the base alone (after the
    comparison's, e.g. ``loss=l1``); ``bases``: the folder of trained bases (default: ``bases`` beside the
    comparison's folder)."""

    steps: int | None = None
    source: str | None = None
    overrides: tuple[str, ...] = ()
    bases: str | None = None

    def check(self) -> None:
        if (self.steps is None) == (self.source is None):
            raise ConfigError("the fine-tune protocol needs one base: --base-steps N (train it) or --base-from PATH "
                              "(a trained run folder or checkpoint, or an OpenSTL checkpoint), not both")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"--base-steps: expected a number of steps >= 1, got {self.steps}")
        if self.source is not None and not Path(self.source).exists():
            raise ConfigError(f"--base-from {self.source}: no such file or folder (expected a PDR run folder or "
                              "checkpoint, or an OpenSTL .pth/.ckpt)")


@dataclass(frozen=True)
class Plateau:
    """Whether a validation curve stopped improving: ``change`` is the relative improvement of the best
    ``monitor`` value at the steps of ``window`` (the last quarter of the run) over the best before them."""

    monitor: str
    window: tuple[int, int]
    change: float

    @property
    def reached(self) -> bool:
        return self.change < PLATEAU_TOLERANCE

    def describe(self) -> str:
        verdict = "a plateau" if self.reached else "NOT a plateau"
        first, last = self.window
        return (f"best {self.monitor} improved by {100 * self.change:.1f}% over steps {first}-{last} "
                f"(the last {PLATEAU_WINDOW:.0%} of its steps): {verdict} (tolerance {PLATEAU_TOLERANCE:.0%})")


@dataclass
class Base:
    """The base of a comparison: the run folder evaluated as its first row, what the arms load, and its curve."""

    folder: Path
    init_from: Path
    description: str
    status: str  # trained, resumed, reused (a finished base), given (imported from BaseSpec.source)
    history: list = field(default_factory=list)
    monitor: str = "val/mse"
    plateau: Plateau | None = None

    def row(self, metrics: Sequence[str], device, num_vis: int, lpips_model=None):
        """The base's RunResult on the comparison's test sequences (its best checkpoint)."""
        from ..results.evaluation import evaluate_run

        run = evaluate_run(self.folder, checkpoint="best", metrics=metrics, device=device, num_vis=num_vis,
                           lpips_model=lpips_model)
        run.name = BASE_LABEL
        return run

    def figures(self, work_dir: Path) -> list[Path]:
        """``base_curve.png`` in ``work_dir`` (nothing without a validation history)."""
        path = save_base_curve(self, Path(work_dir) / "base_curve.png")
        return [] if path is None else [path]

    def notes(self) -> list[str]:
        lines = [f"base: {self.description}; every arm starts from its weights ({self.init_from})"]
        if self.plateau is not None:
            lines.append(f"base curve: {self.plateau.describe()} (base_curve.png)")
        elif self.history:
            lines.append("base curve: too few validations to judge a plateau (base_curve.png)")
        else:
            lines.append("base curve: none (the given model has no validation history)")
        return lines


# ----------------------------------------------------------------------------- the base stage


def base_config(config: str | Path, overrides: Sequence[str], spec: BaseSpec) -> Config:
    """The base's config: the comparison's config and ``overrides``, the backbone alone (``BASE_RESETS``) with
    MSE, ``spec.steps`` steps, then ``spec.overrides``."""
    steps = [f"train.max_steps={spec.steps}"] if spec.steps is not None else []
    try:
        return load_config(config, [*overrides, *BASE_RESETS, f"loss={_flow(BASE_LOSS)}", *steps, *spec.overrides])
    except ConfigError as exc:
        raise ConfigError(f"the base: {exc}") from None


def _identity(cfg: Config) -> str:
    """A digest of what makes two bases the same model: the config without the keys a resume may change
    (``RESUMABLE_CHANGES``), the budget kept."""
    from ..engine.checkpoint import RESUMABLE_CHANGES

    ignore = [k for k in RESUMABLE_CHANGES if k not in ("train.epochs", "train.max_steps")]

    def keep(node: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in node.items():
            path = f"{prefix}{key}"
            if any(path == i or (i.endswith(".") and path.startswith(i)) for i in ignore):
                continue
            out[key] = keep(value, path + ".") if isinstance(value, dict) else value
        return out

    text = json.dumps(keep(dict(cfg)), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def base_folder(bases: Path, cfg: Config) -> Path:
    """``<bases>/<data>_<backbone>_<budget>_<digest>``: one folder per base config."""
    t = cfg["train"]
    budget = f"{t['max_steps']}steps" if t["max_steps"] else f"{t['epochs']}epochs"
    backbone = cfg["model"]["backbone"]["name"].replace(":", "-")
    return Path(bases) / f"{cfg['data']['name']}_{backbone}_{budget}_{_identity(cfg)}"


def plateau(history: Sequence[dict], monitor: str) -> Plateau | None:
    """The plateau check of a validation history (rows of metrics.csv with ``step`` and ``monitor``); None with
    fewer than two validations before the last quarter of the steps or none in it."""
    from ..metrics import higher_is_better

    rows = [r for r in history if r.get(monitor) is not None and math.isfinite(float(r[monitor]))]
    if not rows:
        return None
    last = max(int(r["step"]) for r in rows)
    start = last * (1.0 - PLATEAU_WINDOW)
    before = [float(r[monitor]) for r in rows if int(r["step"]) <= start]
    inside = [r for r in rows if int(r["step"]) > start]
    if len(before) < 2 or not inside:
        return None
    higher = higher_is_better(monitor.split("/")[-1])
    pick = max if higher else min
    old, new = pick(before), pick(float(r[monitor]) for r in inside)
    change = (new - old if higher else old - new) / max(abs(old), 1e-12)
    return Plateau(monitor, (int(inside[0]["step"]), last), change)


def _read_history(folder: Path) -> list[dict]:
    """The rows of a run folder's metrics.csv (``engine.metrics_file``: numbers as floats, empty cells left out),
    [] without one."""
    from ..engine.metrics_file import MetricsFile

    return MetricsFile(folder / "metrics.csv").rows()


def train_base(cfg: Config, folder: Path, device: str | None, show_progress: bool) -> str:
    """Train the base in ``folder``, resume it, or keep it when finished; returns trained, resumed or reused."""
    from .comparison import run_status
    from ..engine import Trainer

    status = run_status(folder, cfg)
    if status == "finished":
        log.info("base: finished run in %s, reused (trained once for every comparison with this base config)", folder)
        return "reused"
    log.info("base: %s %s (%s with %s)", "resuming" if status == "interrupted" else "training", folder,
             describe_budget(cfg["train"]), cfg["loss"]["name"])
    trainer = Trainer(cfg, folder, device=device, resume=status == "interrupted", overwrite=status == "new",
                      show_progress=show_progress)
    trainer.fit()
    return "resumed" if status == "interrupted" else "trained"


def import_base(source: str | Path, cfg: Config, folder: Path) -> None:
    """Write ``folder`` as a run folder of ``cfg`` at step 0 whose weights are the backbone of ``source`` (a PDR run
    folder or checkpoint, or an OpenSTL checkpoint, loaded as ``model.init_from`` loads it), so that the base row is
    evaluated like any run. The folder is rewritten when it holds another source or config."""
    from ..data import Normalisation, build_dataset
    from ..engine.checkpoint import config_differences, load_checkpoint, save_checkpoint
    from ..model import build_model
    from ..model.pretrained import load_backbone_weights

    ckpt = folder / "checkpoints" / "best.pt"
    if ckpt.is_file():
        state = load_checkpoint(ckpt)
        if state.get("base_source") == str(source) and not config_differences(state.get("config", {}), dict(cfg)):
            return
    model = build_model(cfg)
    load_backbone_weights(model, source, strict=cfg["model"]["init_strict"])
    mean, std = Normalisation.of(build_dataset(cfg, "train")).plain_stats()
    state = {"model": model.state_dict(), "config": dict(cfg), "data_stats": {"mean": mean, "std": std},
             "epoch": 0, "batch_in_epoch": 0, "global_step": 0, "best": None, "history": [],
             "base_source": str(source), "resolved": model.resolved_choices()}
    folder.mkdir(parents=True, exist_ok=True)
    cfg.save(folder / "config.yaml")
    save_checkpoint(state, ckpt)


def prepare_base(config: str | Path, overrides: Sequence[str], spec: BaseSpec, work_dir: Path,
                 device: str | None = None, show_progress: bool = True) -> Base:
    """Train, resume or reuse the base of ``spec`` (or import a given one) and read its validation curve."""
    spec.check()
    cfg = base_config(config, overrides, spec)
    backbone = cfg["model"]["backbone"]["name"]
    monitor = cfg["train"]["monitor"]
    if spec.source is not None:
        folder = work_dir / BASE_ROW
        import_base(spec.source, cfg, folder)
        source = Path(spec.source)
        history = _read_history(source) if source.is_dir() else []
        return Base(folder, source, f"{backbone} from {source} (given)", "given", history, monitor,
                    plateau(history, monitor))
    bases = Path(spec.bases) if spec.bases else work_dir.parent / "bases"
    folder = base_folder(bases, cfg)
    status = train_base(cfg, folder, device, show_progress)
    history = _read_history(folder)
    description = (f"{backbone} + {cfg['loss']['name']}, {spec.steps} steps, best by {monitor} ({folder}, {status})")
    base = Base(folder, folder / "checkpoints" / "best.pt", description, status, history, monitor,
                plateau(history, monitor))
    if base.plateau is not None and not base.plateau.reached:
        log.warning("base %s: %s; a base that is still improving measures an under-trained backbone, not the "
                    "adapter: give it more steps (--base-steps)", folder, base.plateau.describe())
    return base


def save_base_curve(base: Base, path: Path) -> Path | None:
    """The base's validation curve with the plateau window shaded (None without a history)."""
    from ..visualize import save_validation_curve

    rows = [r for r in base.history if isinstance(r.get(base.monitor), float)]
    if not rows:
        return None
    title = f"base: {base.monitor} on the validation split"
    if base.plateau is not None:
        title += f"\n{base.plateau.describe()}"
    return save_validation_curve(path, [int(r["step"]) for r in rows], [r[base.monitor] for r in rows],
                                 base.monitor, base.plateau.window if base.plateau else None, title)
