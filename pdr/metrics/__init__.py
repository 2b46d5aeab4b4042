"""Evaluation metrics with OpenSTL's conventions, registered once each (see docs/metrics.md).

    pdr.metrics.evaluate(pred, true, metrics=("mse", "mae", "psnr", "ssim"), mean=None, std=None)

``pred`` and ``true`` are numpy arrays or tensors of shape (B, T, C, H, W). Each metric is registered
once in ``METRICS`` with its family (pixel, perceptual, video, collision), its direction
(``higher_is_better``) and its kind (per frame, per split, or collision scores); the families live in
their own modules. For test sets that do not fit in memory use ``MetricAccumulator`` batch by batch; it
gives the same numbers as ``evaluate`` on the concatenated arrays.
"""
# isort: off
from . import pixel, perceptual, video, collision  # noqa: F401  (each registers its metrics, in table order)
# isort: on
from .accumulator import MetricAccumulator, check_metric_names, evaluate, summarise
from .collision import CollisionAccumulator, collision_scores
from .networks import (
    ALEXNET_FILE,
    load_dino_features,
    load_lpips,
    load_network,
    lpips_weights_path,
    offline,
    set_offline,
)
from .perceptual import lpips_pairs
from .registry import (
    METRICS,
    VALIDATION_METRICS,
    FrameBatch,
    Metric,
    get,
    higher_is_better,
    monitor_names,
    names,
    unknown_metric_message,
)
from .video import (
    FOREGROUND_THRESHOLD,
    feature_consistency,
    fill_foreground,
    foreground_masks,
    frechet_distance,
    median_background,
    motion_smoothness,
    motion_smoothness_proxy,
    object_iou_proxy,
    temporal_lpips,
    temporal_lpips_of_differences,
    vbench_consistency,
)

AVAILABLE = names("frame") + names("set")  # what evaluate / MetricAccumulator / eval.metrics accept
COLLISION_METRICS = names("collision")

__all__ = [
    "ALEXNET_FILE", "AVAILABLE", "COLLISION_METRICS", "FOREGROUND_THRESHOLD", "METRICS", "VALIDATION_METRICS",
    "CollisionAccumulator", "FrameBatch", "Metric", "MetricAccumulator", "check_metric_names", "collision_scores",
    "evaluate", "feature_consistency", "fill_foreground", "foreground_masks", "frechet_distance", "get",
    "higher_is_better", "load_dino_features", "load_lpips", "load_network", "lpips_pairs", "lpips_weights_path",
    "median_background", "monitor_names", "motion_smoothness", "motion_smoothness_proxy", "names",
    "object_iou_proxy", "offline", "set_offline", "summarise", "temporal_lpips", "temporal_lpips_of_differences",
    "unknown_metric_message", "vbench_consistency",
]
