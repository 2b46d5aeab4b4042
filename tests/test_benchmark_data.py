"""The benchmark loaders on tiny files written in each real format, and on the real MNIST digits."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

import pdr.data  # noqa: F401  (registers the datasets)
from pdr.errors import DataError
from pdr.registry import DATASETS

MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def build(name, split="train", in_frames=4, out_frames=4, **kwargs):
    return DATASETS.build(name, split=split, in_frames=in_frames, out_frames=out_frames, **kwargs)


# ----------------------------------------------------------------------------- Moving MNIST

def write_idx(path: Path, images: np.ndarray, truncate: int = 0) -> None:
    n, h, w = images.shape
    raw = b"".join(v.to_bytes(4, "big") for v in (2051, n, h, w)) + images.astype(np.uint8).tobytes()
    raw = raw[: len(raw) - truncate]
    (gzip.open if path.suffix == ".gz" else open)(path, "wb").write(raw)


def fake_digits(n: int, seed: int = 0) -> np.ndarray:
    """Blocky 28x28 'digits' with a bright 12x12 core."""
    rng = np.random.default_rng(seed)
    digits = np.zeros((n, 28, 28), np.uint8)
    digits[:, 8:20, 8:20] = rng.integers(128, 256, size=(n, 1, 1))
    return digits


@pytest.fixture(scope="module")
def real_mnist():
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"the real MNIST digits are not at {MNIST_DIR} (../shared is absent)")
    return MNIST_DIR


def test_moving_mnist_real_digits_stay_inside_and_bounce(real_mnist):
    ds = build("moving_mnist", "train", 10, 10, root=str(real_mnist), num_digits=2)
    assert len(ds.digits) == 7000  # t10k alone: 7000 train / 2000 test / 1000 val digits
    bounces = 0
    for index in range(20):
        x, y = ds[index]
        seq = torch.cat([x, y]).numpy()
        assert seq.shape == (20, 1, 64, 64) and seq.dtype == np.float32
        assert 0.0 <= seq.min() and seq.max() <= 1.0
        paths = ds.trajectories(index)
        assert paths.shape == (2, 20, 2)
        assert paths.min() >= 0 and paths.max() <= 64 - 28  # the whole 28x28 digit inside the frame
        # the frame is the maximum of the two digits at their positions: nothing outside their boxes
        outside = np.ones((20, 64, 64), bool)
        for digit_path in paths:
            for t, (top, left) in enumerate(digit_path):
                outside[t, top : top + 28, left : left + 28] = False
        assert seq[:, 0][outside].max() == 0.0
        assert (seq[:, 0].reshape(20, -1).max(axis=1) > 0.5).all()  # a visible digit in every frame
        # bounces: a velocity component changes sign only at a wall
        velocity = np.diff(paths, axis=1)
        for d in range(2):
            for axis in range(2):
                v = velocity[d, :, axis]
                for t in np.nonzero(v[:-1] * v[1:] < 0)[0]:
                    bounces += 1
                    pos = paths[d, t + 1, axis]
                    assert pos <= 4 or pos >= 36 - 4, f"direction reversed away from a wall at {pos}"
    assert bounces > 0


def test_moving_mnist_two_digits_per_frame(real_mnist):
    one = build("moving_mnist", "val", 10, 10, root=str(real_mnist), num_digits=1)
    two = build("moving_mnist", "val", 10, 10, root=str(real_mnist), num_digits=2)
    ink_one = np.mean([one.sequence(i).sum() for i in range(20)])
    ink_two = np.mean([two.sequence(i).sum() for i in range(20)])
    assert 1.6 < ink_two / ink_one < 2.1  # two digits, a little overlap


def test_moving_mnist_deterministic_for_a_seed(real_mnist):
    a = build("moving_mnist", "train", 10, 10, root=str(real_mnist), seed=3)
    b = build("moving_mnist", "train", 10, 10, root=str(real_mnist), seed=3)
    c = build("moving_mnist", "train", 10, 10, root=str(real_mnist), seed=4)
    assert np.array_equal(a.sequence(5), b.sequence(5))
    assert not np.array_equal(a.sequence(5), c.sequence(5))
    assert not np.array_equal(a.sequence(5), a.sequence(6))


def test_moving_mnist_digit_splits_do_not_overlap(tmp_path):
    digits = np.arange(50, dtype=np.uint8)[:, None, None] * np.ones((1, 28, 28), np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", digits)
    kw = {"root": str(tmp_path), "val_digits": 10, "test_digits": 10}
    ids = {s: set(build("moving_mnist", s, **kw).digits[:, 0, 0].tolist()) for s in ("train", "val", "test")}
    assert len(ids["train"]) == 30 and len(ids["val"]) == 10 and len(ids["test"]) == 10
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    # with a train file too: train/val from it, test from the t10k digits
    write_idx(tmp_path / "train-images-idx3-ubyte", digits + 100)
    assert build("moving_mnist", "test", **kw).digits[:, 0, 0].max() < 100
    assert build("moving_mnist", "train", **kw).digits[:, 0, 0].min() >= 100


def test_moving_mnist_reads_the_standard_test_file(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", fake_digits(40))
    seq = (np.random.default_rng(0).random((20, 3, 64, 64)) * 255).astype(np.uint8)
    np.save(tmp_path / "mnist_test_seq.npy", seq)
    ds = build("moving_mnist", "test", 10, 10, root=str(tmp_path), val_digits=5, test_digits=5)
    assert len(ds) == 3
    x, y = ds[2]
    assert torch.allclose(torch.cat([x, y])[:, 0], torch.from_numpy(seq[:, 2] / 255.0).float())
    assert len(build("moving_mnist", "train", 10, 10, root=str(tmp_path), val_digits=5, test_digits=5)) == 10000


def test_moving_mnist_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="does not exist.*t10k-images-idx3-ubyte"):
        build("moving_mnist", root=str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="no MNIST idx image file"):
        build("moving_mnist", root=str(tmp_path))
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", fake_digits(40), truncate=100)
    with pytest.raises(DataError, match="truncated"):
        build("moving_mnist", root=str(tmp_path), val_digits=5, test_digits=5)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="corrupt or truncated"):
        build("moving_mnist", root=str(tmp_path))
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", fake_digits(40))
    with pytest.raises(DataError, match="data.in_frames \\+ data.out_frames"):
        build("moving_mnist", "train", 15, 10, root=str(tmp_path), val_digits=5, test_digits=5)
    np.save(tmp_path / "mnist_test_seq.npy", np.zeros((20, 2, 32, 32), np.uint8))
    with pytest.raises(DataError, match="mnist_test_seq.npy.*shape"):
        build("moving_mnist", "test", root=str(tmp_path), val_digits=5, test_digits=5)


def _bounces(path: np.ndarray, canvas: int, speed: float):
    """The clean wall hits of a trajectory (T, 2) on a canvas of 10^9 pixels: (velocity before, {axis: +1 after a hit of the
    wall at 0, -1 after one at the far wall}, velocity after), where the steps around the hit are free ones.

    A free step has the full length ``speed``; the step that hits a wall is folded back, so it is shorter. The
    velocity before is the last free step; a hit axis is one where continuing it would leave [0, canvas]."""
    steps = np.diff(path.astype(np.float64), axis=0)
    free = np.abs(np.linalg.norm(steps, axis=1) - speed) <= 2
    for t in range(1, len(steps) - 1):
        if free[t - 1] and not free[t] and free[t + 1]:
            v = steps[t - 1]
            ahead = path[t] + v
            walls = {a: (1 if ahead[a] < 0 else -1) for a in range(2) if not 0 <= ahead[a] <= canvas}
            if walls:
                yield v, walls, steps[t + 1]


@pytest.mark.parametrize("stochastic", [False, True])
def test_moving_mnist_bounces_mirror_or_take_a_new_random_direction(stochastic):
    """Between hits a digit keeps its velocity. At a hit, Moving MNIST mirrors it; Stochastic Moving MNIST draws a
    new direction, at the same speed, that leaves the wall."""
    from pdr.data.moving_mnist import bouncing_trajectory

    canvas, step = 10**9, 0.13  # rounding to whole "pixels" is then negligible, and so is a fold's length
    speed = step * canvas
    hits, mirrored = 0, 0
    for seed in range(30):
        path = bouncing_trajectory(np.random.default_rng(seed), 60, canvas, step, stochastic=stochastic)
        moves = np.diff(path.astype(np.float64), axis=0)
        free = np.abs(np.linalg.norm(moves, axis=1) - speed) <= 2
        for t in range(1, len(moves)):
            if free[t] and free[t - 1]:
                np.testing.assert_allclose(moves[t], moves[t - 1], atol=2)
        for before, walls, after in _bounces(path, canvas, speed):
            hits += 1
            mirror = before * np.array([-1.0 if a in walls else 1.0 for a in range(2)])
            mirrored += bool(np.allclose(after, mirror, atol=2))
            for axis, away in walls.items():
                assert np.sign(after[axis]) == away
    assert hits > 20
    assert mirrored == (0 if stochastic else hits)


def test_stochastic_moving_mnist_test_split_is_fixed_by_the_seed(real_mnist):
    kw = dict(root=str(real_mnist), stochastic=True, seq_len=25, num_test=6)
    a, b = build("moving_mnist", "test", 5, 20, seed=1, **kw), build("moving_mnist", "test", 5, 20, seed=1, **kw)
    other = build("moving_mnist", "test", 5, 20, seed=2, **kw)
    assert len(a) == 6 and all(np.array_equal(a.sequence(i), b.sequence(i)) for i in range(6))
    assert not any(np.array_equal(a.sequence(i), other.sequence(i)) for i in range(6))
    plain = build("moving_mnist", "test", 5, 20, seed=1, **{**kw, "stochastic": False})
    assert any(not np.array_equal(a.trajectories(i), plain.trajectories(i)) for i in range(6))
    assert np.array_equal(a.trajectories(0)[0, :2], plain.trajectories(0)[0, :2])  # the first digit's start


def test_stochastic_moving_mnist_never_reads_the_deterministic_test_file(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", fake_digits(40))
    np.save(tmp_path / "mnist_test_seq.npy", np.zeros((20, 3, 64, 64), np.uint8))
    kw = dict(root=str(tmp_path), val_digits=5, test_digits=5, num_test=7)
    assert len(build("moving_mnist", "test", 10, 10, **kw)) == 3  # the standard file
    stochastic = build("moving_mnist", "test", 10, 10, stochastic=True, **kw)
    assert len(stochastic) == 7 and stochastic.sequence(0).max() > 0  # generated


# ----------------------------------------------------------------------------- TaxiBJ

def write_taxibj_npz(path: Path, n_train=30, n_test=8, frames=4):
    rng = np.random.default_rng(0)
    arrays = {k: rng.uniform(-1, 1, (n, frames, 2, 32, 32)).astype(np.float32)
              for k, n in (("X_train", n_train), ("Y_train", n_train), ("X_test", n_test), ("Y_test", n_test))}
    np.savez(path, **arrays)
    return arrays


def test_taxibj_npz(tmp_path):
    arrays = write_taxibj_npz(tmp_path / "dataset.npz")
    splits = {s: build("taxibj", s, root=str(tmp_path)) for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [20, 3, 8]  # 27 - 7 overlapping windows dropped
    x, y = splits["test"][5]
    assert x.shape == (4, 2, 32, 32) and y.shape == (4, 2, 32, 32)
    assert torch.allclose(x, torch.from_numpy((arrays["X_test"][5] + 1) / 2))
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    train_idx, val_idx = set(splits["train"]._index.tolist()), set(splits["val"]._index.tolist())
    assert not train_idx & val_idx and max(train_idx) + 7 < min(val_idx)
    assert build("taxibj", "train", 2, 3, root=str(tmp_path))[0][0].shape == (2, 2, 32, 32)


def write_bj_h5(path: Path, first_day: str, days: int, drop_slots: int = 0, seed: int = 0):
    import datetime as dt

    import h5py

    start = dt.datetime.strptime(first_day, "%Y%m%d")
    dates = [((start + dt.timedelta(days=d)).strftime("%Y%m%d") + f"{s:02d}").encode()
             for d in range(days) for s in range(1, 49)]
    dates = dates[: len(dates) - drop_slots]
    data = np.random.default_rng(seed).uniform(0, 900, (len(dates), 2, 32, 32)).astype(np.float64)
    with h5py.File(path, "w") as f:
        f["data"], f["date"] = data, np.array(dates)
    return data


def test_taxibj_h5_split_by_date_and_round_trip(tmp_path):
    a = write_bj_h5(tmp_path / "BJ13_M32x32_T30_InOut.h5", "20130701", 3, seed=1)
    b = write_bj_h5(tmp_path / "BJ14_M32x32_T30_InOut.h5", "20140301", 4, drop_slots=5, seed=2)  # last day incomplete
    kw = {"root": str(tmp_path), "test_days": 1, "val_days": 1}
    splits = {s: build("taxibj", s, **kw) for s in ("train", "val", "test")}
    # complete days: 3 + 3; train 4 days, val 1, test 1; 8-frame windows inside runs of consecutive slots
    assert len(splits["test"]) == 48 - 7 and len(splits["val"]) == 48 - 7
    assert len(splits["train"]) == (3 * 48 - 7) + (48 - 7)  # July 2013 and March 2014 are not contiguous
    raw_train = np.concatenate([a, b[:48]])
    low, high = raw_train.min(), raw_train.max()
    assert splits["train"].raw_range == pytest.approx((low, high))
    x, _y = splits["test"][0]
    assert x.shape == (4, 2, 32, 32) and splits["test"].mean == 0.0 and splits["test"].std == 1.0
    raw = x.double().numpy() * (high - low) + low  # undo the scaling: the file's first test-day slots
    assert np.allclose(raw, b[2 * 48 : 2 * 48 + 4], atol=1e-3)
    assert float(splits["train"][0][0].min()) >= 0.0


def test_taxibj_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="does not exist.*dataset.npz"):
        build("taxibj", root=str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="neither dataset.npz nor"):
        build("taxibj", root=str(tmp_path))
    np.savez(tmp_path / "dataset.npz", X_train=np.zeros((3, 4, 2, 32, 32)))
    with pytest.raises(DataError, match="missing arrays"):
        build("taxibj", root=str(tmp_path))
    write_taxibj_npz(tmp_path / "dataset.npz")
    with pytest.raises(DataError, match="4 -> 4 frames per sample.*data.in_frames = 6"):
        build("taxibj", "train", 6, 4, root=str(tmp_path))
    data = (tmp_path / "dataset.npz").read_bytes()
    (tmp_path / "dataset.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="corrupt or truncated"):
        build("taxibj", root=str(tmp_path))
    (tmp_path / "dataset.npz").unlink()
    (tmp_path / "BJ13_M32x32_T30_InOut.h5").write_bytes(b"\x89HDF\r\n garbage")
    with pytest.raises(DataError, match="BJ13.*corrupt or truncated"):
        build("taxibj", root=str(tmp_path))


# ----------------------------------------------------------------------------- WeatherBench

def write_weatherbench(root: Path, years=(2010, 2011, 2012, 2013), hours=48, grid=(32, 64)):
    import xarray as xr

    folder = root / "2m_temperature"
    folder.mkdir(parents=True)
    raw = {}
    for k, year in enumerate(years):
        time = np.datetime64(f"{year}-01-01T00") + np.arange(hours).astype("timedelta64[h]")
        values = (250 + 10 * k + 5 * np.random.default_rng(year).standard_normal((hours, *grid))).astype(np.float32)
        xr.Dataset({"t2m": (("time", "lat", "lon"), values)},
                   coords={"time": time, "lat": np.linspace(-87.2, 87.2, grid[0]),
                           "lon": np.linspace(0, 354.4, grid[1])}).to_netcdf(folder / f"2m_temperature_{year}_5.625deg.nc")
        raw[year] = values
    return raw


def test_weatherbench_years_stats_and_round_trip(tmp_path):
    raw = write_weatherbench(tmp_path)
    kw = {"root": str(tmp_path), "train_years": [2010, 2011], "val_years": 2012, "test_years": 2013, "step": 2, "stride": 3}
    splits = {s: build("weatherbench", s, 3, 3, **kw) for s in ("train", "val", "test")}
    train_values = np.concatenate([raw[2010], raw[2011]]).astype(np.float64)
    for ds in splits.values():  # statistics of the training years only, in every split
        assert ds.mean[0] == pytest.approx(train_values.mean(), rel=1e-6)
        assert ds.std[0] == pytest.approx(train_values.std(), rel=1e-5)
    # windows of 6 frames 2 h apart span 11 h: starts 0, 3, ..., 36 in each 48-hour year
    assert len(splits["val"]) == len(splits["test"]) == 13
    x, y = splits["test"][1]
    assert x.shape == (3, 1, 32, 64) and y.shape == (3, 1, 32, 64)
    ds = splits["test"]
    restored = torch.cat([x, y]).numpy()[:, 0] * ds.std[0] + ds.mean[0]
    assert np.allclose(restored, raw[2013][3:15:2], atol=1e-3)
    assert abs(float(splits["train"][0][0].mean())) < 3  # normalised
    assert splits["train"].frame_shape(variable="t2m") == (1, 32, 64)


def test_weatherbench_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="does not exist.*WeatherBench"):
        build("weatherbench", root=str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="2m_temperature_2010_5.625deg.nc not found"):
        build("weatherbench", root=str(tmp_path))
    write_weatherbench(tmp_path, years=(2010, 2011, 2012))
    with pytest.raises(DataError, match="overlap in \\[2011\\]"):
        build("weatherbench", root=str(tmp_path), train_years=[2010, 2011], val_years=2011, test_years=2012)
    with pytest.raises(DataError, match="no window of 100 frames"):
        build("weatherbench", "val", 50, 50, root=str(tmp_path), train_years=2010, val_years=2011, test_years=2012)
    path = tmp_path / "2m_temperature" / "2m_temperature_2012_5.625deg.nc"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match="2012_5.625deg.nc: cannot open.*corrupt or truncated"):
        build("weatherbench", "test", root=str(tmp_path), train_years=2010, val_years=2011, test_years=2012)
    other = tmp_path / "coarse"
    write_weatherbench(other, years=(2010, 2011, 2012), grid=(16, 32))
    with pytest.raises(DataError, match="grid \\(16, 32\\), expected 32x64"):
        build("weatherbench", root=str(other), train_years=2010, val_years=2011, test_years=2012)


# ----------------------------------------------------------------------------- KTH

def moving_square(frames: int, size=(120, 160), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    video = np.full((frames, *size), 40, np.uint8)
    y, x = rng.integers(10, size[0] - 40), rng.integers(10, size[1] - 80)
    for t in range(frames):
        video[t, y : y + 30, x + 2 * t : x + 2 * t + 30] = 220
    return video


def write_kth(root: Path, persons=(1, 2, 17), frames=36, as_folders=False):
    from pdr.data.video_io import write_video

    for p in persons:
        folder = root / "boxing"
        folder.mkdir(parents=True, exist_ok=True)
        video = moving_square(frames, seed=p)
        if as_folders:
            import imageio.v3 as iio

            clip = folder / f"person{p:02d}_boxing_d1"
            clip.mkdir()
            for t, frame in enumerate(video):
                iio.imwrite(clip / f"image_{t + 1:04d}.png", frame)
        else:
            write_video(folder / f"person{p:02d}_boxing_d1_uncomp.avi", video)


@pytest.mark.parametrize("as_folders", [False, True], ids=["avi", "png-folders"])
def test_kth_split_by_person_and_resize(tmp_path, as_folders):
    write_kth(tmp_path, as_folders=as_folders)
    kw = {"root": str(tmp_path), "resize": True, "clip_stride": 5, "eval_clip_stride": 30}
    train = build("kth", "train", 10, 20, **kw)
    test = build("kth", "test", 10, 20, **kw)
    assert len(train) == 2 * 2 and len(test) == 1  # 36 frames: clips start at 0, 5 (train) and 0 (test)
    persons = lambda ds: {int(s.path.name[6:8]) for s in ds.clips.sources}
    assert persons(train) == {1, 2} and persons(test) == {17}
    x, y = test[0]
    assert x.shape == (10, 1, 128, 128) and y.shape == (20, 1, 128, 128)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert 0.1 < float(x.min()) + 0.05 and float(x.max()) > 0.75  # background ~40/255, square ~220/255
    # the square moves right: its centre of mass moves between the first and the last frame
    seq = torch.cat([x, y])[:, 0]
    cols = torch.arange(128.0)
    com = lambda f: float(((f > 0.5).float().sum(0) * cols).sum() / (f > 0.5).float().sum())
    assert com(seq[-1]) > com(seq[0]) + 20


def test_kth_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="does not exist.*csc.kth.se"):
        build("kth", root=str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="no KTH video"):
        build("kth", root=str(tmp_path))
    write_kth(tmp_path, persons=(1,), frames=36)
    with pytest.raises(DataError, match="frames are 120x160 but data.image_size asks 128x128; set data.resize: true"):
        build("kth", "train", 10, 20, root=str(tmp_path))
    with pytest.raises(DataError, match="longest train video has 36 frames"):
        build("kth", "train", 20, 20, root=str(tmp_path), resize=True)
    with pytest.raises(DataError, match="unknown \\['dancing'\\]"):
        build("kth", root=str(tmp_path), actions=["dancing"])
    video = tmp_path / "boxing" / "person01_boxing_d1_uncomp.avi"
    video.write_bytes(video.read_bytes()[:1500])
    with pytest.raises(DataError, match="person01_boxing_d1_uncomp.avi.*corrupt or truncated"):
        build("kth", "train", 10, 20, root=str(tmp_path), resize=True)[0]


# ----------------------------------------------------------------------------- Human3.6M

def write_human(root: Path, folders=("S1_Walking.54138969", "S5_Eating.1", "S9_Walking.1", "S11_Phoning.2"),
                frames=25, size=32):
    import imageio.v3 as iio

    for k, name in enumerate(folders):
        folder = root / name
        folder.mkdir(parents=True)
        for t in range(frames):
            image = np.zeros((size, size, 3), np.uint8)
            image[..., 0], image[..., 1], image[..., 2] = 10 * k, 5 * t, 200
            iio.imwrite(folder / f"{name}_{t:06d}.jpg", image, quality=100)


def test_human36m_split_by_subject(tmp_path):
    write_human(tmp_path)
    kw = {"root": str(tmp_path), "image_size": 32, "frame_step": 3, "clip_stride": 2, "eval_clip_stride": 100}
    train, test = build("human36m", "train", **kw), build("human36m", "test", **kw)
    subjects = lambda ds: {s.path.name.split("_")[0] for s in ds.clips.sources}
    assert subjects(train) == {"S1", "S5"} and subjects(test) == {"S9", "S11"}
    assert len(train) == 2 * 2 and len(test) == 2  # 8 frames 3 apart span 22 of 25 frames
    x, y = train[1]
    assert x.shape == (4, 3, 32, 32) and y.shape == (4, 3, 32, 32)
    # frames 3 apart, starting at source frame 2: green = 5 * t / 255
    green = torch.cat([x, y])[:, 1].mean(dim=(1, 2)) * 255
    assert torch.allclose(green, torch.tensor([5.0 * t for t in range(2, 25, 3)]), atol=2)


def test_human36m_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="does not exist.*human3.6m"):
        build("human36m", root=str(tmp_path / "nowhere"))
    write_human(tmp_path, folders=("S1_Walking.1",), frames=10)
    with pytest.raises(DataError, match="no frame folder of subjects \\['S11', 'S9'\\]"):
        build("human36m", "test", root=str(tmp_path))
    with pytest.raises(DataError, match="frames are 32x32 but data.image_size asks 256x256"):
        build("human36m", root=str(tmp_path), frame_step=1)
    with pytest.raises(DataError, match="the longest train video has 10 frames, fewer than the 36 needed"):
        build("human36m", root=str(tmp_path), image_size=32)
    with pytest.raises(DataError, match="train_subjects overlaps"):
        build("human36m", root=str(tmp_path), train_subjects=[1, 9])


# ----------------------------------------------------------------------------- tools/prepare_data.py

def test_prepare_data_reports_present_missing_and_split_sizes(tmp_path, capsys):
    from pdr.cli.prepare_data import main

    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", fake_digits(40))
    assert main(["moving_mnist", "--root", str(tmp_path), "--set", "data.val_digits=5", "data.test_digits=5"]) == 0
    out = capsys.readouterr().out
    assert "[present] t10k-images-idx3-ubyte.gz" in out and "[missing] train-images-idx3-ubyte[.gz]" in out
    assert "train   10,000" in out and "val      1,000" in out

    write_taxibj_npz(tmp_path / "dataset.npz")
    assert main(["taxibj", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "[present] dataset.npz" in out and "[missing] BJ16_M32x32_T30_InOut.h5" in out
    assert "train       20" in out and "test         8" in out

    (tmp_path / "wb").mkdir()
    assert main(["weatherbench", "--root", str(tmp_path / "wb")]) == 1
    out = capsys.readouterr().out
    assert "[missing] 2m_temperature_2017_5.625deg.nc  [test]" in out
    assert "test  unusable: data.root:" in out and "2m_temperature_2017_5.625deg.nc not found" in out
    assert "not ready" in out
