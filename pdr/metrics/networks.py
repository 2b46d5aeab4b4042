"""The pretrained networks some metrics need, each loaded by name: ``load_network(name, device)``.

Every loader returns ``(model, note)``: the model, or None with a note that says how to provide the
weights. Only LPIPS's AlexNet is downloaded (into the torch cache, as torchvision does), and only when
downloads are allowed: ``PDR_OFFLINE=1`` (``--offline`` of tools/train.py and tools/eval.py) forbids
them. The other networks are read from the local caches only.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

log = logging.getLogger("pdr")

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"
I3D_FILE = "i3d_torchscript.pt"
OFFLINE_VARIABLE = "PDR_OFFLINE"
_FAILED_DOWNLOADS: dict[Path, str] = {}  # path -> note, so that one process tries a download once
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)

# name -> (timm model, Hugging Face hub id, input normalisation, create_model arguments)
TIMM_FEATURES = {
    "dinov2": ("vit_small_patch14_dinov2", "timm/vit_small_patch14_dinov2.lvd142m", (IMAGENET_MEAN, IMAGENET_STD),
               {"num_classes": 0, "img_size": 224}),
    "dino": ("vit_base_patch16_224.dino", "timm/vit_base_patch16_224.dino", (IMAGENET_MEAN, IMAGENET_STD),
             {"num_classes": 0}),
    "clip": ("vit_base_patch32_clip_224.openai", "timm/vit_base_patch32_clip_224.openai", (CLIP_MEAN, CLIP_STD), {}),
}


def offline() -> bool:
    """True when downloads are forbidden (``PDR_OFFLINE`` set to 1, true or yes)."""
    return os.environ.get(OFFLINE_VARIABLE, "").strip().lower() in ("1", "true", "yes")


def set_offline(enabled: bool = True) -> None:
    """Forbid (or allow) downloads in this process and the processes it starts."""
    if enabled:
        os.environ[OFFLINE_VARIABLE] = "1"
    else:
        os.environ.pop(OFFLINE_VARIABLE, None)


# ----------------------------------------------------------------------------- LPIPS


def lpips_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def download_file(url: str, path: Path) -> None:
    """Download ``url`` to ``path`` (atomically: torch.hub writes a temporary file first)."""
    torch.hub.download_url_to_file(url, str(path), hash_prefix=ALEXNET_FILE.split("-")[-1].split(".")[0],
                                   progress=False)


def _lpips_missing_note(path: Path, why: str) -> str:
    return (f"LPIPS n/a: {why}. Put torchvision's ImageNet AlexNet checkpoint {ALEXNET_FILE} ({ALEXNET_URL}, "
            f"downloaded on a machine with internet) at {path}, or set TORCH_HOME to a folder that has "
            f"checkpoints/{ALEXNET_FILE}")


def ensure_lpips_weights() -> tuple[Path | None, str]:
    """(path, "") of the AlexNet weights, downloaded on first use; (None, note) when absent and not fetched."""
    path = lpips_weights_path()
    if path.is_file():
        return path, ""
    if offline():
        return None, _lpips_missing_note(path, f"the AlexNet weights are not in the torch cache and downloads are "
                                               f"off ({OFFLINE_VARIABLE}=1 or --offline)")
    if path in _FAILED_DOWNLOADS:  # tried in this process already: do not wait for the network again
        return None, _FAILED_DOWNLOADS[path]
    log.info("LPIPS: downloading the AlexNet weights to %s (once; --offline or %s=1 forbids it)", path,
             OFFLINE_VARIABLE)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        download_file(ALEXNET_URL, path)
    except Exception as exc:  # no network, a proxy, a full disk: LPIPS is n/a, the evaluation goes on
        why = f"downloading the AlexNet weights failed ({type(exc).__name__}: {exc})"
    else:
        if path.is_file():
            return path, ""
        why = "the download left no file"
    _FAILED_DOWNLOADS[path] = _lpips_missing_note(path, why)
    return None, _FAILED_DOWNLOADS[path]


def load_lpips(device: str | torch.device = "cpu"):
    """The LPIPS(AlexNet) network and "", or (None, note) when its weights are absent and cannot be fetched."""
    path, note = ensure_lpips_weights()
    if path is None:
        return None, note
    import lpips

    return lpips.LPIPS(net="alex", verbose=False).to(device).eval(), ""


# ----------------------------------------------------------------------------- feature networks (timm)


class FrameFeatures(torch.nn.Module):
    """Frames (N, 3, H, W) in [0, 1] -> features (N, D): resized to ``size`` x ``size`` and normalised."""

    def __init__(self, backbone: torch.nn.Module, mean=IMAGENET_MEAN, std=IMAGENET_STD, size: int = 224):
        super().__init__()
        self.backbone, self.size = backbone, size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.backbone((x - self.mean) / self.std)


def hub_weights_path(hub_id: str) -> Path | None:
    """The cached weights file of a Hugging Face hub model, or None (never downloads)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        found = try_to_load_from_cache(hub_id, filename)
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def load_timm_features(name: str, device: str | torch.device = "cpu", path: Path | None = None):
    """A ``FrameFeatures`` model of ``TIMM_FEATURES[name]`` from the local Hugging Face cache, or (None, note)."""
    model_name, hub_id, (mean, std), kwargs = TIMM_FEATURES[name]
    path = path or hub_weights_path(hub_id)
    if path is None:
        return None, (f"{name} features n/a: the weights of {hub_id} are not in the local Hugging Face cache; put "
                      f"them there (huggingface-cli download {hub_id} on a machine with internet, then copy the cache "
                      f"folder, or set HF_HOME to one that has them). Nothing is downloaded")
    try:
        import timm

        backbone = timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs)
    except (OSError, RuntimeError, ValueError, KeyError, ImportError) as exc:  # a damaged file, an old timm
        return None, f"{name} features n/a: cannot load {hub_id} from {path} ({type(exc).__name__}: {exc})"
    return FrameFeatures(backbone, mean, std).to(device).eval(), ""


