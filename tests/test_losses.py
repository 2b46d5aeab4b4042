import pytest
import torch
from skimage.metrics import structural_similarity

from pdr.losses import build_loss, ssim_per_frame


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


def test_ssim_per_frame_agrees_with_scikit_image_gaussian_ssim():
    torch.manual_seed(0)
    target = torch.rand(1, 2, 1, 32, 32)
    pred = (target + 0.1 * torch.randn_like(target)).clamp(0, 1)
    ours = ssim_per_frame(pred, target, window_size=11)
    for t in range(2):
        ref = structural_similarity(pred[0, t, 0].numpy(), target[0, t, 0].numpy(), gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False, data_range=1.0)
        # kornia pads the borders where scikit-image crops them: close, not equal
        assert ours[0, t].item() == pytest.approx(ref, abs=0.05)


def test_ssim_penalises_blur_more_than_l1():
    """The point of L1 + SSIM: a blurred frame with the same mean error costs more than under L1 alone."""
    target = torch.zeros(1, 1, 1, 32, 32)
    target[..., ::4, :] = 1.0
    blurred = torch.full_like(target, target.mean().item())
    terms = build_loss({"name": "l1_ssim"})(blurred, target)
    assert terms["1-ssim"].item() > 0.9


def test_shape_mismatch_is_named():
    with pytest.raises(ValueError, match="same shape"):
        build_loss({"name": "mse"})(torch.zeros(1, 2, 1, 4, 4), torch.zeros(1, 3, 1, 4, 4))
    with pytest.raises(ValueError, match="lam must be in"):
        build_loss({"name": "l1_ssim", "lam": 2.0})
