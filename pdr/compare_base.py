"""The fine-tune protocol of a comparison: one base model, then every arm starts from it.

    from pdr.compare_base import BaseSpec, compare_finetune, finetune_arms
    spec = BaseSpec(steps=1500)   # or BaseSpec(source="runs/my_simvp") / an OpenSTL checkpoint
    arms = finetune_arms(load_config("configs/demo/simvp_predgs_conv.yaml"))
    result = compare_finetune("configs/demo/simvp_predgs_conv.yaml", arms, "runs/ft", spec,
                              overrides=["train.max_steps=300"])

Most users meet an adapter with a predictor they already trained. The comparison that tells whether the adapter
sharpens it starts every arm from that same trained model:

1. the base stage: the backbone alone with its own loss (``loss: mse`` unless ``BaseSpec.overrides`` says
   otherwise), trained for ``BaseSpec.steps`` steps (best checkpoint by the base config's ``train.monitor``), or a
   given trained model (``BaseSpec.source``: a PDR run folder or checkpoint, or an OpenSTL checkpoint). A trained
   base is a run folder ``<bases>/<name>`` named by its data, backbone, budget and a digest of its config: it is
   trained once, reused by every comparison whose base has the same config, and resumed when interrupted;
2. every arm starts from the base's weights (``model.init_from``) for the comparison's own budget
   (``train.max_steps``) with a fresh optimiser and the fine-tuning schedule (``FINETUNE_SCHEDULE``: no warm-up, a
   tenth of the config's learning rate, cosine decay; ``--set schedule... optim.lr=...`` changes it for every arm),
   and otherwise runs as any arm of ``pdr.compare.compare``: same data, seed, budget and checkpoint rule, resumed
   when interrupted;
3. the table gets the base itself as its first row, the notes say where the base came from and whether its
   validation curve reached a plateau (``plateau``), and ``base_curve.png`` shows that curve.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import yaml

from .compare_arms import Arm, _flow, paper_adapter
from .config import Config, load_config
from .errors import ConfigError

log = logging.getLogger("pdr")

# What makes a config the backbone alone: the base stage sets these after the comparison's --set overrides (the
# adapter's settings reset too, so that comparisons of other adapters share the base).
BASE_RESETS = ("model.adapter=null", "model.init_from=null", "model.freeze_backbone=false", "optim.adapter_lr_scale=1.0",
               "train.monitor_after=0")
BASE_LOSS = {"name": "mse"}
# The schedule of every fine-tuning arm, unless --set changes it: no warm-up, a tenth of the config's learning
# rate (the peak of training from scratch), cosine decay to zero (docs/ablations.md, section 17).
FINETUNE_SCHEDULE = ("schedule={name: cosine, warmup_steps: 0, min_lr_ratio: 0.0}",)
FINETUNE_LR_FACTOR = 0.1
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
        return (f"best {self.monitor} improved by {100 * self.change:.1f}% over steps {self.window[0]}-{self.window[1]} "
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
        from .evaluation import evaluate_run

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
    from .engine.checkpoint import RESUMABLE_CHANGES

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
    from .metrics import higher_is_better

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
    """The validation rows of a run folder's metrics.csv (numbers as floats), [] without one."""
    import csv

    path = folder / "metrics.csv"
    if not path.is_file():
        return []
    rows = []
    with path.open() as fh:
        for row in csv.DictReader(fh):
            rows.append({k: _number(v) for k, v in row.items()})
    return rows


def _number(text: str):
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def train_base(cfg: Config, folder: Path, device: str | None, show_progress: bool) -> str:
    """Train the base in ``folder``, resume it, or keep it when finished; returns trained, resumed or reused."""
    from .compare import run_status
    from .engine import Trainer

    status = run_status(folder, cfg)
    if status == "finished":
        log.info("base: finished run in %s, reused (trained once for every comparison with this base config)", folder)
        return "reused"
    log.info("base: %s %s (%s steps with %s)", "resuming" if status == "interrupted" else "training", folder,
             cfg["train"]["max_steps"] or f"{cfg['train']['epochs']} epochs of", cfg["loss"]["name"])
    trainer = Trainer(cfg, folder, device=device, resume=status == "interrupted", overwrite=status == "new",
                      show_progress=show_progress)
    trainer.fit()
    return "resumed" if status == "interrupted" else "trained"


