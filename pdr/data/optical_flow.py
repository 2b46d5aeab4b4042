"""Optical flow: backward warping, OpenCV Farneback, torchvision RAFT (cached weights only) and the
forward-backward consistency (visibility) mask.

Conventions (pixel units, channel 0 = dx, channel 1 = dy):
* ``forward[t]``  (2, H, W) on the grid of frame t: where each pixel of t moves to in t+1;
* ``backward[t]`` (2, H, W) on the grid of frame t+1: where each pixel of t+1 came from in t
  (the flow the latent flow model's flow head predicts); ``warp(src_t, backward[t])(p) = src_t(p + b(p))``
  (bilinear, border padding): a zero flow returns the source unchanged, a constant integer flow is an exact shift;
* ``visible[t]``  (1, H, W) on the grid of frame t+1: 1 where ``backward`` and ``forward`` agree
  (|b(p) + f(p + b(p))|^2 <= alpha (|b|^2 + |f(p + b(p))|^2) + beta), i.e. the pixel of t+1 was visible in t.

``compute_flows`` gives the flows of one video that ``tools/precompute_flow.py`` stores in the flow cache
(``pdr.data.flow_cache``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError
from ..optional import require


def base_grid(h: int, w: int, device=None, dtype=None) -> Tensor:
    """Pixel coordinates (1, 2, h, w): channel 0 is x (column), channel 1 is y (row)."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=dtype),
                            torch.arange(w, device=device, dtype=dtype), indexing="ij")
    return torch.stack([xs, ys]).unsqueeze(0)


def warp(src: Tensor, flow: Tensor, padding_mode: str = "border") -> Tensor:
    """Backward warp: src (B, C, h, w), flow (B, 2, h, w) in pixels -> (B, C, h, w)."""
    if src.dim() != 4 or flow.dim() != 4 or flow.shape[1] != 2 or flow.shape[-2:] != src.shape[-2:] \
            or flow.shape[0] != src.shape[0]:
        raise ValueError(f"warp: src (B, C, h, w) and flow (B, 2, h, w) must agree, got {tuple(src.shape)} "
                         f"and {tuple(flow.shape)}")
    h, w = src.shape[-2:]
    coords = base_grid(h, w, src.device, flow.dtype) + flow
    # normalise to [-1, 1] with align_corners=True: pixel 0 -> -1, pixel (n-1) -> 1
    gx = 2.0 * coords[:, 0] / max(w - 1, 1) - 1.0
    gy = 2.0 * coords[:, 1] / max(h - 1, 1) - 1.0
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(src, grid.to(src.dtype), mode="bilinear", padding_mode=padding_mode, align_corners=True)


def resize_flow(flow: Tensor, size: tuple[int, int]) -> Tensor:
    """Resample a flow (B, 2, H, W) in pixels to ``size = (h, w)``, rescaling the vectors to the new grid."""
    h0, w0 = flow.shape[-2:]
    if (h0, w0) == tuple(size):
        return flow
    shrinking = size[0] <= h0 and size[1] <= w0
    out = F.interpolate(flow, size=size, mode="area") if shrinking else \
        F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    scale = torch.tensor([size[1] / w0, size[0] / h0], device=flow.device, dtype=flow.dtype).view(1, 2, 1, 1)
    return out * scale


def _to_grey_uint8(frame: np.ndarray) -> np.ndarray:
    """(C, H, W) float in [0, 1] -> (H, W) uint8 luminance (or the single channel)."""
    img = np.clip(frame, 0.0, 1.0)
    img = img[0] if img.shape[0] == 1 else (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])
    return (img * 255.0 + 0.5).astype(np.uint8)


