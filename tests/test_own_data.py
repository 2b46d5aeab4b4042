"""A user's own data with a config only: `arrays` (npy, npz, HDF5) and `video_folder` (mp4, avi, gif, png/jpg
frame folders), on files written here in each real format; bad input gets one line naming the file."""
from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import pdr.data  # noqa: F401  (registers the datasets)
from pdr.data.statistics import ChannelStats
from pdr.errors import DataError
from pdr.registry import DATASETS


def build(name, split="train", in_frames=3, out_frames=2, **kwargs):
    return DATASETS.build(name, split=split, in_frames=in_frames, out_frames=out_frames, **kwargs)


def clip_of(ds, index) -> np.ndarray:
    x, y = ds[index]
    return torch.cat([x, y]).numpy()


def numbered_sequences(n: int, frames: int, height=8, width=10) -> np.ndarray:
    """uint8 (N, T, H, W): sequence i, frame t holds 10 * i + t everywhere but a bright 2x2 corner (a pattern
    that tells sequences, frames and axes apart)."""
    out = (10 * np.arange(n)[:, None, None, None] + np.arange(frames)[None, :, None, None]).astype(np.uint8)
    out = np.broadcast_to(out, (n, frames, height, width)).copy()
    out[:, :, :2, :2] = 255
    return out


# ----------------------------------------------------------------------------- arrays