def import_base(source: str | Path, cfg: Config, folder: Path) -> None:
    """Write ``folder`` as a run folder of ``cfg`` at step 0 whose weights are the backbone of ``source`` (a PDR run
    folder or checkpoint, or an OpenSTL checkpoint, loaded as ``model.init_from`` loads it), so that the base row is
    evaluated like any run. The folder is rewritten when it holds another source or config."""
    from .data import Normalisation, build_dataset
    from .engine.checkpoint import config_differences, load_checkpoint, save_checkpoint
    from .model import build_model
    from .pretrained import load_backbone_weights

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
    from .visualize import save_validation_curve

    rows = [r for r in base.history if isinstance(r.get(base.monitor), float)]
    if not rows:
        return None
    title = f"base: {base.monitor} on the validation split"
    if base.plateau is not None:
        title += f"\n{base.plateau.describe()}"
    return save_validation_curve(path, [int(r["step"]) for r in rows], [r[base.monitor] for r in rows],
                                 base.monitor, base.plateau.window if base.plateau else None, title)


def finetune_overrides(config: str | Path, init_from: Path, overrides: Sequence[str] = ()) -> list[str]:
    """The overrides of every fine-tuning arm: ``FINETUNE_SCHEDULE`` and ``FINETUNE_LR_FACTOR`` times the config's
    ``optim.lr`` (which ``overrides`` may change), the comparison's ``overrides`` and the base's weights."""
    lr = load_config(config, overrides)["optim"]["lr"]
    return [*FINETUNE_SCHEDULE, f"optim.lr={lr * FINETUNE_LR_FACTOR:g}", *overrides,
            f"model.init_from={json.dumps(str(init_from))}"]


# ----------------------------------------------------------------------------- the arms


def _loss_words(loss: dict) -> str:
    args = ", ".join(f"{k} {v}" for k, v in loss.items() if k != "name")
    return f"{loss['name']}" + (f" ({args})" if args else "")


def describe_arm(cfg: Config, shared: Config | None = None) -> str:
    """What an arm changes from its base, in words: the adapter, whether the backbone trains, the loss, and the
    schedule where it differs from ``shared`` (the config every arm shares)."""
    from .engine.optim import describe_schedule

    m = cfg["model"]
    adapter = m.get("adapter")
    what = "no adapter" if adapter is None else f"adapter {adapter['name']}"
    if adapter is not None and adapter.get("head") == "conv":
        what += " (conv heads)"
    backbone = "backbone frozen" if m["freeze_backbone"] else "backbone trained"
    words = f"{what}, {backbone}, loss {_loss_words(cfg['loss'])}"
    if shared is not None and describe_schedule(cfg) != describe_schedule(shared):
        words += f", schedule {describe_schedule(cfg)}"
    return words


def _adapter_parameters(cfg: Config, spec: dict) -> int:
    from .model import data_shape
    from .registry import ADAPTERS

    args = {k: v for k, v in spec.items() if k != "name"}
    adapter = ADAPTERS.build(spec["name"], frame_shape=data_shape(cfg), feature_channels=None, **args)
    return sum(p.numel() for p in adapter.parameters())


def matched_refiner(cfg: Config, predgs: dict) -> dict:
    """The control adapter of ``predgs``'s arms: a ``conv_refiner`` with its pool and the width whose parameter
    count is closest to PredGS's."""
    from .adapters.refiner import matching_hidden
    from .model import data_shape

    pool = int(predgs.get("pool", 2))
    channels = data_shape(cfg)[0]
    return {"name": "conv_refiner", "pool": pool,
            "hidden": matching_hidden(_adapter_parameters(cfg, predgs), channels, pool)}


