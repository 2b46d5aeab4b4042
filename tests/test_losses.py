import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from pdr.losses import build_loss, gradient_difference, ssim_per_frame


def test_identical_frames_cost_nothing():
    x = torch.rand(2, 3, 3, 16, 16)
    for name in ("mse", "l1", "l1_ssim"):
        terms = build_loss({"name": name})(x, x.clone())
        assert terms["loss"].item() == pytest.approx(0.0, abs=1e-5), name


def test_l1_ssim_combines_its_terms():
    pred, target = torch.rand(2, 2, 1, 16, 16), torch.rand(2, 2, 1, 16, 16)
    terms = build_loss({"name": "l1_ssim", "lam": 0.25})(pred, target)
    assert terms["l1"].item() == pytest.approx((pred - target).abs().mean().item(), rel=1e-6)
    expected = 0.25 * terms["l1"] + 0.75 * terms["1-ssim"]
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert 0 < terms["1-ssim"].item() < 2


def test_l1_ssim_adds_a_weighted_mse_term():
    pred, target = torch.rand(2, 2, 3, 16, 16), torch.rand(2, 2, 3, 16, 16)
    plain = build_loss({"name": "l1_ssim"})(pred, target)
    terms = build_loss({"name": "l1_ssim", "mse_weight": 5.0})(pred, target)
    mse = ((pred.double() - target.double()) ** 2).mean().item()
    assert terms["mse"].item() == pytest.approx(mse, rel=1e-5)
    assert terms["loss"].item() == pytest.approx(plain["loss"].item() + 5.0 * mse, rel=1e-5)
    assert plain["mse"].item() == pytest.approx(mse, rel=1e-5)  # logged, not added
    with pytest.raises(ValueError, match="mse_weight"):
        build_loss({"name": "l1_ssim", "mse_weight": -1.0})


def _numpy_gradient_difference(pred: np.ndarray, target: np.ndarray) -> float:
    """Mathieu et al.'s gradient difference with exponent 1, central differences, borders replicated."""
    def magnitudes(x):
        padded = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
        dx = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2
        dy = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2
        return np.abs(dx), np.abs(dy)
    (px, py), (tx, ty) = magnitudes(pred), magnitudes(target)
    return float((np.abs(px - tx).mean() + np.abs(py - ty).mean()) / 2)


def test_gradient_difference_equals_a_numpy_computation():
    pred, target = torch.rand(2, 3, 2, 12, 17), torch.rand(2, 3, 2, 12, 17)
    expected = _numpy_gradient_difference(pred.double().numpy(), target.double().numpy())
    assert gradient_difference(pred, target).item() == pytest.approx(expected, rel=1e-5)


def test_gradient_difference_sees_lost_edges_not_offsets():
    """It charges a blurred or faded copy of the frame for the edges it lost, and nothing for a brightness
    offset or an inverted copy, which keep every edge's magnitude (L1 charges all four)."""
    target = torch.zeros(1, 1, 1, 32, 32)
    target[..., 8:24, 8:24] = 0.8
    offset, inverted, faded = target + 0.1, 0.8 - target, 0.5 * target
    blurred = torch.nn.functional.avg_pool2d(target[0], 5, stride=1, padding=2, count_include_pad=False)[None]
    assert gradient_difference(offset, target).item() == pytest.approx(0.0, abs=1e-7)
    assert gradient_difference(inverted, target).item() == pytest.approx(0.0, abs=1e-7)
    assert gradient_difference(faded, target).item() == pytest.approx(
        0.5 * _numpy_gradient_difference(np.zeros((32, 32)), target[0, 0, 0].numpy()), rel=1e-5)
    assert gradient_difference(blurred, target).item() > 0.25 * gradient_difference(
        torch.zeros_like(target), target).item()


def test_l1_ssim_adds_a_weighted_gradient_difference_term():
    pred, target = torch.rand(2, 2, 3, 16, 16, requires_grad=True), torch.rand(2, 2, 3, 16, 16)
    plain = build_loss({"name": "l1_ssim", "mse_weight": 1.0})(pred, target)
    terms = build_loss({"name": "l1_ssim", "mse_weight": 1.0, "grad_weight": 2.0})(pred, target)
    assert terms["gdl"].requires_grad and not plain["gdl"].requires_grad  # only logged: no graph kept
    gdl = _numpy_gradient_difference(pred.detach().double().numpy(), target.double().numpy())
    assert terms["gdl"].item() == pytest.approx(gdl, rel=1e-5)
    assert plain["gdl"].item() == pytest.approx(gdl, rel=1e-5)  # logged, not added
    assert terms["loss"].item() == pytest.approx(plain["loss"].item() + 2.0 * gdl, rel=1e-5)
    with pytest.raises(ValueError, match="grad_weight"):
        build_loss({"name": "l1_ssim", "grad_weight": -0.5})


