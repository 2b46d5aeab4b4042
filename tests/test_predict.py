"""pdr-predict (tools/predict.py): predictions of trained runs on new clips, read from videos, frame folders and
arrays, written as frames, GIFs and a metrics JSON. The latent flow and OpenSTL bridge runs are predicted in
tests/test_latent_flow.py and tests/test_openstl_bridge.py."""
import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import pdr
from pdr.cli.predict import main
from pdr.engine import Trainer
from sized_data import BACKBONES, PREDGS, sized_config

RUNS = {  # one run per backbone family, at frame sizes the backbones do not divide
    "simvp_predgs": (BACKBONES["simvp"], PREDGS, 59, 59),
    "predrnn": (BACKBONES["predrnn"], None, 30, 44),
    "srvp": (BACKBONES["srvp"], None, 40, 36),
}
T_IN, T_OUT = 2, 2


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    for name, (backbone, adapter, h, w) in RUNS.items():
        Trainer(sized_config(backbone, adapter, h, w), root / name, show_progress=False).fit()
    return root


def spot_video(h: int, w: int, frames: int, seed: int = 0) -> np.ndarray:
    """uint8 (T, H, W): the test data set's moving spot."""
    from sized_data import MovingSpot

    seq = MovingSpot("test", frames - 1, 1, height=h, width=w, num_test=seed + 1).sequence(seed)
    return np.round(seq[:, 0] * 255).astype(np.uint8)


