"""Datasets (registered in ``pdr.registry.DATASETS``) and data loaders built from a config."""
from .base import SPLITS, VideoDataset, split_batch
from . import synthetic, photo_scenes  # noqa: F401  (registers bouncing_sprites, advected_fields, photo_scenes)
from . import moving_mnist, taxibj, weatherbench, kth, human36m  # noqa: F401  (the benchmarks)
from . import clevrer  # noqa: F401
from . import arrays, video_folder  # noqa: F401  (a user's own data)
from .loader import (Normalisation, VideoLoader, build_dataset, build_eval_loader, build_train_loader,
                     build_train_val)

__all__ = ["SPLITS", "Normalisation", "VideoDataset", "VideoLoader", "build_dataset", "build_eval_loader",
           "build_train_loader", "build_train_val", "split_batch"]