def farneback(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """Flow (2, H, W) on the grid of ``prev`` towards ``nxt``; both (H, W) uint8."""
    cv2 = require("cv2", "flow", "Farneback optical flow (OpenCV)")
    size = min(prev.shape)
    win = max(5, min(15, (size // 4) | 1))
    levels = 1 if size < 32 else 3
    flow = cv2.calcOpticalFlowFarneback(prev, nxt, None, 0.5, levels, win, 3, 5, 1.1, 0)
    return flow.transpose(2, 0, 1).astype(np.float32)


def visibility_mask(forward: Tensor, backward: Tensor, alpha: float = 0.01, beta: float = 0.5) -> Tensor:
    """Forward-backward consistency: forward, backward (N, 2, H, W) -> visible (N, 1, H, W) float in {0, 1}."""
    f_at = warp(forward, backward)  # forward flow of frame t read at p + b(p)
    diff = (backward + f_at).pow(2).sum(1, keepdim=True)
    bound = alpha * (backward.pow(2).sum(1, keepdim=True) + f_at.pow(2).sum(1, keepdim=True)) + beta
    return (diff <= bound).float()


def farneback_sequence(frames: Tensor) -> tuple[Tensor, Tensor]:
    """frames (B, T, C, H, W) in [0, 1] -> forward, backward flows, each (B, T-1, 2, H, W) float32 (CPU numpy
    through OpenCV; returned on the frames' device)."""
    arr = frames.detach().float().cpu().numpy()
    b, t = arr.shape[:2]
    fw = np.zeros((b, t - 1, 2, *arr.shape[-2:]), np.float32)
    bw = np.zeros_like(fw)
    for i in range(b):
        grey = [_to_grey_uint8(arr[i, k]) for k in range(t)]
        for k in range(t - 1):
            fw[i, k] = farneback(grey[k], grey[k + 1])
            bw[i, k] = farneback(grey[k + 1], grey[k])
    return torch.from_numpy(fw).to(frames.device), torch.from_numpy(bw).to(frames.device)


def flow_targets(frames: Tensor) -> tuple[Tensor, Tensor]:
    """Online targets of the flow and occlusion heads: frames (B, T, C, H, W) in [0, 1] ->
    backward flows (B, T-1, 2, H, W) and visibility masks (B, T-1, 1, H, W)."""
    fw, bw = farneback_sequence(frames)
    b, t1 = fw.shape[:2]
    visible = visibility_mask(fw.flatten(0, 1), bw.flatten(0, 1)).view(b, t1, 1, *fw.shape[-2:])
    return bw, visible


# ----------------------------------------------------------------------------- RAFT (cached weights only)

FLOW_METHODS = ("raft_large", "farneback")  # what a flow cache records (pdr.data.flow_cache)
METHOD_CHOICES = ("auto", *FLOW_METHODS)


def raft_weights_path() -> Path | None:
    """The cached torchvision RAFT-large weights (``<torch hub>/checkpoints/raft_large_*.pth``), or None."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(folder.glob("raft_large_*.pth")) if folder.is_dir() else []
    return found[-1] if found else None


def resolve_flow_method(method: str) -> str:
    """The one rule of tools/precompute_flow.py and the datasets that read its cache: "auto" is "raft_large" when
    the RAFT weights are in the torch hub cache and "farneback" otherwise; "raft" is "raft_large"; the two methods
    stay as they are. Anything else is a ValueError naming the choices."""
    if method == "raft":
        return "raft_large"
    if method == "auto":
        return "raft_large" if raft_weights_path() is not None else "farneback"
    if method not in FLOW_METHODS:
        raise ValueError(f"flow method must be one of {list(METHOD_CHOICES)}, got {method!r}")
    return method


def describe_flow_method(method: str) -> str:
    """``method`` and, for "auto", what it resolves to and why (for messages)."""
    if method != "auto":
        return method
    resolved = resolve_flow_method(method)
    why = "RAFT weights are cached" if resolved == "raft_large" else "no RAFT weights in the torch hub cache"
    return f"auto ({resolved}: {why})"


def load_raft(device="cpu"):
    """torchvision's RAFT large with its cached weights, or None when absent (nothing is downloaded)."""
    path = raft_weights_path()
    if path is None:
        return None
    from torchvision.models.optical_flow import raft_large

    model = raft_large(weights=None, progress=False)
    model.load_state_dict(torch.load(path, map_location="cpu"))
    return model.to(device).eval()


@torch.no_grad()
def raft_pair(model, prev: Tensor, nxt: Tensor) -> Tensor:
    """RAFT flow on the grid of ``prev`` towards ``nxt``: (N, 3, H, W) in [0, 1] -> (N, 2, H, W).
    Frames are padded to a multiple of 8 and at least 128 pixels a side."""
    h, w = prev.shape[-2:]
    th, tw = max(128, -(-h // 8) * 8), max(128, -(-w // 8) * 8)
    a = F.interpolate(prev, size=(th, tw), mode="bilinear", align_corners=False) * 2 - 1
    b = F.interpolate(nxt, size=(th, tw), mode="bilinear", align_corners=False) * 2 - 1
    flow = model(a, b)[-1]
    flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
    return flow * torch.tensor([w / tw, h / th], device=flow.device).view(1, 2, 1, 1)


def compute_flows(frames: np.ndarray, method: str = "auto", device="cpu", raft=None) -> dict:
    """Flows of one video: uint8 frames (T, H, W, 3) -> {"forward", "backward", "visible", "method"}.

    ``method``: "raft_large" (or "raft"; fails when the weights are not cached), "farneback" or "auto"
    (``resolve_flow_method``: RAFT when cached).
    """
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.shape[0] < 2:
        raise DataError(f"flows need at least 2 frames, got {frames.shape[0]}")
    try:
        method = resolve_flow_method(method)
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    if method == "raft_large" and raft is None:
        raft = load_raft(device)
        if raft is None:
            raise DataError("RAFT weights are not in the torch hub cache "
                            f"({Path(torch.hub.get_dir()) / 'checkpoints'}/raft_large_*.pth); use --method farneback")
    x = torch.from_numpy(frames).float().permute(0, 3, 1, 2).div(255.0).to(device)
    if method == "raft_large":
        fw = torch.cat([raft_pair(raft, x[k:k + 1], x[k + 1:k + 2]) for k in range(len(x) - 1)])
        bw = torch.cat([raft_pair(raft, x[k + 1:k + 2], x[k:k + 1]) for k in range(len(x) - 1)])
        used = "raft_large"
    else:
        fw, bw = (f[0] for f in farneback_sequence(x.unsqueeze(0)))
        used = "farneback"
    visible = visibility_mask(fw, bw)
    return {"forward": fw.cpu().numpy().astype(np.float16), "backward": bw.cpu().numpy().astype(np.float16),
            "visible": visible.cpu().numpy().astype(np.uint8), "method": used}