def finetune_arms(cfg: Config, adapter_overrides: Sequence[str] = ()) -> list[Arm]:
    """The built-in arm set ``finetune``, each starting from the base: the backbone trained on with MSE and with
    the adapter arms' loss, the no-Gaussian control (``conv_refiner`` of PredGS's parameter count) and PredGS
    (the config's adapter, or ``compare_arms.paper_adapter``'s default), each with the backbone frozen and trained.
    The adapter arms and the loss-only arm use the config's loss (MSE in a config without another)."""
    predgs = paper_adapter(cfg, adapter_overrides)
    refiner = matched_refiner(cfg, predgs)
    loss = _flow(cfg["loss"])
    n_predgs, n_refiner = _adapter_parameters(cfg, predgs), _adapter_parameters(cfg, refiner)

    def adapter_arm(name, spec, frozen, words):
        sets = (f"model.adapter={_flow(spec)}", f"model.freeze_backbone={str(frozen).lower()}", f"loss={loss}")
        return Arm(name, sets, f"{words}, backbone {'frozen' if frozen else 'trained'}, loss {_loss_words(cfg['loss'])}")

    return [
        Arm("mse", ("model.adapter=null", f"loss={_flow(BASE_LOSS)}"), "no adapter, backbone trained on with mse"),
        Arm("loss_only", ("model.adapter=null", f"loss={loss}"),
            f"no adapter, backbone trained, loss {_loss_words(cfg['loss'])}"),
        adapter_arm("refiner", refiner, True, f"conv_refiner control (no Gaussians, {n_refiner:,} parameters)"),
        adapter_arm("predgs", predgs, True, f"PredGS ({n_predgs:,} parameters)"),
        adapter_arm("refiner_trained", refiner, False, f"conv_refiner control (no Gaussians, {n_refiner:,} parameters)"),
        adapter_arm("predgs_trained", predgs, False, f"PredGS ({n_predgs:,} parameters)"),
    ]


def describe_arms(config: str | Path, arms: Sequence[Arm], overrides: Sequence[str]) -> list[Arm]:
    """``arms`` with a description of what each changes where it has none."""
    shared = load_config(config, overrides)
    out = []
    for arm in arms:
        if not arm.description:
            arm = Arm(arm.name, arm.overrides, describe_arm(load_config(config, [*overrides, *arm.overrides]), shared))
        out.append(arm)
    return out


# ----------------------------------------------------------------------------- the comparison


def compare_finetune(config: str | Path, arms: Sequence[Arm], work_dir: str | Path, spec: BaseSpec,
                     overrides: Sequence[str] = (), select: str = "best", monitor: str | None = None,
                     device: str = "auto", num_vis: int | None = None, show_progress: bool = True,
                     base_only: bool = False):
    """Prepare the base (``prepare_base``), then train and compare ``arms`` from it with ``pdr.compare.compare``;
    returns its ComparisonResult (None with ``base_only``: the base alone is trained)."""
    from .compare import arm_configs, compare

    work_dir = Path(work_dir)
    spec.check()
    base_config(config, overrides, spec)  # a bad base or arm config is reported before anything trains
    if not base_only:
        arm_configs(config, arms, finetune_overrides(config, Path("base.pt"), overrides), monitor)
    base = prepare_base(config, overrides, spec, work_dir, device, show_progress)
    for line in base.notes():
        log.info(line)
    if base_only:
        return None
    arm_overrides = finetune_overrides(config, base.init_from, overrides)
    arm_cfg = load_config(config, arm_overrides)
    log.info("fine-tuning schedule of every arm: %s at lr %g (a fresh optimiser; the base's own schedule is not "
             "continued)", yaml.safe_dump(dict(arm_cfg["schedule"]), default_flow_style=True).strip(),
             arm_cfg["optim"]["lr"])
    arms = describe_arms(config, arms, arm_overrides)
    return compare(config, arms, work_dir, arm_overrides, select=select, monitor=monitor, device=device,
                   num_vis=num_vis, show_progress=show_progress, start=base)