# ----------------------------------------------------------------------------- I3D (FVD)


def i3d_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / I3D_FILE


class I3DFeatures(torch.nn.Module):
    """Clips (N, T, 3, H, W) in [0, 1] -> I3D features (N, 400) of the TorchScript I3D used for FVD.

    The network takes (N, 3, T, H, W) values in [0, 255] and resizes them to 224x224 itself.
    """

    def __init__(self, detector):
        super().__init__()
        self.detector = detector

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        videos = clips.permute(0, 2, 1, 3, 4) * 255.0
        return self.detector(videos, rescale=True, resize=True, return_features=True)


def load_i3d(device: str | torch.device = "cpu"):
    path = i3d_weights_path()
    if not path.is_file():
        return None, (f"FVD n/a: the I3D network {I3D_FILE} (the TorchScript Kinetics-400 I3D of the FVD "
                      f"literature) is not at {path}; put it there or set TORCH_HOME to a folder that has "
                      f"checkpoints/{I3D_FILE}. Nothing is downloaded")
    try:
        detector = torch.jit.load(str(path), map_location=device).eval()
    except (OSError, RuntimeError) as exc:
        return None, f"FVD n/a: cannot load {path} ({type(exc).__name__}: {exc})"
    return I3DFeatures(detector), ""


def load_interpolation(device: str | torch.device = "cpu"):
    return None, ("motion_smoothness n/a: VBench's motion smoothness needs a video frame interpolation network "
                  "(AMT-S), which PDR does not include; pass one as networks={'interpolation': f} with f(a, b) -> "
                  "the frame between a and b, or use motion_smoothness_proxy")


def load_dino_features(device: str | torch.device = "cpu"):
    """DINOv2 ViT-S/14 (CLS features of 224x224 frames) from the local cache: the consistency proxies' network."""
    return load_timm_features("dinov2", device)


LOADERS = {
    "lpips": load_lpips,
    "dinov2": load_dino_features,
    "dino": lambda device="cpu": load_timm_features("dino", device),
    "clip": lambda device="cpu": load_timm_features("clip", device),
    "i3d": load_i3d,
    "interpolation": load_interpolation,
}


def load_network(name: str, device: str | torch.device = "cpu"):
    """(model, "") or (None, note) for a network of ``LOADERS``."""
    return LOADERS[name](device)
