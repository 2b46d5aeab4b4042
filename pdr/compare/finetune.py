"""The fine-tune protocol of a comparison: one base model (``pdr.compare.base``), then every arm starts from
it.

    from pdr.compare.base import BaseSpec
    from pdr.compare.finetune import compare_finetune, finetune_arms
    arms = finetune_arms(load_config("configs/demo/simvp_predgs_conv.yaml"))
    result = compare_finetune("configs/demo/simvp_predgs_conv.yaml", arms, "runs/ft", BaseSpec(steps=1200),
                              overrides=["train.max_steps=300"])

Most users meet an adapter with a predictor they already trained. The comparison that tells whether the adapter
sharpens it starts every arm from that same trained model: every arm loads the base's weights
(``model.init_from``) and runs the comparison's own budget (``train.max_steps``) with a fresh optimiser and the
fine-tuning schedule (``FINETUNE_SCHEDULE``: no warm-up, a tenth of the config's learning rate, cosine decay;
``--set schedule... optim.lr=...`` changes it for every arm), and otherwise runs as any arm of
``pdr.compare.compare``: same data, seed, budget and checkpoint rule, resumed when interrupted. The table gets the
base itself as its first row; the notes say where the base came from, whether its validation curve reached a
plateau, and what each arm changes. ``finetune_arms`` is the built-in arm set ``finetune``.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

from .arms import Arm, _flow, paper_adapter
from .base import BASE_LOSS, BaseSpec, base_config, prepare_base
from ..config import Config, load_config

log = logging.getLogger("pdr")

# The schedule of every fine-tuning arm, unless --set changes it: no warm-up, a tenth of the config's learning
# rate (the peak of training from scratch), cosine decay to zero (docs/ablations.md, section 17).
FINETUNE_SCHEDULE = ("schedule={name: cosine, warmup_steps: 0, min_lr_ratio: 0.0}",)
FINETUNE_LR_FACTOR = 0.1


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
    from ..engine.optim import describe_schedule

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
    from ..model import data_shape
    from ..registry import ADAPTERS

    args = {k: v for k, v in spec.items() if k != "name"}
    adapter = ADAPTERS.build(spec["name"], frame_shape=data_shape(cfg), feature_channels=None, **args)
    return sum(p.numel() for p in adapter.parameters())


def matched_refiner(cfg: Config, predgs: dict) -> dict:
    """The control adapter of ``predgs``'s arms: a ``conv_refiner`` with its pool and the width whose parameter
    count is closest to PredGS's."""
    from ..adapters.refiner import matching_hidden
    from ..model import data_shape

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
        backbone = "frozen" if frozen else "trained"
        return Arm(name, sets, f"{words}, backbone {backbone}, loss {_loss_words(cfg['loss'])}")

    control = f"conv_refiner control (no Gaussians, {n_refiner:,} parameters)"
    return [
        Arm("mse", ("model.adapter=null", f"loss={_flow(BASE_LOSS)}"), "no adapter, backbone trained on with mse"),
        Arm("loss_only", ("model.adapter=null", f"loss={loss}"),
            f"no adapter, backbone trained, loss {_loss_words(cfg['loss'])}"),
        adapter_arm("refiner", refiner, True, control),
        adapter_arm("predgs", predgs, True, f"PredGS ({n_predgs:,} parameters)"),
        adapter_arm("refiner_trained", refiner, False, control),
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
                     base_only: bool = False, overwrite: bool = False):
    """Prepare the base (``prepare_base``), then train and compare ``arms`` from it with ``pdr.compare.compare``;
    returns its ComparisonResult (None with ``base_only``: the base alone is trained). ``overwrite`` trains every
    arm again; a trained base is kept."""
    from .comparison import arm_configs, compare
    from ..engine.optim import describe_schedule

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
    log.info("fine-tuning schedule of every arm: %s (a fresh optimiser; the base's own schedule is not continued)",
             describe_schedule(load_config(config, arm_overrides)))
    arms = describe_arms(config, arms, arm_overrides)
    return compare(config, arms, work_dir, arm_overrides, select=select, monitor=monitor, device=device,
                   num_vis=num_vis, show_progress=show_progress, overwrite=overwrite, start=base)