def test_ssim_per_frame_equals_scikit_image_gaussian_ssim():
    """Frames framed by a 10-pixel constant band, the same in prediction and target: every pixel whose
    window reaches past the border has SSIM 1 under any padding, so kornia's padded mean and
    scikit-image's full map agree to float32 accuracy."""
    torch.manual_seed(0)
    target = torch.full((1, 2, 1, 48, 48), 0.5)
    target[..., 10:38, 10:38] = torch.rand(1, 2, 1, 28, 28)
    pred = target.clone()
    pred[..., 10:38, 10:38] = (target[..., 10:38, 10:38] + 0.1 * torch.randn(1, 2, 1, 28, 28)).clamp(0, 1)
    ours = ssim_per_frame(pred, target, window_size=11)
    for t in range(2):
        _, full = structural_similarity(pred[0, t, 0].double().numpy(), target[0, t, 0].double().numpy(),
                                        gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                        data_range=1.0, full=True)
        assert ours[0, t].item() == pytest.approx(full.mean(), abs=1e-5)
        assert ours[0, t].item() < 0.99  # the noise is seen


def test_ssim_penalises_blur_more_than_l1():
    """The point of L1 + SSIM: of two predictions with the same L1 error, the blurred one costs more than
    the one that keeps the structure (a contrast-reduced copy of the target)."""
    target = torch.zeros(1, 1, 1, 32, 32)
    target[..., ::4, :] = 1.0
    blurred = torch.full_like(target, target.mean().item())  # 0.25 everywhere
    sharp = torch.where(target > 0.5, 0.625, 0.375)  # every pixel 0.375 off, stripes kept
    loss = build_loss({"name": "l1_ssim"})
    blur_terms, sharp_terms = loss(blurred, target), loss(sharp, target)
    assert blur_terms["l1"].item() == pytest.approx(0.375, abs=1e-6) == sharp_terms["l1"].item()
    assert blur_terms["1-ssim"].item() == pytest.approx(1.0, abs=0.01)  # no structure left at all
    assert blur_terms["loss"].item() > sharp_terms["loss"].item() + 0.15


def test_shape_mismatch_is_named():
    with pytest.raises(ValueError, match="same shape"):
        build_loss({"name": "mse"})(torch.zeros(1, 2, 1, 4, 4), torch.zeros(1, 3, 1, 4, 4))
    with pytest.raises(ValueError, match="lam must be in"):
        build_loss({"name": "l1_ssim", "lam": 2.0})


def test_warmup_moves_the_weights_linearly_from_start_to_the_configured_values():
    torch.manual_seed(0)
    pred, target = torch.rand(2, 2, 1, 16, 16), torch.rand(2, 2, 1, 16, 16)
    plain = build_loss({"name": "l1_ssim"})(pred, target)["loss"].item()
    mse = ((pred.double() - target.double()) ** 2).mean().item()
    loss = build_loss({"name": "l1_ssim", "mse_weight": 1.0, "warmup": {"steps": 100, "start": {"mse_weight": 21.0}}})
    for step, weight in ((0, 21.0), (25, 16.0), (50, 11.0), (100, 1.0), (5000, 1.0)):
        loss.set_step(step)
        assert loss(pred, target)["loss"].item() == pytest.approx(plain + weight * mse, rel=1e-5), step


def test_warmup_errors_name_the_key():
    base = {"name": "l1_ssim", "lam": 0.5}
    for key in ("window_size", "data"):  # an integer argument (a ramp would make it a float), no argument
        with pytest.raises(ValueError, match=rf"loss.warmup.start.{key}: loss 'l1_ssim' has no real-valued argument"):
            build_loss({**base, "warmup": {"steps": 10, "start": {key: 3}}})
    with pytest.raises(ValueError, match=r"loss.warmup.start.lam: lam must be in \[0, 1\]"):
        build_loss({**base, "warmup": {"steps": 10, "start": {"lam": 2.0}}})
    with pytest.raises(ValueError, match=r"loss.warmup.steps: expected an integer >= 1"):
        build_loss({**base, "warmup": {"steps": 0, "start": {"lam": 1.0}}})
    with pytest.raises(ValueError, match=r"loss.warmup: expected a mapping with exactly the keys steps and start"):
        build_loss({**base, "warmup": {"steps": 10, "from": {"lam": 1.0}}})