def test_predicts_videos_frame_folders_and_arrays(runs, tmp_path, capsys):
    from pdr.data.video_io import write_video

    run = runs / "simvp_predgs"
    h, w, n = 59, 59, 5  # 5 frames: rolled out past the trained 2
    frames = spot_video(h, w, T_IN + 3)
    folder = tmp_path / "inputs" / "folder_clip"
    folder.mkdir(parents=True)
    for i, image in enumerate(frames):
        iio.imwrite(folder / f"frame_{i}.png", image)
    write_video(tmp_path / "inputs" / "movie.mp4", spot_video(70, 90, 6, seed=1))  # another size: resized
    np.save(tmp_path / "inputs" / "batch.npy", np.stack([spot_video(h, w, T_IN, seed=s) for s in (2, 3)]))  # N, T, H, W
    np.savez(tmp_path / "arrays.npz", floats=spot_video(h, w, T_IN, seed=4)[:, None].astype(np.float32) / 255)
    out = tmp_path / "out"
    argv = [str(run), "--input", str(tmp_path / "inputs"), str(tmp_path / "arrays.npz"), "--out", str(out),
            "--frames", str(n), "--batch-size", "2", "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    assert "5 clip(s), 5 frames each" in capsys.readouterr().out
    names = ["batch_000", "batch_001", "folder_clip", "movie", "arrays_floats"]
    for name in names:
        assert sorted(p.name for p in (out / name).iterdir()) == [f"pred_{i:03d}.png" for i in range(n)]
        gif = iio.imread(out / f"{name}.gif", index=None)
        assert gif.shape[0] == T_IN + n
    # the folder's clip holds 3 frames after the observed ones: truth beside the prediction, and scores
    assert iio.imread(out / "folder_clip.gif", index=None).shape[2] > iio.imread(out / "batch_000.gif", index=None).shape[2]
    report = json.loads((out / "metrics.json").read_text())
    assert set(report["clips"]) == set(names) and report["predicted_frames"] == n
    row = report["clips"]["folder_clip"]
    assert row["compared_frames"] == 3 and report["clips"]["movie"]["compared_frames"] == 4
    assert "mse" not in report["clips"]["batch_000"]  # nothing after its observed frames

    # the same numbers by hand: the model on the first frames scaled to [0, 1], scored with NumPy
    model = pdr.load_run(run)
    pred = model.predict(frames[:T_IN, None].astype(np.float32) / 255, num_frames=n)
    truth = frames[T_IN:, None].astype(np.float64) / 255
    err = pred[:3].astype(np.float64) - truth
    assert row["mse"] == pytest.approx((err**2).sum(axis=(1, 2, 3)).mean(), rel=1e-5)
    assert row["mae"] == pytest.approx(np.abs(err).sum(axis=(1, 2, 3)).mean(), rel=1e-5)
    assert row["psnr"] == pytest.approx((-10 * np.log10(((np.clip(pred[:3], 0, 1) - truth) ** 2).mean(axis=(1, 2, 3)))).mean(),
                                        rel=1e-5)
    assert report["mean"]["mse"] == pytest.approx((row["mse"] + report["clips"]["movie"]["mse"]) / 2)
    # the PNGs are the prediction's 8-bit levels, as is a prediction of uint8 input (a level may differ by one where
    # float rounding crosses a half: the command predicted in a batch of two, uint8 input is scaled by 1/255)
    png = np.stack([iio.imread(out / "folder_clip" / f"pred_{i:03d}.png") for i in range(n)]).astype(int)
    for levels in (np.clip(np.round(pred[:, 0] * 255), 0, 255), model.predict(frames[:T_IN, None], num_frames=n)[:, 0]):
        assert np.abs(png - levels).max() <= 1 and (png == levels).mean() > 0.999


@pytest.mark.parametrize("name", ["predrnn", "srvp"])
def test_every_backbone_family_predicts_arrays_as_npy(runs, tmp_path, name):
    h, w = RUNS[name][2:]
    clip = spot_video(h, w, T_IN + 1)[:, None].astype(np.float32) / 255  # (T, C, H, W) in the data's units
    np.save(tmp_path / "clip.npy", clip)
    out = tmp_path / "out"
    assert main([str(runs / name), "--input", str(tmp_path / "clip.npy"), "--out", str(out), "--frames", "4",
                 "--format", "npy", "--no-progress"]) == 0
    written = np.load(out / "clip" / "pred.npy")
    model = pdr.load_run(runs / name)
    torch.manual_seed(0)  # SRVP samples: pdr-predict seeds with --seed 0
    expected = model.predict(clip[:T_IN], num_frames=4)
    assert written.shape == (4, 1, h, w)
    np.testing.assert_allclose(written, expected, rtol=1e-5, atol=1e-6)
    report = json.loads((out / "metrics.json").read_text())
    assert report["clips"]["clip"]["compared_frames"] == 1


def test_bad_inputs_get_one_clear_line(runs, tmp_path, capsys):
    run = str(runs / "simvp_predgs")
    cases = []
    cases.append(([str(tmp_path / "missing.mp4")], "--input: not found"))
    (tmp_path / "notes.txt").write_text("x")
    cases.append(([str(tmp_path / "notes.txt")], "notes.txt: not a video"))
    np.save(tmp_path / "short.npy", np.zeros((1, 59, 59), dtype=np.float32))
    cases.append(([str(tmp_path / "short.npy")], "short.npy: 1 frames, fewer than the 2 observed frames"))
    np.save(tmp_path / "wrong.npy", np.zeros((3, 1, 32, 32), dtype=np.float32))
    cases.append(([str(tmp_path / "wrong.npy")], r"wrong.npy: an array of shape \(3, 1, 32, 32\); the run predicts "
                                                 r"59x59 frames of 1 channel\(s\)"))
    np.save(tmp_path / "ints.npy", np.zeros((3, 59, 59), dtype=np.int64))
    cases.append(([str(tmp_path / "ints.npy")], "ints.npy: an array of int64"))
    (tmp_path / "empty").mkdir()
    cases.append(([str(tmp_path / "empty")], "empty: no videos, arrays or folders"))
    import re

    for inputs, message in cases:
        assert main([run, "--input", *inputs, "--out", str(tmp_path / "o"), "--no-progress"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines[-1].startswith("error: ") and re.search(message, lines[-1]), lines
        assert not any(line.startswith(("Traceback", "error")) for line in lines[:-1]), lines
