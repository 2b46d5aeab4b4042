"""Video metrics with known answers: tLPIPS, VBench's scores and their proxies, FVD, collision scores."""
import numpy as np
import pytest
import torch

from pdr.metrics import (
    AVAILABLE,
    METRICS,
    CollisionAccumulator,
    MetricAccumulator,
    collision_scores,
    evaluate,
    motion_smoothness_proxy,
    networks,
    object_iou_proxy,
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


def random_lpips():
    import lpips

    return lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()


def test_standard_names_and_proxies_are_registered():
    for name in ("tlpips", "tlpips_diff", "object_iou", "motion_smoothness", "subject_consistency",
                 "background_consistency", "fvd"):
        assert name in AVAILABLE and METRICS[name].proxy_of is None
    for name in ("object_iou", "motion_smoothness", "subject_consistency", "background_consistency"):
        assert METRICS[f"{name}_proxy"].proxy_of == name
    assert METRICS["fvd"].kind == "set" and not METRICS["fvd"].per_frame


def test_tlpips_is_tecogans_definition():
    net = random_lpips()
    rng = np.random.default_rng(4)
    true = blob_video([4, 6, 8, 10, 12], size=32)
    pred = np.clip(true + 0.2 * rng.standard_normal(true.shape), 0, 1)

    def lp(a, b):  # one LPIPS value of two (3, H, W) frames in [0, 1]
        with torch.no_grad():
            return float(net(torch.from_numpy(a[None] * 2 - 1).float(), torch.from_numpy(b[None] * 2 - 1).float()))

    expected = [abs(lp(pred[0, t], pred[0, t - 1]) - lp(true[0, t], true[0, t - 1])) for t in range(1, 5)]
    res = evaluate(pred, true, metrics=("tlpips",), lpips_model=net, per_frame=True)
    assert res["tlpips_per_frame"] == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert res["tlpips"] == pytest.approx(np.mean(expected), rel=1e-5)
    frozen = np.repeat(true[:, :1], 5, axis=1)  # does not move: tLPIPS is the truth's own change
    change = np.mean([lp(true[0, t], true[0, t - 1]) for t in range(1, 5)])
    assert evaluate(frozen, true, metrics=("tlpips",), lpips_model=net)["tlpips"] == pytest.approx(change, rel=1e-5)


def test_tlpips_diff_compares_difference_images():
    net = random_lpips()
    true = blob_video([4, 6, 8, 10, 12], size=32)
    same = evaluate(true, true, metrics=("tlpips_diff",), lpips_model=net, per_frame=True)
    assert same["tlpips_diff"] == pytest.approx(0.0, abs=1e-6) and len(same["tlpips_diff_per_frame"]) == 4
    diff = np.diff(true, axis=1)[0]
    with torch.no_grad():
        expected = net(torch.from_numpy(diff).float(), torch.from_numpy(np.zeros_like(diff)).float()).mean()
    frozen = np.repeat(true[:, :1], 5, axis=1)
    res = evaluate(frozen, true, metrics=("tlpips_diff",), lpips_model=net)["tlpips_diff"]
    assert res == pytest.approx(float(expected), rel=1e-5)


def test_tlpips_without_weights_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    res = evaluate(np.zeros((1, 3, 1, 8, 8)), np.zeros((1, 3, 1, 8, 8)), metrics=("mse", "tlpips"))
    assert res["tlpips"] is None and "LPIPS n/a" in res["notes"]["tlpips"]


def test_object_iou_proxy_known_values():
    true = moving_square()
    assert object_iou_proxy(true, true) == pytest.approx(np.ones((1, 5)))
    shifted = moving_square(shift=2)  # 2 of 6 columns shared: IoU 1/3 in every frame
    assert object_iou_proxy(shifted, true) == pytest.approx(np.full((1, 5), 1 / 3))
    assert evaluate(shifted, true, metrics=("object_iou_proxy",))["object_iou_proxy"] == pytest.approx(1 / 3)
    empty = np.zeros_like(true)
    assert object_iou_proxy(empty, empty) == pytest.approx(np.ones((1, 5)))  # nothing to find: perfect
    res = evaluate(shifted, true, metrics=("object_iou",))
    assert res["object_iou"] is None and "object_iou_proxy" in res["notes"]["object_iou"]


def test_motion_smoothness_proxy_prefers_linear_motion():
    linear = blob_video([4, 5, 6, 7, 8, 9, 10])
    jitter = blob_video([4, 6.5, 5, 8.5, 7, 10.5, 9])
    static = blob_video([6] * 7)
    assert motion_smoothness_proxy(static) == pytest.approx(np.ones((1, 5)))
    smooth, rough = motion_smoothness_proxy(linear).mean(), motion_smoothness_proxy(jitter).mean()
    assert 0.9 < rough < smooth < 1.0
    res = evaluate(jitter, linear, metrics=("motion_smoothness_proxy",), per_frame=True)
    assert res["motion_smoothness_proxy"] == pytest.approx(rough) and len(res["motion_smoothness_proxy_per_frame"]) == 5


def test_motion_smoothness_is_vbenchs_with_a_given_interpolator():
    """A score of the predicted video: the truth (here a smooth motion) plays no part."""
    jitter = blob_video([4, 6.5, 5, 8.5, 7, 10.5, 9])  # 7 frames: odd frames 1, 3, 5 are interpolated
    truth = blob_video([4, 5, 6, 7, 8, 9, 10])
    res = evaluate(jitter, truth, metrics=("motion_smoothness",), per_frame=True,
                   networks={"interpolation": lambda a, b: 0.5 * (a + b)})
    v = jitter[0]
    expected = [1 - np.abs((v[k - 1] + v[k + 1]) / 2 - v[k]).mean() for k in (1, 3, 5)]
    assert res["motion_smoothness_per_frame"] == pytest.approx(expected, rel=1e-6)
    missing = evaluate(jitter, jitter, metrics=("motion_smoothness",))
    assert missing["motion_smoothness"] is None and "AMT" in missing["notes"]["motion_smoothness"]


def test_vbench_consistency_hand_computed():
    """Scores of the predicted video (the truth, another video here, plays no part)."""
    net = tiny_features()
    frames = np.random.default_rng(0).random((1, 4, 3, 24, 24))
    truth = np.random.default_rng(1).random((1, 4, 3, 24, 24))
    with torch.no_grad():
        f = net(torch.from_numpy(frames[0]).float()).double().numpy()
    cos = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
    expected = [(max(0, cos(f[0], f[t])) + max(0, cos(f[t - 1], f[t]))) / 2 for t in (1, 2, 3)]
    res = evaluate(frames, truth, metrics=("subject_consistency", "background_consistency"), per_frame=True,
                   networks={"dino": net, "clip": net})
    assert res["subject_consistency_per_frame"] == pytest.approx(expected, rel=1e-6)
    assert res["background_consistency"] == pytest.approx(np.mean(expected), rel=1e-6)
    proxy = evaluate(frames, truth, metrics=("subject_consistency_proxy",), feature_model=net, per_frame=True)
    assert proxy["subject_consistency_proxy_per_frame"] == pytest.approx([cos(f[t - 1], f[t]) for t in (1, 2, 3)])


def test_consistency_proxies_with_a_given_network():
    net = tiny_features()
    static = blob_video([6] * 4)
    moving = np.random.default_rng(0).random((1, 4, 3, 24, 24))
    names = ("subject_consistency_proxy", "background_consistency_proxy")
    res = evaluate(static, static, metrics=names, feature_model=net)
    assert res[names[0]] == pytest.approx(1.0) and res[names[1]] == pytest.approx(1.0)
    noisy = evaluate(moving, static, metrics=names[:1], feature_model=net)
    assert noisy[names[0]] < 1.0
    grey = evaluate(static[:, :, :1], static[:, :, :1], metrics=names[:1], feature_model=net)
    assert grey[names[0]] == pytest.approx(1.0)


def test_background_consistency_proxy_ignores_the_objects():
    net = tiny_features()
    true = moving_square(steps=6, size=24) * 0.8 + 0.1  # the object moves, the background stays
    rgb = np.repeat(true, 3, axis=2)
    name = "background_consistency_proxy"
    assert evaluate(rgb, rgb, metrics=(name,), feature_model=net)[name] == pytest.approx(1.0)
    flicker = rgb.copy()
    flicker[:, 1::2] += 0.05 * np.random.default_rng(1).standard_normal(flicker[:, 1::2].shape)
    assert evaluate(np.clip(flicker, 0, 1), rgb, metrics=(name,), feature_model=net)[name] < 1.0


def test_consistency_without_weights_says_why(monkeypatch):
    monkeypatch.setattr(networks, "hub_weights_path", lambda hub_id: None)
    names = ("subject_consistency", "background_consistency", "subject_consistency_proxy")
    acc = MetricAccumulator(("mse", *names))
    acc.update(np.zeros((1, 3, 3, 8, 8)), np.zeros((1, 3, 3, 8, 8)))
    res = acc.compute()
    assert all(res[n] is None for n in names) and res["mse"] == 0.0
    assert "vit_base_patch16_224.dino" in acc.notes["subject_consistency"]
    assert "clip" in acc.notes["background_consistency"] and "Nothing is downloaded" in acc.notes[names[2]]


def test_dino_loads_from_a_local_file_only(monkeypatch, tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    model_name = networks.TIMM_FEATURES["dinov2"][0]
    source = timm.create_model(model_name, pretrained=False, num_classes=0)  # random weights, 518 px
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    monkeypatch.setattr(networks, "hub_weights_path", lambda hub_id: path)
    model, note = networks.load_dino_features()
    assert note == "" and isinstance(model, networks.FrameFeatures)
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 384)


def test_collision_scores_hand_made_case():
    prob = np.array([[0.9, 0.2, 0.7, 0.1]])
    label = np.array([[1, 1, 0, 0]])  # TP, FN, FP, TN
    res = collision_scores(prob, label)
    assert res["collision_accuracy"] == 0.5 and res["collision_f1"] == pytest.approx(0.5)
    assert res["collision_precision"] == 0.5 and res["collision_recall"] == 0.5 and res["collision_count"] == 4
    assert collision_scores(prob, label, threshold=0.8)["collision_f1"] == pytest.approx(2 / 3)  # TP 1, FN 1
    assert res["collision_timing_error"] == pytest.approx(0.5)  # true steps 0, 1; predicted 0, 2: errors 0, 1
    none = collision_scores(np.zeros(3), np.zeros(3))
    assert none["collision_timing_error"] is None
    assert none["collision_f1"] == 1.0 and none["collision_accuracy"] == 1.0
    acc = CollisionAccumulator()
    acc.update(torch.tensor(prob[:, :2]), torch.tensor(label[:, :2]))
    acc.update(prob[:, 2:], label[:, 2:])
    assert acc.compute() == res
    with pytest.raises(ValueError, match="same shape"):
        collision_scores(np.zeros(3), np.zeros(4))


def test_collision_timing_error_hand_made_case():
    prob = np.array([[0.0, 0.9, 0.0, 0.0, 0.0, 0.0],   # true events at 2 and 5, predicted at 1: errors 1, 4
                     [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],   # true event at 3, nothing predicted: a miss, no timing
                     [0.0, 0.0, 0.0, 0.8, 0.0, 0.7]])  # true event at 4, predicted at 3 and 5: error 1
    label = np.array([[0, 0, 1, 0, 0, 1], [0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0]])
    res = collision_scores(prob, label)
    assert res["collision_timing_error"] == pytest.approx((1 + 4 + 1) / 3)
    assert res["collision_recall"] == 0.0 and res["collision_precision"] == 0.0


# ----------------------------------------------------------------------------- FVD


def random_video_net(dim=6):
    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv3d(3, dim, 3, padding=1), torch.nn.Tanh(), torch.nn.AdaptiveAvgPool3d(1),
                               torch.nn.Flatten()).eval()
    return lambda clips: conv(clips.permute(0, 2, 1, 3, 4))  # (N, T, 3, H, W) -> (N, dim)