def test_npy_layouts_dtype_scaling_and_memory_mapping(tmp_path):
    seq = numbered_sequences(10, 7)
    np.save(tmp_path / "nthw.npy", seq)
    np.save(tmp_path / "tnhw.npy", seq.transpose(1, 0, 2, 3))  # as Moving MNIST's mnist_test_seq.npy
    rgb = np.stack([seq, 255 - seq, seq // 2], axis=-1).astype(np.float32) / 255.0  # NTHWC floats, kept as they are
    np.save(tmp_path / "nthwc.npy", rgb)
    wide = (seq.astype(np.uint16) * 257)[:, :, None]  # NTCHW uint16: / 65535
    np.save(tmp_path / "ntchw.npy", wide)
    common = dict(image_size=[8, 10], split_fractions=[0.6, 0.2, 0.2], seed=3, in_frames=4, out_frames=3)
    grey = {layout: build("arrays", root=str(tmp_path / f"{layout.lower()}.npy"), layout=layout, **common)
            for layout in ("NTHW", "TNHW", "NTCHW")}
    colour = build("arrays", root=str(tmp_path / "nthwc.npy"), layout="NTHWC", channels=3, **common)
    first = grey["NTHW"].sequences
    assert len(first) == 6 and all(np.array_equal(ds.sequences, first) for ds in [*grey.values(), colour])
    for i, sequence in enumerate(first):
        expected = seq[sequence] / 255.0
        for ds in grey.values():
            assert np.allclose(clip_of(ds, i)[:, 0], expected, atol=1e-6)
        assert np.allclose(clip_of(colour, i), rgb[sequence].transpose(0, 3, 1, 2))
    assert isinstance(grey["NTHW"].files[0].array(), np.memmap)
    assert grey["TNHW"].frame_shape(image_size=[8, 10]) == (1, 8, 10)


def test_value_range_and_clips_cut_with_strides(tmp_path):
    seq = numbered_sequences(5, 30).astype(np.float32) * 2 - 100  # floats in [-100, 410]
    np.save(tmp_path / "x.npy", seq)
    kw = dict(root=str(tmp_path / "x.npy"), layout="NTHW", image_size=[8, 10], value_range=[-100, 410],
              in_frames=4, out_frames=6, clip_stride=5, split_fractions=[3, 1, 1])
    train, val = build("arrays", "train", **kw), build("arrays", "val", **kw)
    assert len(train) == 3 * 5 and len(val) == 3  # starts 0, 5, ..., 20 in train; 0, 10, 20 (back to back) in val
    assert [tuple(c) for c in train.clips[:5]] == [(train.sequences[0], s) for s in (0, 5, 10, 15, 20)]
    sequence, start = train.clips[7]
    assert np.allclose(clip_of(train, 7)[:, 0], (seq[sequence, start : start + 10] + 100) / 510, atol=1e-6)
    stepped = build("arrays", "val", **{**kw, "frame_step": 2})  # 10 frames 2 apart span 19 of 30: one clip
    assert len(stepped) == 1 and np.allclose(clip_of(stepped, 0)[:, 0], (seq[val.sequences[0], 0:19:2] + 100) / 510)


def test_npz_stored_and_compressed_and_hdf5_read_a_sequence_at_a_time(tmp_path):
    import h5py

    seq = numbered_sequences(6, 5)
    np.savez(tmp_path / "stored.npz", frames=seq, labels=np.arange(6))
    np.savez_compressed(tmp_path / "packed.npz", frames=seq)
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f.create_dataset("group/frames", data=seq, chunks=(1, 5, 8, 10))
    kw = dict(layout="NTHW", image_size=[8, 10], split_fractions=[4, 1, 1], cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"data.key: .*stored.npz holds 2 arrays \['frames', 'labels'\]; name the one"):
        build("arrays", root=str(tmp_path / "stored.npz"), **kw)
    stored = build("arrays", root=str(tmp_path / "stored.npz"), key="frames", **kw)
    packed = build("arrays", root=str(tmp_path / "packed.npz"), **kw)
    hdf5 = build("arrays", root=str(tmp_path / "data.h5"), **kw)
    assert isinstance(stored.files[0].array(), np.memmap)  # in place, inside the archive
    assert isinstance(packed.files[0].array(), np.memmap)  # decompressed once into the cache folder
    assert [p.suffix for p in (tmp_path / "cache").iterdir()] == [".npy"]
    for ds in (stored, packed, hdf5):
        assert np.array_equal(ds.sequences, stored.sequences)
        for i, sequence in enumerate(ds.sequences):
            assert np.allclose(clip_of(ds, i)[:, 0], seq[sequence] / 255.0)
    with zipfile.ZipFile(tmp_path / "stored.npz") as archive:
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())


def test_split_by_fractions_with_a_seed_or_by_files(tmp_path):
    np.save(tmp_path / "all.npy", numbered_sequences(20, 5))
    kw = dict(root=str(tmp_path / "all.npy"), layout="NTHW", image_size=[8, 10])
    splits = {s: set(build("arrays", s, **kw).sequences.tolist()) for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [16, 2, 2]
    assert set.union(*splits.values()) == set(range(20)) and not (splits["train"] & (splits["val"] | splits["test"]))
    assert set(build("arrays", "train", **kw).sequences.tolist()) == splits["train"]  # the same seed, the same split
    assert set(build("arrays", "train", seed=1, **kw).sequences.tolist()) != splits["train"]

    folder = tmp_path / "own"
    folder.mkdir()
    for name, n in (("a", 4), ("b", 3), ("test", 2)):
        np.save(folder / f"{name}.npy", numbered_sequences(n, 5) + {"a": 0, "b": 100, "test": 200}[name])
    kw = dict(root=str(folder), layout="NTHW", image_size=[8, 10])
    first_value = lambda ds: sorted(int(clip_of(ds, i)[0, 0, 5, 5] * 255 + 0.5) for i in range(len(ds)))
    test = build("arrays", "test", test_files="test.npy", **kw)
    assert first_value(test) == [200, 210]
    # the files no split names (a, b) are divided between train and val
    train, val = (build("arrays", s, test_files="test.npy", split_fractions=[5, 2, 0], **kw) for s in ("train", "val"))
    assert len(train) == 5 and len(val) == 2 and not set(first_value(train)) & set(first_value(val))
    assert set(first_value(train) + first_value(val)) == {0, 10, 20, 30, 100, 110, 120}
    # every file named by a split: val is cut from the train files
    named = dict(train_files="[ab].npy", test_files=["test.npy"], split_fractions=[0.75, 0.25, 0], **kw)
    train, val = build("arrays", "train", **named), build("arrays", "val", **named)
    assert (len(train), len(val)) == (5, 2) and not set(first_value(train)) & set(first_value(val))


def test_standard_normalisation_uses_streamed_train_statistics(tmp_path, caplog):
    rng = np.random.default_rng(0)
    data = np.stack([rng.normal(280.0, 9.0, (12, 6, 8, 10)), rng.normal(-3.0, 0.5, (12, 6, 8, 10))], axis=2)
    np.save(tmp_path / "fields.npy", data.astype(np.float32))
    kw = dict(root=str(tmp_path / "fields.npy"), layout="NTCHW", channels=2, image_size=[8, 10],
              normalise="standard", split_fractions=[0.5, 0.25, 0.25], seed=7)
    with caplog.at_level(logging.INFO, logger="pdr"):
        train = build("arrays", "train", **kw)
        val = build("arrays", "val", **kw)
    assert caplog.text.count("data.normalise: standard") == 1  # computed once per process
    picked = data[train.sequences].astype(np.float32).astype(np.float64)  # independent of the dataset's pass
    mean, std = picked.mean(axis=(0, 1, 3, 4)), picked.std(axis=(0, 1, 3, 4))
    assert np.allclose(train.mean, mean, rtol=1e-9) and np.allclose(train.std, std, rtol=1e-6)
    assert val.mean == train.mean and val.std == train.std
    x, y = val[0]
    raw = data[val.sequences[0], :5].astype(np.float32)
    assert torch.allclose(torch.cat([x, y]), torch.from_numpy((raw - mean[:, None, None]) / std[:, None, None]).float(),
                          atol=1e-4)
    assert "values of" in caplog.text and "span [" in caplog.text  # kelvin is not [0, 1]: said once


def test_channel_stats_do_not_depend_on_batching():
    rng = np.random.default_rng(1)
    frames = rng.normal(1e4, 3.0, (50, 3, 4, 5))  # a large mean: a naive sum of squares would lose the variance
    whole, parts = ChannelStats(3), ChannelStats(3)
    whole.add(frames)
    for cut in np.split(frames, [1, 7, 30]):
        parts.add(cut)
    assert np.allclose(whole.mean, frames.mean(axis=(0, 2, 3))) and np.allclose(parts.mean, whole.mean)
    assert np.allclose(parts.std, frames.std(axis=(0, 2, 3)), rtol=1e-9) and parts.frames == 50


def test_array_bad_inputs_name_the_file_and_what_was_expected(tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, numbered_sequences(6, 5))
    kw = dict(layout="NTHW", image_size=[8, 10])
    cases = [
        (dict(root=str(tmp_path / "nowhere.npy")), rf"data.root: {tmp_path}/nowhere.npy does not exist; point it at"),
        (dict(root=str(tmp_path / "empty")), rf"data.root: no array files \(.npy, .npz, .h5, .hdf5\) in {tmp_path}/empty"),
        (dict(root=str(good), layout="NTHWC"), rf"{good}: data.layout NTHWC names 5 axes, but the array has shape "
                                               r"\(6, 5, 8, 10\) \(4 axes\); give one letter per axis: NTHW for"),
        (dict(root=str(good), layout="TCHW", channels=3),
         r"layout TCHW\): 5 channels per frame, but data.channels is 3; set data.channels, or check data.layout"),
        (dict(root=str(good), layout="NTXW"), r"data.layout: 'NTXW' is not a layout"),
        (dict(root=str(good), in_frames=4, out_frames=2),
         rf"{good} \(shape .*\): sequences have 5 frames, fewer than the 6 that data.in_frames \+ data.out_frames"),
        (dict(root=str(good), image_size=None), r"data.image_size: not set; declare the frame size .* e.g. the arrays' "
                                                r"own \[8, 10\]"),
        (dict(root=str(good), image_size=8),
         r"frames are 8x10 but data.image_size asks 8x8; set data.resize: true .* data.crop: center"),
        (dict(root=str(good), value_range=[1, 1]), r"data.value_range: expected \[low, high\] with high > low"),
        (dict(root=str(good), split_fractions=[1, 0, 1]), r"the val split gets a fraction of 0"),
    ]
    (tmp_path / "empty").mkdir()
    for changes, message in cases:
        with pytest.raises(DataError, match=message):
            build("arrays", **{**kw, **changes})
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    np.save(mixed / "a.npy", numbered_sequences(4, 5))
    np.save(mixed / "b.npy", numbered_sequences(4, 5, height=6))
    with pytest.raises(DataError, match=rf"{mixed}/b.npy \(shape \(4, 5, 6, 10\), layout NTHW\): frames are 6x10 but "
                                        r"data.image_size asks 8x10"):
        build("arrays", root=str(mixed), **kw)
    broken = numbered_sequences(6, 5).astype(np.float32)
    broken[4, 3, 1, 1] = np.nan
    np.save(tmp_path / "nan.npy", broken)
    message = rf"{tmp_path}/nan.npy: sequence 4 holds NaN or infinite values .* first at frame 3"
    nan = dict(root=str(tmp_path / "nan.npy"), split_fractions=[1, 1, 1], **kw)
    seed = next(s for s in range(20) if 4 in build("arrays", "train", seed=s, **nan).sequences)
    with pytest.raises(DataError, match=message):  # found by the statistics' pass, before training
        build("arrays", "test", seed=seed, normalise="standard", **nan)
    train = build("arrays", "train", seed=seed, **nan)
    with pytest.raises(DataError, match=message):  # or when the sequence is read
        [train[i] for i in range(len(train))]


# ----------------------------------------------------------------------------- video_folder


def numbered_video(video: int, frames: int, height=24, width=32) -> np.ndarray:
    """uint8 (T, H, W, 3): red = 8 * t, green = 20 * video, blue 128 (flat colours every codec keeps)."""
    out = np.empty((frames, height, width, 3), np.uint8)
    out[..., 0] = 8 * np.arange(frames)[:, None, None]
    out[..., 1], out[..., 2] = 20 * video, 128
    return out


def write_any(path: Path, frames: np.ndarray) -> None:
    """A video file (mp4, avi, gif) or, for a path without suffix + '.png'/'.jpg' folder name, a frame folder."""
    import imageio.v3 as iio

    from pdr.data.video_io import write_video

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".png", ".jpg"):
        folder = path.with_suffix("")
        folder.mkdir(parents=True)
        for t, frame in enumerate(frames):
            iio.imwrite(folder / f"frame_{t}{path.suffix}", frame, **({"quality": 100} if path.suffix == ".jpg" else {}))
    elif path.suffix == ".gif":
        iio.imwrite(path, frames, duration=40, loop=0)
    else:
        write_video(path, frames)


def test_every_video_format_is_read_frame_by_frame(tmp_path):
    formats = (".mp4", ".avi", ".gif", ".png", ".jpg")
    for k, suffix in enumerate(formats * 2):
        write_any(tmp_path / "videos" / f"video_{k}{suffix}", numbered_video(k, 12))
    kw = dict(root=str(tmp_path / "videos"), image_size=[24, 32], in_frames=3, out_frames=3, clip_stride=3,
              split_fractions=[6, 2, 2])
    seen = []
    for split in ("train", "val", "test"):
        ds = build("video_folder", split, **kw)
        for i in range(len(ds)):
            source, start = ds.clips.clips[i]
            path = ds.clips.sources[source].path
            k = int(path.name.split("_")[1].split(".")[0])
            clip = clip_of(ds, i) * 255
            expected = numbered_video(k, 12)[start : start + 6].transpose(0, 3, 1, 2)
            tolerance = 6 if path.suffix in (".mp4", ".avi", ".jpg", "") else 1  # lossy codecs, by a few levels
            assert np.abs(clip.mean(axis=(2, 3)) - expected.mean(axis=(2, 3))).max() < tolerance, path
            seen.append(path.suffix or "folder")
    assert {".mp4", ".avi", ".gif", "folder"} <= set(seen)


def test_videos_are_split_by_video_never_by_clip(tmp_path):
    for k in range(10):
        write_any(tmp_path / "v" / f"clip_{k}.mp4", numbered_video(k, 20))
    kw = dict(root=str(tmp_path / "v"), image_size=[24, 32], in_frames=2, out_frames=2, clip_stride=2)
    splits = {s: build("video_folder", s, **kw) for s in ("train", "val", "test")}
    videos = {s: {p.name for p in ds.videos} for s, ds in splits.items()}
    assert [len(videos[s]) for s in ("train", "val", "test")] == [8, 1, 1]
    assert set.union(*videos.values()) == {f"clip_{k}.mp4" for k in range(10)}
    assert not videos["train"] & (videos["val"] | videos["test"]) and not videos["val"] & videos["test"]
    for split, ds in splits.items():  # every clip comes from one of its split's videos
        assert {ds.clips.sources[i].path.name for i, _ in ds.clips.clips} == videos[split]
    assert len(splits["train"]) == 8 * 9 and len(splits["test"]) == 5  # stride 2 in train, 4 (back to back) in test

    # train/ and test/ folders: val is held out of train's videos
    for k in range(6):
        write_any(tmp_path / "f" / ("test" if k > 3 else "train") / f"clip_{k}.mp4", numbered_video(k, 8))
    kw = dict(root=str(tmp_path / "f"), image_size=[24, 32], in_frames=2, out_frames=2, train_files="train",
              test_files="test", split_fractions=[3, 1, 0])
    names = {s: {p.name for p in build("video_folder", s, **kw).videos} for s in ("train", "val", "test")}
    assert names["test"] == {"clip_4.mp4", "clip_5.mp4"} and len(names["val"]) == 1 and len(names["train"]) == 3
    assert names["train"] | names["val"] == {f"clip_{k}.mp4" for k in range(4)}


def test_resize_and_centre_crop_to_the_declared_size(tmp_path):
    frames = np.zeros((6, 40, 80, 3), np.uint8)
    frames[:, :, 20:60] = 200  # a bright centre square, dark sides
    frames[:, 10:30, 30:50, 1] = 50  # and a green-free core
    write_any(tmp_path / "v" / "wide.png", frames)
    kw = dict(root=str(tmp_path / "v"), in_frames=2, out_frames=2, split_fractions=[1, 1, 1],
              train_files="wide", val_files="wide", test_files="wide")
    centre = clip_of(build("video_folder", image_size=20, resize=True, crop="center", **kw), 0)[0] * 255
    expected = frames[0, :, 20:60].reshape(20, 2, 20, 2, 3).mean(axis=(1, 3)).transpose(2, 0, 1)  # 2x2 area means
    assert np.allclose(centre, expected, atol=0.01)
    stretched = clip_of(build("video_folder", image_size=20, resize=True, **kw), 0)[0] * 255
    assert np.allclose(stretched, frames[0].reshape(20, 2, 20, 4, 3).mean(axis=(1, 3)).transpose(2, 0, 1), atol=0.01)
    cut = clip_of(build("video_folder", image_size=[20, 30], crop="center", **kw), 0)[0] * 255
    assert np.array_equal(cut, frames[0, 10:30, 25:55].transpose(2, 0, 1))
    grey = clip_of(build("video_folder", image_size=[40, 80], channels=1, **kw), 0)[0, 0] * 255
    assert np.allclose(grey, np.round(frames[0] @ np.array([0.299, 0.587, 0.114])), atol=0.01)


def test_video_statistics_are_those_of_the_train_videos(tmp_path):
    rng = np.random.default_rng(2)
    written = {}
    for k in range(5):
        written[f"clip_{k}"] = rng.integers(0, 256, (7, 8, 12, 3), dtype=np.uint8)
        write_any(tmp_path / f"clip_{k}.png", written[f"clip_{k}"])
    kw = dict(root=str(tmp_path), image_size=[8, 12], in_frames=2, out_frames=2, normalise="standard",
              split_fractions=[3, 1, 1])
    train, test = build("video_folder", "train", **kw), build("video_folder", "test", **kw)
    values = np.concatenate([written[p.name] for p in train.videos]).reshape(-1, 3) / 255.0
    assert np.allclose(train.mean, values.mean(axis=0)) and np.allclose(train.std, values.std(axis=0))
    assert test.mean == train.mean
    x, _ = test[0]
    raw = written[test.videos[0].name][:2].transpose(0, 3, 1, 2) / 255.0
    expected = (raw - np.reshape(train.mean, (3, 1, 1))) / np.reshape(train.std, (3, 1, 1))
    assert torch.allclose(x, torch.from_numpy(expected).float(), atol=1e-5)


def test_video_bad_inputs_name_the_file_and_what_was_expected(tmp_path, caplog):
    kw = dict(image_size=[24, 32], in_frames=3, out_frames=3)
    with pytest.raises(DataError, match=rf"data.root: {tmp_path}/nowhere does not exist; point it at videos \(.mp4"):
        build("video_folder", root=str(tmp_path / "nowhere"), **kw)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no videos here")
    with pytest.raises(DataError, match=rf"data.root: no videos \(.mp4, .avi, .mkv, .mov, .webm, .gif\) or folders of "
                                        rf"frames \(.png, .jpg, .jpeg, .bmp\) in {tmp_path}/empty"):
        build("video_folder", root=str(tmp_path / "empty"), **kw)
    with pytest.raises(DataError, match=r"data.image_size: not set; declare the frame size the model sees"):
        build("video_folder", root=str(tmp_path / "empty"), in_frames=3, out_frames=3)

    mixed = tmp_path / "mixed"
    for k in range(3):
        write_any(mixed / f"clip_{k}.avi", numbered_video(k, 8, height=24 if k else 16))
    with pytest.raises(DataError, match=rf"{mixed}/clip_0.avi: frames are 16x32 but data.image_size asks 24x32; set "
                                        r"data.resize: true to resize them \(area averaging\), data.crop: center"):
        [build("video_folder", s, root=str(mixed), split_fractions=[1, 1, 1], **kw) for s in ("train", "val", "test")]

    odd = tmp_path / "odd"
    write_any(odd / "clip.png", numbered_video(0, 8))
    write_any(odd / "other.png", numbered_video(1, 8))
    write_any(odd / "third.png", numbered_video(2, 8))
    import imageio.v3 as iio

    iio.imwrite(odd / "clip" / "frame_2.png", np.zeros((20, 32, 3), np.uint8))
    one = dict(root=str(odd), train_files="clip", val_files="other", test_files="third", **kw)
    with pytest.raises(DataError, match=rf"{odd}/clip/frame_2.png: frames are 20x32 but data.image_size asks 24x32"):
        build("video_folder", **one)[0]

    short = tmp_path / "short"
    for k, length in enumerate((5, 4, 9, 9)):
        write_any(short / f"clip_{k}.mp4", numbered_video(k, length))
    named = dict(root=str(short), train_files=["clip_0.mp4", "clip_1.mp4", "clip_2.mp4"], val_files="clip_3.mp4",
                 test_files="clip_3.mp4")
    with caplog.at_level(logging.WARNING, logger="pdr"):
        assert len(build("video_folder", **named, **kw)) == 1
    assert "2 of the 3 train videos have fewer than the 6 frames" in caplog.text and "clip_0.mp4 (5)" in caplog.text
    with pytest.raises(DataError, match=rf"{short}/clip_2.mp4: 9 frames, the most of any train video, fewer than the "
                                        r"10 frames that data.in_frames \+ data.out_frames = 5 \+ 5 frames 1 apart need"):
        build("video_folder", **named, **{**kw, "in_frames": 5, "out_frames": 5})
    with pytest.raises(DataError, match=r"data.test_files: nothing matches .*\*.mov"):
        build("video_folder", **{**named, "test_files": "*.mov"}, **kw)


# ----------------------------------------------------------------------------- runs: statistics kept, the README


def test_train_statistics_are_stored_and_reused_by_evaluation_and_prediction(repo, tmp_path, monkeypatch):
    import pdr
    from pdr.config import load_config
    from pdr.data import statistics
    from pdr.engine import Trainer
    from pdr.engine.checkpoint import load_checkpoint
    from pdr.results.evaluation import evaluate_run

    rng = np.random.default_rng(4)
    data = (rng.normal(5.0, 2.0, (12, 6, 2, 16, 16))).astype(np.float32)
    np.save(tmp_path / "fields.npy", data)
    cfg = load_config(repo / "configs" / "custom" / "arrays.yaml", [
        f"data.root={tmp_path / 'fields.npy'}", "data.layout=NTCHW", "data.channels=2", "data.image_size=16",
        "data.in_frames=3", "data.out_frames=3", "data.normalise=standard", "data.num_workers=0", "data.batch_size=4",
        "model.adapter=null", "model.backbone.hid_S=8", "model.backbone.hid_T=16", "train.max_steps=2",
        "train.tensorboard=false", "eval.metrics=[mse, mae]"])
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    trainer.fit()
    train_rows = data[trainer.train_set.sequences].astype(np.float64)
    mean, std = train_rows.mean(axis=(0, 1, 3, 4)), train_rows.std(axis=(0, 1, 3, 4))
    stored = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["data_stats"]
    assert np.allclose(stored["mean"], mean) and np.allclose(stored["std"], std)
    assert "data.normalise: standard: mean [" in (tmp_path / "run" / "log.txt").read_text()

    # evaluation and prediction read the stored statistics: the training data is never read again for them
    monkeypatch.setattr(statistics, "_COMPUTED", {})
    monkeypatch.setattr(statistics, "standard_statistics", lambda *a, **k: pytest.fail("statistics recomputed"))
    model = pdr.load_run(tmp_path / "run")
    assert model.config["data"]["normalise"] == stored
    result = evaluate_run(tmp_path / "run", save_images=False)
    assert np.isfinite(result.metrics["mse"])
    frames = data[:2, :3]
    scale = lambda v: np.reshape(v, (1, 1, 2, 1, 1))
    with torch.no_grad():
        inside = model(torch.from_numpy((frames - scale(mean)) / scale(std)).float()).numpy()
    assert np.allclose(model.predict(frames), inside * scale(std) + scale(mean), atol=1e-4)


def test_uint8_frames_are_taken_where_the_stored_values_are_8_bit_levels(tmp_path):
    from pdr.data.arrays import ArraySequences
    from pdr.data.video_folder import VideoFolder

    np.save(tmp_path / "bytes.npy", np.zeros((2, 4, 8, 8), np.uint8))
    np.save(tmp_path / "floats.npy", np.zeros((2, 4, 8, 8), np.float32))
    of = ArraySequences.uint8_scale_of
    assert of(root=str(tmp_path / "bytes.npy"), layout="NTHW") == pytest.approx(1 / 255)
    assert of(root=str(tmp_path / "b*.npy"), layout="NTHW") == pytest.approx(1 / 255)  # a glob pattern
    assert of(root=str(tmp_path / "floats.npy"), layout="NTHW") is None  # floats are used as stored
    assert of(root=str(tmp_path / "floats.npy"), layout="NTHW", value_range=[0, 255]) == pytest.approx(1 / 255)
    assert of(root=str(tmp_path / "bytes.npy"), layout="NTHW", value_range=[0, 1000]) is None
    assert of(root=str(tmp_path / "missing.npy"), layout="NTHW") is None
    assert VideoFolder.uint8_scale_of(root=str(tmp_path)) == pytest.approx(1 / 255)


def readme_commands(repo) -> list[list[str]]:
    """The commands of the README's "Training on your own data" section, as argument lists."""
    import shlex

    section = (repo / "README.md").read_text().split("## Training on your own data", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("\n", 1)[1] for b in section.split("```")[1::2] if b.startswith("bash")]
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True) for line in lines if line.strip()]


