import hashlib

import numpy as np
import pytest

from pdr.errors import DataError
from pdr.registry import DATASETS


def digest(x) -> str:
    return hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest()


@pytest.mark.parametrize("name,shape", [("bouncing_sprites", (3, 64, 64)), ("advected_fields", (2, 32, 32))])
def test_shapes_ranges_and_determinism(name, shape):
    t_in, t_out = (10, 10) if name == "bouncing_sprites" else (4, 4)
    ds = DATASETS.build(name, split="train", in_frames=t_in, out_frames=t_out, num_train=5)
    x, y = ds[3]
    assert x.shape == (t_in, *shape) and y.shape == (t_out, *shape)
    assert x.dtype == y.dtype and str(x.dtype) == "torch.float32"
    assert 0 <= x.min() and x.max() <= 1 and x.std() > 0.01
    again = DATASETS.build(name, split="train", in_frames=t_in, out_frames=t_out, num_train=5)[3]
    assert digest(again[0].numpy()) == digest(x.numpy())
    other_seed = DATASETS.build(name, split="train", in_frames=t_in, out_frames=t_out, num_train=5, seed=1)[3]
    assert digest(other_seed[0].numpy()) != digest(x.numpy())
    assert DATASETS.get(name).frame_shape() == shape


@pytest.mark.parametrize("name", ["bouncing_sprites", "advected_fields"])
def test_splits_never_share_sequences(name):
    seen = {}
    for split in ("train", "val", "test"):
        ds = DATASETS.build(name, split=split, in_frames=2, out_frames=2, num_train=40, num_val=40, num_test=40)
        for i in range(len(ds)):
            key = digest(ds.sequence(i))
            assert key not in seen, f"{split}[{i}] repeats {seen.get(key)}"
            seen[key] = f"{split}[{i}]"


def test_sprites_move_and_bounce():
    ds = DATASETS.build("bouncing_sprites", split="test", in_frames=10, out_frames=10, num_test=4,
                        num_sprites=(1, 1), speed=(3.0, 3.0), seq_len=40)
    moved = bounced = 0
    for i in range(4):
        seq = ds.sequence(i)
        bright = seq.max(axis=1)  # (T, H, W)
        fg = bright > bright.min(axis=(1, 2), keepdims=True) + 0.2
        ys, xs = zip(*[np.nonzero(f) for f in fg])
        centers = np.array([[x.mean(), y.mean()] for x, y in zip(xs, ys)])
        assert all(len(x) > 0 for x in xs)  # the sprite never leaves the frame
        steps = np.diff(centers, axis=0)
        moved += np.abs(steps).sum() > 20
        bounced += (np.sign(steps[1:]) * np.sign(steps[:-1]) < 0).any()
    assert moved == 4 and bounced >= 2


def test_fields_are_advected_not_redrawn():
    ds = DATASETS.build("advected_fields", split="val", in_frames=4, out_frames=4, num_val=2)
    seq = ds.sequence(0)
    step = np.abs(np.diff(seq, axis=0)).mean()
    unrelated = np.abs(seq[0] - ds.sequence(1)[0]).mean()
    assert 0 < step < 0.5 * unrelated


def test_frame_count_larger_than_sequences_is_an_error():
    with pytest.raises(DataError, match=r"data.in_frames \+ data.out_frames = 12 \+ 12 = 24, but bouncing_sprites "
                                        r"sequences have 20 frames \(data.seq_len\)"):
        DATASETS.build("bouncing_sprites", split="train", in_frames=12, out_frames=12)
