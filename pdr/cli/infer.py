"""Predict future frames of frame folders with a trained latent flow model (docs/latent_flow.md).

    python tools/infer.py --temporal-checkpoint runs/lf_joint/checkpoints/best.pt --video-folders data/videos \
        --img-h 128 --img-w 128 --num-input-frames 20 --num-pred-frames 12 --ttt --ttt-steps 10 \
        --output-dir runs/infer --device cpu

Writes <output_dir>/<video>/pred_XXX.png, <output_dir>/<video>.gif (inputs, then prediction | truth) and
<output_dir>/metrics.json (MSE / PSNR / SSIM per video and their mean, when the folder has frames after the
inputs).
"""
from __future__ import annotations

import argparse

from .common import ArgumentParser, friendly_errors, program, setup_logging


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog=program("infer"), description=__doc__.split("\n\n")[0])
    p.add_argument("--vae-checkpoint", default=None,
                   help="checkpoint of the vae phase (its VAE replaces that of a temporal-phase checkpoint)")
    p.add_argument("--temporal-checkpoint", required=True, help="checkpoint of the temporal or joint phase")
    p.add_argument("--video-folders", nargs="+", required=True,
                   help="folders of frames (one per video) or parent folders of such")
    p.add_argument("--img-h", type=int, default=128)
    p.add_argument("--img-w", type=int, default=128)
    p.add_argument("--num-input-frames", type=int, default=20)
    p.add_argument("--num-pred-frames", type=int, default=12)
    p.add_argument("--ttt", action="store_true", help="test-time training of the flow head per video")
    p.add_argument("--ttt-steps", type=int, default=10)
    p.add_argument("--ttt-lr", type=float, default=1e-4)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--device", default="cpu")
    return p


@friendly_errors
def main(argv=None) -> int:
    args = parser().parse_args(argv)
    setup_logging()
    import torch
    from ..data.videos import find_videos
    from ..errors import PDRError
    from ..results.inference import load_model, run_inference
    from ..runtime import resolve_device

    if args.num_input_frames < 2 or args.num_pred_frames < 1 or args.ttt_steps < 0:
        raise PDRError("--num-input-frames must be >= 2, --num-pred-frames >= 1 and --ttt-steps >= 0")
    device = resolve_device(args.device)
    videos = find_videos(args.video_folders, allow_files=True)
    model = load_model(args.temporal_checkpoint, args.vae_checkpoint, args.num_input_frames, args.num_pred_frames,
                       args.img_h, args.img_w, device)
    torch.manual_seed(0)
    report = run_inference(model, videos, args.output_dir, args.num_input_frames, args.num_pred_frames,
                           args.img_h, args.img_w, args.ttt, args.ttt_steps, args.ttt_lr, device)
    mean = report["mean"]
    summary = " ".join(f"{k}={v:.5g}" for k, v in mean.items()) or "no ground truth to score"
    print(f"{len(report['videos'])} videos -> {args.output_dir} (ttt={'on' if args.ttt else 'off'}): {summary}")
    return 0