def test_readme_own_data_commands_train_and_evaluate_from_a_config_only(repo, tmp_path):
    """The README's commands, exactly, in a folder with the repository's tools, a folder of mp4 files and an .npy
    of shape (N, T, H, W)."""
    import subprocess
    import sys

    rng = np.random.default_rng(5)
    for k in range(5):  # 72x96 videos of a square moving right: resized and centre-cropped to 64x64
        video = np.full((40, 72, 96, 3), 30, np.uint8)
        top, left = rng.integers(8, 40, size=2)
        for t in range(40):
            video[t, top : top + 20, left + t : left + t + 20] = (220, 160, 60)
        write_any(tmp_path / "data" / "my_videos" / f"holiday_{k}.mp4", video)
    sequences = np.zeros((16, 20, 64, 64), np.uint8)
    for n in range(16):
        top, left = rng.integers(0, 30, size=2)
        for t in range(20):
            sequences[n, t, top + t : top + t + 14, left : left + 14] = 255
    np.save(tmp_path / "data" / "my_sequences.npy", sequences)
    (tmp_path / "tools").symlink_to(repo / "tools")

    commands = readme_commands(repo)
    assert [c[:2] for c in commands] == [["make", "venv"], *([".venv/bin/python", f"tools/{tool}.py"]
                                                            for tool in ("train", "eval", "train", "eval"))]
    for command in commands[1:]:  # the first builds .venv, which this test runs in already
        proc = subprocess.run([sys.executable, *command[1:]], cwd=tmp_path, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, f"{command}: {proc.stderr[-3000:]}"
        if command[1] == "tools/eval.py":
            name = Path(command[2]).name
            assert f"| {name} |" in proc.stdout, proc.stdout
            assert list((tmp_path / command[2] / "eval" / "gifs").glob("test_*.gif"))
    saved = yaml_data(tmp_path / "runs" / "my_videos" / "config.yaml")
    assert saved["name"] == "video_folder" and saved["root"] == "data/my_videos"


def yaml_data(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())["data"]


@pytest.mark.parametrize("kind", ["layout", "frames", "folder"])
def test_bad_own_data_is_one_line_from_the_command_line(repo, tmp_path, kind):
    import subprocess
    import sys

    np.save(tmp_path / "seq.npy", numbered_sequences(6, 12, 64, 64))
    config, overrides, expected = {
        "layout": ("arrays", [f"data.root={tmp_path / 'seq.npy'}", "data.layout=NTHWC"],
                   f"error: {tmp_path / 'seq.npy'}: data.layout NTHWC names 5 axes, but the array has shape "
                   "(6, 12, 64, 64) (4 axes); give one letter per axis:"),
        "frames": ("arrays", [f"data.root={tmp_path / 'seq.npy'}"],
                   f"error: {tmp_path / 'seq.npy'} (shape (6, 12, 64, 64), layout NTHW): sequences have 12 frames, fewer "
                   "than the 20 that data.in_frames + data.out_frames = 10 + 10 frames 1 apart need"),
        "folder": ("video_folder", [f"data.root={tmp_path / 'holidays'}"],
                   f"error: --set: data.root: {tmp_path / 'holidays'} does not exist; point it at videos (.mp4"),
    }[kind]
    proc = subprocess.run([sys.executable, "tools/train.py", "--config", f"configs/custom/{config}.yaml", "--set",
                           *overrides, "--work-dir", str(tmp_path / "run")], cwd=repo, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(expected), proc.stderr