def reference_frechet(a, b):
    """||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2), by eigendecompositions."""
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(sa)
    root_a = v @ np.diag(np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root_a @ sb @ root_a)
    trace_root = np.sqrt(np.clip(inner, 0, None)).sum()
    return ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2 * trace_root


def test_fvd_with_a_random_network():
    net = random_video_net()
    rng = np.random.default_rng(5)
    true = rng.random((10, 4, 3, 8, 8))
    pred = np.clip(true + 0.3 * rng.standard_normal(true.shape), 0, 1)
    acc = MetricAccumulator(("mse", "fvd"), networks={"i3d": net})
    for i in range(0, 10, 4):  # batches of 4, 4, 2: FVD is over the whole set
        acc.update(pred[i:i + 4], true[i:i + 4])
    with torch.no_grad():
        fa, fb = (net(torch.from_numpy(x).float()).double().numpy() for x in (pred, true))
    assert acc.compute()["fvd"] == pytest.approx(reference_frechet(fa, fb), rel=1e-6)
    assert evaluate(true, true, metrics=("fvd",), networks={"i3d": net})["fvd"] == pytest.approx(0.0, abs=1e-6)


def test_fvd_is_na_when_the_network_fails_on_the_clips():
    def too_short(clips):
        raise RuntimeError("input is smaller than the pooling kernel")

    res = evaluate(np.zeros((2, 3, 3, 8, 8)), np.zeros((2, 3, 3, 8, 8)), metrics=("mse", "fvd"),
                   networks={"i3d": too_short})
    assert res["fvd"] is None and res["mse"] == 0.0 and "smaller than the pooling kernel" in res["notes"]["fvd"]


