"""Predicting videos with a trained latent flow model, optionally with test-time training (tools/infer.py)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..backbones.latent_flow import LatentFlow
from ..backbones.latent_flow.phases import CHECKPOINT_ARGS, load_backbone_state, load_part
from ..backbones.latent_flow.ttt import predict_with_ttt
from ..engine.checkpoint import load_checkpoint
from ..errors import CheckpointError, DataError
from .clip_io import FrameSpec, read_clips, write_json, write_prediction
from .prediction import CLIP_METRICS, clip_metrics

log = logging.getLogger("pdr")


def load_model(temporal_checkpoint, vae_checkpoint=None, in_frames: int = 10, out_frames: int = 10,
               img_h: int = 128, img_w: int = 128, device="cpu"):
    """The model (backbone and adapter) of a temporal- or joint-phase checkpoint, for frames of img_h x img_w.

    The VAE weights of ``vae_checkpoint`` replace those of ``temporal_checkpoint`` unless the latter comes
    from the joint phase (its VAE was fine-tuned together with the temporal model; a note says so).
    """
    from ..model import create_model

    state = load_checkpoint(temporal_checkpoint)
    spec = dict(state.get("config", {}).get("model", {}).get("backbone") or {})
    if spec.get("name") != "latent_flow":
        raise CheckpointError(f"{temporal_checkpoint}: not a latent_flow checkpoint (backbone {spec.get('name')!r})")
    if spec.get("phase") == "vae":
        raise CheckpointError(f"{temporal_checkpoint}: a vae-phase checkpoint; --temporal_checkpoint needs the "
                              "checkpoint of the temporal or joint phase")
    for key in CHECKPOINT_ARGS:
        spec.pop(key, None)
    spec["perceptual"] = "none"  # no training losses at inference
    adapter = state["config"]["model"].get("adapter")
    channels = state["model"]["backbone.vae.encoder.0.weight"].shape[1]
    model = create_model(spec, (in_frames, channels, img_h, img_w), out_frames, adapter=adapter)
    weights = {k: v for k, v in state["model"].items() if not k.startswith("backbone.weighting.")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.startswith("backbone.weighting.")]
    if missing or unexpected:
        raise CheckpointError(f"{temporal_checkpoint}: weights do not fit a {img_h}x{img_w} model "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    if vae_checkpoint:
        if spec.get("phase") == "joint":
            log.info("--vae_checkpoint ignored: %s comes from the joint phase, its VAE was fine-tuned with the "
                     "temporal model", temporal_checkpoint)
        else:
            vae = load_backbone_state(vae_checkpoint, "--vae_checkpoint")
            load_part(model.backbone.vae, vae, "vae.", vae_checkpoint)
    assert isinstance(model.backbone, LatentFlow)
    return model.to(device).eval()


def run_inference(model, videos, out_dir: Path, in_frames: int, out_frames: int, img_h: int, img_w: int,
                  ttt: bool = False, ttt_steps: int = 10, ttt_lr: float = 1e-4, device="cpu") -> dict:
    """Predict every video; writes <out>/<video>/pred_XXX.png, <out>/<video>.gif and <out>/metrics.json (the
    reading and writing of pdr-predict, ``clip_io``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = FrameSpec(model.backbone.in_shape[1], img_h, img_w, uint8_scale=1 / 255)  # frames in [0, 1]
    per_video: dict[str, dict] = {}
    for video in videos:
        for clip in read_clips(video, spec, max_frames=in_frames + out_frames):
            if len(clip.frames) < in_frames:
                raise DataError(f"{video}: {len(clip.frames)} frames, fewer than --num_input_frames {in_frames}")
            x = torch.from_numpy(clip.frames[:in_frames]).unsqueeze(0).to(device)
            pred, history = predict_with_ttt(model, x, ttt_steps if ttt else 0, ttt_lr)
            pred = pred[0].cpu().numpy()
            truth = clip.frames[in_frames:]
            write_prediction(out_dir, clip.name, clip.frames[:in_frames], pred, truth if len(truth) else None, spec)
            row: dict = {"frames": len(clip.frames), "ttt_losses": history}
            if len(truth):
                row.update(clip_metrics(pred, truth), compared_frames=len(truth))
            per_video[clip.name] = row
            log.info("%s: %d frames predicted%s", clip.name, len(pred),
                     f", psnr {row['psnr']:.2f}" if "psnr" in row else " (no ground truth after the inputs)")
    scored = [r for r in per_video.values() if "mse" in r]
    mean = {k: float(np.mean([r[k] for r in scored])) for k in CLIP_METRICS} if scored else {}
    report = {"ttt": bool(ttt), "ttt_steps": int(ttt_steps) if ttt else 0, "num_input_frames": in_frames,
              "num_pred_frames": out_frames, "videos": per_video, "mean": mean}
    write_json(out_dir / "metrics.json", report)
    return report
