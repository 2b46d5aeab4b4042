"""tools/predict.py (pdr-predict): predict the future of new clips with a trained run.

    pdr-predict runs/my_run --input clip.mp4 frames_folder/ clips.npy --out predictions [--frames 20]

Inputs: video files (mp4, avi, ..., gif), folders of frames (png, jpg) and arrays (.npy, .npz), or folders of them.
The run's first T_in observed frames of each clip are its input; ``--frames N`` future frames are predicted (the
run's T_out by default, more are rolled out from its own predictions). Writes OUT/<clip>/pred_XXX.png (or
OUT/<clip>/pred.npy with ``--format npy``, in the data's units), OUT/<clip>.gif (observed frames, then the
prediction, beside the truth when the clip has more frames) and OUT/metrics.json (MSE, MAE, PSNR, SSIM per clip
and their mean) when some clip has frames after its observed ones.
"""
from __future__ import annotations

import argparse

from .common import ArgumentParser, friendly_errors, program, setup_logging


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog=program("predict"), description=__doc__.split("\n")[0])
    p.add_argument("run", help="a run folder of tools/train.py, or a checkpoint file")
    p.add_argument("--input", nargs="+", required=True, metavar="PATH",
                   help="video files, gifs, frame folders, .npy/.npz arrays, or folders of them")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--frames", type=int, metavar="N", help="future frames to predict (default: the run's T_out)")
    p.add_argument("--format", default="png", choices=("png", "npy"), help="how the predicted frames are written")
    p.add_argument("--checkpoint", default="best", help="which checkpoint of a run folder: best (default) or last")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--batch-size", type=int, default=8, help="clips predicted together")
    p.add_argument("--seed", type=int, default=0, help="random seed of stochastic models")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


@friendly_errors
def main(argv=None) -> int:
    args = parser().parse_args(argv)
    setup_logging()
    import torch

    from ..results.clip_io import find_sources
    from ..results.load import load_run
    from ..results.prediction import predict_clips
    from ..runtime import resolve_device

    sources = find_sources(args.input)  # a wrong path is reported before the model is loaded
    model = load_run(args.run, args.checkpoint, device=resolve_device(args.device))
    torch.manual_seed(args.seed)
    report = predict_clips(model, sources, args.out, args.frames, args.format, args.batch_size,
                           progress=not args.no_progress)
    mean = report["mean"]
    summary = " ".join(f"{k}={v:.5g}" for k, v in mean.items()) or "no frames after the observed ones to score"
    print(f"{len(report['clips'])} clip(s), {report['predicted_frames']} frames each -> {args.out}: {summary}")
    return 0