def test_fvd_without_i3d_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    res = evaluate(np.zeros((2, 3, 3, 8, 8)), np.zeros((2, 3, 3, 8, 8)), metrics=("fvd",))
    assert res["fvd"] is None and "i3d_torchscript.pt" in res["notes"]["fvd"] and str(tmp_path) in res["notes"]["fvd"]


# ----------------------------------------------------------------------------- collisions in tools/eval.py


def test_eval_reports_collision_scores_on_annotated_clevrer_clips(repo, tmp_path, capsys):
    """tools/eval.py on the real-format CLEVRER files of tests/test_clevrer.py: scores against the annotations."""
    import json

    from test_clevrer import make_video

    from pdr.cli.eval import main as eval_main
    from pdr.config import load_config
    from pdr.engine import Trainer
    from pdr.engine.checkpoint import load_checkpoint
    from pdr.model import build_model
    from pdr.registry import DATASETS

    data = tmp_path / "clevrer"
    for index in range(5):  # collisions at source frames 5 and 9; video 4 has no annotation
        make_video(data, index, with_annotation=index != 4)
    cfg = load_config(repo / "configs" / "clevrer" / "latent_flow_temporal.yaml", [
        f"data.root={data}", "data.image_size=16", "data.in_frames=4", "data.out_frames=3", "data.train_videos=[0,2]",
        "data.val_videos=[2,3]", "data.test_videos=[3,5]", "data.require_annotations=false", "data.batch_size=2",
        "data.num_workers=0", "model.backbone.nf=8", "model.backbone.hidden=8", "model.backbone.layers=1",
        "model.backbone.levels=2", "model.backbone.perceptual=random", "model.backbone.vae_checkpoint=null",
        "train.max_steps=1", "train.tensorboard=false", "eval.metrics=[mse]"])
    Trainer(cfg, tmp_path / "run", show_progress=False).fit()
    assert eval_main([str(tmp_path / "run"), "--format", "json", "--no-images", "--device", "cpu"]) == 0
    record = json.loads(capsys.readouterr().out)[0]

    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    model = build_model(cfg)
    model.load_state_dict(state["model"])
    model.eval()
    test = DATASETS.build("clevrer", split="test", in_frames=4, out_frames=3, root=str(data), image_size=16,
                          train_videos=[0, 2], val_videos=[2, 3], test_videos=[3, 5], require_annotations=False)
    x, _ = test[0]  # video 3: target source frames 4, 5, 6; the collision at frame 5 is step 1
    with torch.no_grad():
        z = model.backbone.encode(x[None])[0]
        logits = model.backbone.rollout(z, 3)["collision"][0, 3:]
    predicted = (torch.sigmoid(logits) >= 0.5).tolist()
    label = [False, True, False]
    tp = sum(p and t for p, t in zip(predicted, label))
    fp = sum(p and not t for p, t in zip(predicted, label))
    fn = sum(t and not p for p, t in zip(predicted, label))
    assert record["collision_recall"] == tp / (tp + fn)
    assert record["collision_precision"] == (tp / (tp + fp) if tp + fp else 0.0)
    assert record["collision_accuracy"] == pytest.approx(sum(p == t for p, t in zip(predicted, label)) / 3)
    expected_timing = min(abs(1 - s) for s, p in enumerate(predicted) if p) if any(predicted) else None
    assert record["collision_timing_error"] == expected_timing
    assert "over 3 predicted steps" in record["notes"]["collision"]  # video 4 has no annotation: not scored
