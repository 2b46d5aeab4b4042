"""photo_scenes: the dense embedded dataset cut from scikit-image's photographs (pdr.data.photo_scenes)."""
import numpy as np
import pytest
import torch
from skimage.registration import phase_cross_correlation

from pdr.compare.trivial import background_value
from pdr.data.synthetic import BouncingSprites
from pdr.errors import DataError
from pdr.registry import DATASETS


def scenes(split="train", n=6, **kwargs):
    return DATASETS.build("photo_scenes", split=split, in_frames=10, out_frames=10, num_train=n, num_val=n,
                          num_test=n, **kwargs)


def test_sequences_are_rgb_frames_in_range_and_deterministic_per_seed():
    a, b, c = scenes(), scenes(), scenes(seed=1)
    x, y = a[2]
    assert x.shape == (10, 3, 64, 64) and y.shape == (10, 3, 64, 64) and x.dtype == torch.float32
    seq = a.sequence(2)
    assert 0.0 <= seq.min() and seq.max() <= 1.0
    assert np.array_equal(seq, b.sequence(2))
    assert not np.array_equal(seq, c.sequence(2)) and not np.array_equal(seq, a.sequence(3))
    assert not np.array_equal(seq, scenes("test").sequence(2))  # each split has its own stream
    assert np.array_equal(torch.cat([x, y]).numpy(), seq)


def test_the_camera_pans_slowly_at_the_configured_speed():
    # without objects every frame is the background; phase correlation (scikit-image) measures how far it moved
    data = scenes("val", num_objects=[0, 0], pan_speed=[0.3, 0.8])
    for index in range(len(data)):
        grey = data.sequence(index).mean(axis=1)
        shift, _, _ = phase_cross_correlation(grey[0], grey[8], upsample_factor=20)
        assert 0.3 * 8 - 0.5 <= np.hypot(*shift) <= 0.8 * 8 + 0.5


def test_objects_move_over_a_still_background_and_the_frame_is_dense():
    still = scenes("val", num_objects=[0, 0], pan_speed=[0.0, 0.0])
    seq = still.sequence(0)
    assert np.abs(np.diff(seq, axis=0)).max() < 1e-6  # no pan, no objects: nothing moves
    moving = scenes("val", num_objects=[2, 2], pan_speed=[0.0, 0.0])
    changed = np.abs(np.diff(moving.sequence(0), axis=0)).max(axis=1) > 0.02  # (T-1, H, W)
    assert 0.01 < changed.mean() < 0.5  # the objects move, the background stays
    # dense: with the pan, most pixels change from one frame to the next, against few for bouncing_sprites
    def changing(seq):
        return (np.abs(np.diff(seq, axis=0)).max(axis=1) > 0.02).mean()

    sprites = BouncingSprites("val", 10, 10, num_val=6)
    dense = np.mean([changing(scenes("val").sequence(i)) for i in range(6)])
    assert dense > 0.4 and dense > 3 * np.mean([changing(sprites.sequence(i)) for i in range(6)])


def test_the_all_background_row_is_the_mean_colour_of_training_sequences():
    data = scenes("test")
    train = scenes("train", n=16)
    expected = np.mean([train.sequence(i).mean(axis=(0, 2, 3)) for i in range(16)], axis=0)
    assert np.allclose(background_value(data), expected, atol=1e-6)


@pytest.mark.parametrize("kwargs,message", [
    ({"num_objects": [3, 2]}, r"data.num_objects must be \[min, max\]"),
    ({"zoom": [0.0, 1.0]}, "data.zoom must be positive"),
    ({"pan_speed": [1.0, 6.0]}, "lower data.image_size, data.pan_speed or data.zoom"),
    ({"seq_len": -1}, "data.seq_len: must be an int >= 0"),
])
def test_bad_settings_name_the_key(kwargs, message):
    with pytest.raises(DataError, match=message):
        scenes(**kwargs)
