"""CLEVRER's files: videos and annotations found by name under a folder, and an annotation's collision events.

The dataset itself (splits, clips, labels per predicted step, flows) is ``pdr.data.clevrer``.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from ..errors import DataError

HOW_TO_GET = ("download the CLEVRER videos (video_train.zip, video_validation.zip, video_test.zip) and annotations "
              "(annotation_train.zip, annotation_validation.zip) from http://clevrer.csail.mit.edu and unzip them "
              "under data.root")
VIDEO_NAME = re.compile(r"^video_(\d+)\.mp4$")
ANNOTATION_NAME = re.compile(r"^annotation_(\d+)\.json$")


def index_files(root: Path) -> tuple[dict[int, Path], dict[int, Path]]:
    """{video index: path} of the videos and of the annotations found anywhere under ``root``."""
    videos: dict[int, Path] = {}
    annotations: dict[int, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            if match := VIDEO_NAME.match(name):
                videos.setdefault(int(match.group(1)), Path(dirpath) / name)
            elif match := ANNOTATION_NAME.match(name):
                annotations.setdefault(int(match.group(1)), Path(dirpath) / name)
    return videos, annotations


def load_annotation(path: Path) -> dict:
    """The parsed annotation JSON of one video, checked for the keys this loader uses."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read this CLEVRER annotation ({type(exc).__name__}: {exc}); the file is "
                        f"corrupt or truncated; {HOW_TO_GET}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("collision", None), list):
        raise DataError(f"{path}: not a CLEVRER annotation (no 'collision' list)")
    for event in data["collision"]:
        if not isinstance(event, dict) or not isinstance(event.get("frame_id"), int):
            raise DataError(f"{path}: a collision event without an integer 'frame_id': {event!r}")
    return data


def collision_frames(annotation: dict) -> np.ndarray:
    """Sorted source-frame numbers (int array) of the collision events of an annotation."""
    return np.array(sorted(event["frame_id"] for event in annotation["collision"]), dtype=np.int64)
