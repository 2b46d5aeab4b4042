"""The CLEVRER loader on tiny mp4 + annotation JSON files written by the test."""
import json

import numpy as np
import pytest
import torch

import pdr.data  # noqa: F401  (registers clevrer)
from pdr.data.video_io import write_video
from pdr.errors import DataError
from pdr.registry import DATASETS

RANGES = {"train_videos": [0, 2], "val_videos": [2, 3], "test_videos": [3, 4]}


def frames(num: int = 16, height: int = 32, width: int = 48) -> np.ndarray:
    """uint8 (T, H, W, 3): a white square moving right on a grey background."""
    out = np.full((num, height, width, 3), 60, dtype=np.uint8)
    for t in range(num):
        x = 2 + 2 * t % (width - 10)
        out[t, 10:20, x:x + 8] = 250
    return out


def annotation(index: int, collisions: list[int], num: int = 16) -> dict:
    return {
        "video_filename": f"video_{index:05d}.mp4",
        "collision": [{"object_ids": [0, 1], "frame_id": f, "location": [0.0, 0.0, 0.2]} for f in collisions],
        "motion_trajectory": [{"frame_id": f, "objects": [{"object_id": 0, "location": [0.1 * f, 0.0, 0.2],
                                                           "inside_camera_view": True}]} for f in range(num)],
    }


def make_video(root, index: int, collisions=(5, 9), num: int = 16, with_annotation: bool = True):
    group = f"{index // 1000 * 1000:05d}-{index // 1000 * 1000 + 1000:05d}"
    video_dir, ann_dir = root / "video_train" / f"video_{group}", root / "annotation_train" / f"annotation_{group}"
    video_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    write_video(video_dir / f"video_{index:05d}.mp4", frames(num))
    if with_annotation:
        (ann_dir / f"annotation_{index:05d}.json").write_text(json.dumps(annotation(index, list(collisions), num)))
    return video_dir / f"video_{index:05d}.mp4"


@pytest.fixture
def root(tmp_path):
    for i in range(4):
        make_video(tmp_path, i)
    return tmp_path


def build(root, split="test", in_frames=4, out_frames=3, **kwargs):
    return DATASETS.build("clevrer", split=split, in_frames=in_frames, out_frames=out_frames, root=str(root),
                          **{**RANGES, "image_size": 16, **kwargs})


def test_shapes_range_and_resize(root):
    ds = build(root, split="train", clip_start="fixed")
    assert len(ds) == 2
    x, y = ds[0]
    assert x.shape == (4, 3, 16, 16) and y.shape == (3, 3, 16, 16)
    assert x.dtype == torch.float32 and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert float(x.max()) > 0.8 and float(x.min()) < 0.35  # the bright square on the grey background
    assert ds.frame_shape(image_size=16) == (3, 16, 16) and ds.mean == 0.0 and ds.std == 1.0


def test_collision_labels_at_the_right_steps(root):
    ds = build(root, in_frames=4, out_frames=3)  # fixed start 0: targets are source frames 4, 5, 6
    assert ds.collision_labels(0).tolist() == [0.0, 1.0, 0.0]
    assert ds.collision_labels(0, all_frames=True).tolist() == [0, 0, 0, 0, 0, 1, 0]
    strided = build(root, in_frames=3, out_frames=3, frame_step=2)  # targets: frames 6, 8, 10
    assert strided.collision_labels(0).tolist() == [1.0, 0.0, 1.0]  # 5 in (4, 6], 9 in (8, 10]
    train = build(root, split="train", clip_start="fixed", return_collision=True)
    _, y, extras = train[train.videos.index(next(v for v in train.videos if v.name == "video_00000.mp4"))]
    assert extras["collision"].tolist() == [0.0, 1.0, 0.0] and y.shape[0] == 3
    assert len(build(root, return_collision=True)[0]) == 2  # val/test: pairs (no public test labels)
    item = ds.item(0)
    assert item["source_frames"].tolist() == list(range(7)) and item["collision"].tolist() == [0.0, 1.0, 0.0]


def test_random_start_is_seeded_and_changes_with_the_epoch(root):
    ds = build(root, split="train", in_frames=2, out_frames=2)
    assert ds.clip_start == "random"
    first = [ds.item(0)["source_frames"][0] for _ in range(2)]
    assert first[0] == first[1]  # the same epoch gives the same clip
    starts = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        item = ds.item(0)
        starts.add(int(item["source_frames"][0]))
        expected = ((item["source_frames"][2:] == 5) | (item["source_frames"][2:] == 9)).astype(np.float32)
        assert ds.collision_labels(0).tolist() == expected.tolist()  # labels follow the clip
    assert len(starts) > 1 and max(starts) <= 16 - 4


def test_splits_are_disjoint(root):
    videos = {split: {p.name for p in build(root, split=split).videos} for split in ("train", "val", "test")}
    assert videos["train"] == {"video_00000.mp4", "video_00001.mp4"}
    assert videos["val"] == {"video_00002.mp4"} and videos["test"] == {"video_00003.mp4"}
    with pytest.raises(DataError, match=r"train_videos \[0, 3\] overlaps data.val_videos"):
        build(root, train_videos=[0, 3])


def test_missing_root_and_no_videos(tmp_path):
    with pytest.raises(DataError, match=r"does not exist.*clevrer.csail.mit.edu"):
        build(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"no CLEVRER video .*\[3, 4\).*clevrer.csail.mit.edu"):
        build(tmp_path)


def test_missing_annotation(tmp_path):
    make_video(tmp_path, 3, with_annotation=False)
    with pytest.raises(DataError, match=r"annotation_00003.json .*video_00003.mp4.*require_annotations"):
        build(tmp_path)
    ds = build(tmp_path, require_annotations=False)
    _, y = ds[0]
    assert y.shape == (3, 3, 16, 16)
    with pytest.raises(DataError, match="annotation_00003.json"):
        ds.collision_labels(0)


def test_corrupt_video_and_annotation(tmp_path):
    path = make_video(tmp_path, 3)
    path.write_bytes(b"\x00not an mp4 at all" * 50)
    with pytest.raises(DataError, match=r"video_00003.mp4.*(corrupt|truncated)"):
        build(tmp_path)[0]
    make_video(tmp_path, 3)
    ann = next(tmp_path.rglob("annotation_00003.json"))
    ann.write_text("{\"collision\": [")
    with pytest.raises(DataError, match=r"annotation_00003.json.*corrupt"):
        build(tmp_path).collision_labels(0)


def test_too_few_frames(tmp_path):
    make_video(tmp_path, 3, num=6)
    with pytest.raises(DataError, match=r"video_00003.mp4: 6 frames, fewer than the 7 needed"):
        build(tmp_path)[0]


def test_decoded_frame_cache(root, tmp_path):
    cache = tmp_path / "cache"
    ds = build(root, cache_dir=str(cache))
    x1, y1 = ds[0]
    assert (cache / "video_00003_16x16.npy").is_file()
    x2, y2 = ds[0]
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
