"""tools/predgs_share.py: how much of a trained PredGS model's output comes from the rendered Gaussians.

    python tools/predgs_share.py runs/demo/predgs_l1_ssim [more runs] [--checkpoint best|last] [--max-batches 4]

PredGS fuses the backbone's coarse frame c and the rendering r by a 1x1 convolution,
``out = W_c c + W_r r + b`` (``fusion: add``: ``out = c + r``, a ratio of 1). Per run, on the test split:

* ``|W_r|/|W_c|``: Frobenius norms of the fusion weights on the rendered and on the coarse channels;
* ``render share``: mean |W_r r| / (mean |W_c c + b| + mean |W_r r|) over pixels, the rendering's part of the output;
* ``|out - c|``: mean absolute change the adapter makes to the coarse frame (data units per pixel and channel);
* ``r mean``, ``r max``: the rendered image itself;
* ``MSE coarse``, ``MSE out``: MSE (OpenSTL convention) of the coarse frame and of the fused output.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .common import friendly_errors, setup_logging

COLUMNS = ("|W_r|/|W_c|", "render share", "|out - c|", "r mean", "r max", "MSE coarse", "MSE out")


def fusion_parts(adapter, coarse: torch.Tensor, features: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The terms of PredGS's output for coarse frames (B, T, C, H, W): ``coarse`` (W_c c + b), ``rendered``
    (W_r r) and ``render`` (r), each (B, T, C, H, W); ``coarse + rendered`` is the adapter's output."""
    render = adapter.render(coarse, features)
    if adapter.fusion_mode == "add":
        return {"coarse": coarse, "rendered": render, "render": render}
    c = coarse.shape[2]
    weight = adapter.fuse.weight[:, :, 0, 0]  # (C, 2C)
    bias = adapter.fuse.bias.view(1, 1, c, 1, 1)
    return {"coarse": torch.einsum("oc,btchw->btohw", weight[:, :c], coarse) + bias,
            "rendered": torch.einsum("oc,btchw->btohw", weight[:, c:], render), "render": render}


@torch.no_grad()
def render_share(run: str | Path, checkpoint: str = "best", max_batches: int | None = 4) -> dict[str, float]:
    """The values of ``COLUMNS`` for a PredGS run folder, on its test split."""
    from torch.utils.data import DataLoader

    from ..data import build_dataset
    from ..errors import PDRError
    from ..metrics import MetricAccumulator
    from ..results.load import load_run

    model = load_run(run, checkpoint)
    cfg = model.config
    adapter = model.adapter
    if adapter is None or not hasattr(adapter, "render"):
        raise PDRError(f"{run}: the model has no PredGS adapter")
    dataset = build_dataset(cfg, "test")
    loader = DataLoader(dataset, batch_size=cfg["data"]["eval_batch_size"] or cfg["data"]["batch_size"])
    acc = {k: MetricAccumulator(["mse"], mean=dataset.mean, std=dataset.std) for k in ("coarse", "out")}
    sums = dict.fromkeys(("coarse", "rendered", "change", "r_mean"), 0.0)
    r_max, count = float("-inf"), 0
    for i, (x, y, *_) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        out = model.backbone(x, return_features=adapter.needs_features)
        coarse, features = out.frames[:, : y.shape[1]], out.features
        parts = fusion_parts(adapter, coarse, features)
        fused = parts["coarse"] + parts["rendered"]
        if i == 0 and not torch.allclose(fused, model(x), atol=1e-4):  # the decomposition must be the model
            raise PDRError(f"{run}: coarse + rendered terms do not add up to the model's output (an autoregressive "
                           "backbone or another adapter?); the share cannot be measured this way")
        n = fused.numel()
        sums["coarse"] += parts["coarse"].abs().sum().item()
        sums["rendered"] += parts["rendered"].abs().sum().item()
        sums["change"] += (fused - coarse).abs().sum().item()
        sums["r_mean"] += parts["render"].sum().item()
        r_max = max(r_max, parts["render"].max().item())
        count += n
        acc["coarse"].update(coarse, y)
        acc["out"].update(fused, y)
    weight = adapter.fuse.weight[:, :, 0, 0] if adapter.fusion_mode == "conv" else None
    c = coarse.shape[2]
    ratio = (weight[:, c:].norm() / weight[:, :c].norm()).item() if weight is not None else 1.0  # add: W_r = W_c = I
    return {
        "|W_r|/|W_c|": ratio,
        "render share": sums["rendered"] / (sums["coarse"] + sums["rendered"]),
        "|out - c|": sums["change"] / count,
        "r mean": sums["r_mean"] / count,
        "r max": r_max,
        "MSE coarse": acc["coarse"].compute()["mse"],
        "MSE out": acc["out"].compute()["mse"],
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tools/predgs_share.py", description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="run folders of PredGS models")
    p.add_argument("--checkpoint", default="best", help="best (default) or last")
    p.add_argument("--max-batches", type=int, default=4, help="test batches to measure on (default 4)")
    return p


@friendly_errors
def main(argv=None) -> int:
    args = parser().parse_args(argv)
    setup_logging()
    print("| run | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for run in args.runs:
        values = render_share(run, args.checkpoint, args.max_batches)
        print(f"| {Path(run).name} | " + " | ".join(f"{values[k]:.4g}" for k in COLUMNS) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
