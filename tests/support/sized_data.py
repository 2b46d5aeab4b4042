"""Tests of frame sizes: a dataset of a bright Gaussian spot moving in a straight line over a dim gradient, in frames
of any height x width (the embedded data sets are square), 8-bit images scaled to [0, 1]; tiny backbones and the
config of a one-step run on it."""
import numpy as np
import torch

from pdr.config import config_from_dict
from pdr.data import VideoDataset
from pdr.registry import DATASETS


@DATASETS.register("test_moving_spot", force=True)
class MovingSpot(VideoDataset):
    mean = 0.0
    std = 1.0
    uint8_scale = 1 / 255

    def __init__(self, split, in_frames, out_frames, height: int = 59, width: int = 59, channels: int = 1,
                 num_train: int = 4, num_val: int = 2, num_test: int = 2, seed: int = 0):
        super().__init__(split, in_frames, out_frames)
        self.height, self.width, self.channels, self.seed = height, width, channels, seed
        self.length = {"train": num_train, "val": num_val, "test": num_test}[split]

    @classmethod
    def frame_shape(cls, height: int = 59, width: int = 59, channels: int = 1, **_):
        return (channels, height, width)

    def __len__(self):
        return self.length

    def sequence(self, index: int) -> np.ndarray:
        """(T, C, H, W) float32 in [0, 1], multiples of 1/255 (an 8-bit video)."""
        rng = np.random.default_rng([self.seed, ("train", "val", "test").index(self.split), index])
        t = self.in_frames + self.out_frames
        ys, xs = np.mgrid[0:self.height, 0:self.width]
        start = rng.uniform(0.2, 0.8, size=2) * (self.height, self.width)
        step = rng.uniform(-0.05, 0.05, size=2) * (self.height, self.width)
        radius = 0.12 * min(self.height, self.width)
        background = 0.1 + 0.1 * xs / self.width
        frames = []
        for k in range(t):
            cy, cx = start + k * step
            spot = np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * radius**2))
            frames.append(np.clip(background + 0.8 * spot, 0, 1))
        video = np.round(np.stack(frames) * 255) / 255
        return np.repeat(video[:, None], self.channels, axis=1).astype(np.float32)

    def __getitem__(self, index):
        seq = torch.from_numpy(self.sequence(index))
        return seq[: self.in_frames], seq[self.in_frames:]


# tiny models whose multiples (8, 8, 8, 16) do not divide 59 nor 100x140 (SimVP with N_S=6 halves three times)
BACKBONES = {
    "simvp": {"name": "simvp", "hid_S": 4, "hid_T": 8, "N_S": 6, "N_T": 2},
    "tau": {"name": "tau", "hid_S": 4, "hid_T": 8, "N_S": 6, "N_T": 2},
    "convlstm": {"name": "convlstm", "num_hidden": [4], "filter_size": 3, "patch_size": 8},
    "predrnn": {"name": "predrnn", "num_hidden": [4], "filter_size": 3, "patch_size": 8},
    "srvp": {"name": "srvp", "nf": 4, "g_dim": 8, "y_dim": 4, "z_dim": 4, "hidden": 8, "lstm_hidden": 8,
             "content_dim": 4, "mlp_layers": 1, "num_init_frames": 2, "num_content_frames": 2},
}
PREDGS = {"name": "predgs", "num_gaussians": 8, "hidden": 8, "kernel_size": 5, "pool": 8}


def sized_config(backbone: dict, adapter, height: int, width: int, **data):
    return config_from_dict({
        "imports": ["sized_data"],
        "model": {"backbone": backbone, "adapter": adapter},
        "data": {"name": "test_moving_spot", "in_frames": 2, "out_frames": 2, "height": height, "width": width,
                 "num_train": 2, "num_val": 1, "num_test": 2, "batch_size": 2, **data},
        "loss": "l1_ssim", "train": {"max_steps": 1, "tensorboard": False, "log_every": 1},
        "eval": {"metrics": ["mse", "mae", "psnr", "ssim"], "num_vis": 1},
    })
