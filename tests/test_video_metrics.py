"""Video metrics with known answers: tLPIPS, object IoU, motion smoothness, consistency, collision scores."""
import numpy as np
import pytest
import torch

from pdr import metrics
from pdr.metrics import (
    AVAILABLE,
    CollisionAccumulator,
    MetricAccumulator,
    collision_scores,
    evaluate,
    motion_smoothness,
    object_iou,
)


def moving_square(steps=5, size=16, shift=0, width=4):
    """(1, T, 1, H, W): a 4x4 white square on black, moving 2 px right per frame, ``shift`` px further right."""
    out = np.zeros((1, steps, 1, size, size))
    for t in range(steps):
        out[0, t, 0, 4:8, 2 * t + shift:2 * t + shift + width] = 1.0
    return out


def blob_video(xs, size=24):
    """(1, T, 3, H, W): a Gaussian blob centred at x = xs[t]."""
    grid = np.arange(size)
    frames = [np.exp(-((grid[None, :] - x) ** 2 + (grid[:, None] - size / 2) ** 2) / 8.0) for x in xs]
    return np.repeat(np.stack(frames)[None, :, None], 3, axis=2)


def tiny_features():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4),
                               torch.nn.Flatten()).eval()


def test_new_names_are_available():
    for name in ("tlpips", "object_iou", "motion_smoothness", "subject_consistency", "background_consistency"):
        assert name in AVAILABLE


def test_tlpips_with_a_random_network():
    import lpips

    net = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()
    true = blob_video([4, 6, 8, 10, 12], size=32)
    same = evaluate(true, true, metrics=("tlpips",), lpips_model=net, per_frame=True)
    assert same["tlpips"] == pytest.approx(0.0, abs=1e-6) and len(same["tlpips_per_frame"]) == 4
    frozen = np.repeat(true[:, :1], 5, axis=1)  # a prediction that does not move
    assert evaluate(frozen, true, metrics=("tlpips",), lpips_model=net)["tlpips"] > 1e-3


def test_tlpips_without_weights_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    res = evaluate(np.zeros((1, 3, 1, 8, 8)), np.zeros((1, 3, 1, 8, 8)), metrics=("mse", "tlpips"))
    assert res["tlpips"] is None and "tLPIPS skipped" in res["notes"]["tlpips"]


def test_object_iou_known_values():
    true = moving_square()
    assert object_iou(true, true) == pytest.approx(np.ones((1, 5)))
    shifted = moving_square(shift=2)  # 2 of 6 columns shared: IoU 1/3 in every frame
    assert object_iou(shifted, true) == pytest.approx(np.full((1, 5), 1 / 3))
    assert evaluate(shifted, true, metrics=("object_iou",))["object_iou"] == pytest.approx(1 / 3)
    empty = np.zeros_like(true)
    assert object_iou(empty, empty) == pytest.approx(np.ones((1, 5)))  # nothing to find: perfect


def test_motion_smoothness_prefers_linear_motion():
    linear = blob_video([4, 5, 6, 7, 8, 9, 10])
    jitter = blob_video([4, 6.5, 5, 8.5, 7, 10.5, 9])
    static = blob_video([6] * 7)
    assert motion_smoothness(static) == pytest.approx(np.ones((1, 5)))
    smooth, rough = motion_smoothness(linear).mean(), motion_smoothness(jitter).mean()
    assert 0.9 < rough < smooth < 1.0
    res = evaluate(jitter, linear, metrics=("motion_smoothness",), per_frame=True)
    assert res["motion_smoothness"] == pytest.approx(rough) and len(res["motion_smoothness_per_frame"]) == 5


def test_consistency_with_a_given_network():
    net = tiny_features()
    static = blob_video([6] * 4)
    moving = np.random.default_rng(0).random((1, 4, 3, 24, 24))
    res = evaluate(static, static, metrics=("subject_consistency", "background_consistency"), feature_model=net)
    assert res["subject_consistency"] == pytest.approx(1.0) and res["background_consistency"] == pytest.approx(1.0)
    noisy = evaluate(moving, static, metrics=("subject_consistency",), feature_model=net)
    assert noisy["subject_consistency"] < 1.0
    grey = evaluate(static[:, :, :1], static[:, :, :1], metrics=("subject_consistency",), feature_model=net)
    assert grey["subject_consistency"] == pytest.approx(1.0)


def test_background_consistency_ignores_the_objects():
    net = tiny_features()
    true = moving_square(steps=6, size=24) * 0.8 + 0.1  # the object moves, the background stays
    rgb = np.repeat(true, 3, axis=2)
    assert evaluate(rgb, rgb, metrics=("background_consistency",), feature_model=net)["background_consistency"] \
        == pytest.approx(1.0)
    flicker = rgb.copy()
    flicker[:, 1::2] += 0.05 * np.random.default_rng(1).standard_normal(flicker[:, 1::2].shape)
    res = evaluate(np.clip(flicker, 0, 1), rgb, metrics=("background_consistency",), feature_model=net)
    assert res["background_consistency"] < 1.0


def test_consistency_without_dino_weights_says_why(monkeypatch):
    monkeypatch.setattr(metrics, "dino_weights_path", lambda: None)
    acc = MetricAccumulator(("mse", "subject_consistency", "background_consistency"))
    acc.update(np.zeros((1, 3, 3, 8, 8)), np.zeros((1, 3, 3, 8, 8)))
    res = acc.compute()
    assert res["subject_consistency"] is None and res["background_consistency"] is None and res["mse"] == 0.0
    assert "DINOv2 weights" in acc.notes["subject_consistency"] and "Nothing is downloaded" in acc.notes[
        "background_consistency"]


def test_dino_loads_from_a_local_file_only(monkeypatch, tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    source = timm.create_model(metrics.DINO_MODEL, pretrained=False, num_classes=0)  # random weights, 518 px
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    monkeypatch.setattr(metrics, "dino_weights_path", lambda: path)
    model, note = metrics.load_dino()
    assert note == "" and isinstance(model, metrics.DinoFeatures)
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 384)


def test_collision_scores_hand_made_case():
    prob = np.array([[0.9, 0.2, 0.7, 0.1]])
    label = np.array([[1, 1, 0, 0]])  # TP, FN, FP, TN
    res = collision_scores(prob, label)
    assert res["collision_accuracy"] == 0.5 and res["collision_f1"] == pytest.approx(0.5)
    assert res["collision_precision"] == 0.5 and res["collision_recall"] == 0.5 and res["collision_count"] == 4
    assert collision_scores(prob, label, threshold=0.8)["collision_f1"] == pytest.approx(2 / 3)  # TP 1, FN 1
    none = collision_scores(np.zeros(3), np.zeros(3))
    assert none["collision_f1"] == 1.0 and none["collision_accuracy"] == 1.0
    acc = CollisionAccumulator()
    acc.update(torch.tensor(prob[:, :2]), torch.tensor(label[:, :2]))
    acc.update(prob[:, 2:], label[:, 2:])
    assert acc.compute() == res
    with pytest.raises(ValueError, match="same shape"):
        collision_scores(np.zeros(3), np.zeros(4))
