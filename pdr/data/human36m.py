"""Human3.6M (Ionescu et al., 2014) as a video prediction benchmark: RGB frames, split by subject.

Reads folders of extracted frames, one per subject/action/camera, as OpenSTL prepares them
(``root/S1_Walking.54138969/*.jpg``) or nested (``root/S1/Walking/*.jpg``); the subject is the
``S<number>`` in the folder's path relative to ``root``. Protocol (OpenSTL): subjects 1, 5, 6, 7, 8
train and 9, 11 test, 4 -> 4 frames at 256x256, every 5th source frame. Frames of another size are
an error unless ``resize: true``. OpenSTL validates on the test subjects; ``val_subjects`` picks others.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from ..errors import DataError
from ..registry import DATASETS
from .clips import ClipDataset, find_sources, split_ids
from .frame_fit import FrameFit, size_pair

SUBJECT = re.compile(r"(?:^|[^A-Za-z0-9])S(\d+)(?=$|[^0-9])")
HOW_TO_GET = ("get the videos from http://vision.imar.ro/human3.6m/ (registration needed) and extract frames into one "
              "folder per subject/action/camera, e.g. with OpenSTL's tools/prepare_data/download_human3.6m.sh")


def subject_of(relative: Path) -> int | None:
    """Subject number from the parts of a path relative to the root, None when it names none."""
    for part in relative.parts:
        match = SUBJECT.search(part)
        if match:
            return int(match.group(1))
    return None


@DATASETS.register("human36m")
class Human36M(ClipDataset):
    """Human3.6M frames, RGB, ``image_size`` x ``image_size``, values in [0, 1].

    Args:
        split, in_frames, out_frames: as every dataset (4 -> 4).
        root: folder with the frame folders.
        image_size: frame height and width (256).
        resize: resize frames of another size to ``image_size``.
        train_subjects, test_subjects: subject numbers per split ([1, 5, 6, 7, 8] and [9, 11]).
        val_subjects: subjects for val; null uses the test subjects, as OpenSTL does.
        frame_step: source frames between consecutive clip frames (5).
        clip_stride, eval_clip_stride: source frames between the starts of clips in train and in val/test.
    """

    def __init__(
        self,
        split: str,
        in_frames: int,
        out_frames: int,
        root: str = "data/human36m",
        image_size: int = 256,
        resize: bool = False,
        train_subjects: list = (1, 5, 6, 7, 8),
        test_subjects: list = (9, 11),
        val_subjects: list | None = None,
        frame_step: int = 5,
        clip_stride: int = 5,
        eval_clip_stride: int = 40,
    ):
        super().__init__(split, in_frames, out_frames)
        self.open_root(root, "Human3.6M", HOW_TO_GET)
        self.validation_is_test = val_subjects is None  # checkpoint selection on test data: said in eval notes
        subjects = split_ids(split, list(train_subjects), val_subjects, list(test_subjects),
                             ("train_subjects", "val_subjects", "test_subjects"), "subject")
        folders = [p for p in find_sources(self.root) if p.is_dir() and subject_of(p.relative_to(self.root)) in subjects]
        if not folders:
            raise DataError(f"data.root: no frame folder of subjects {sorted(f'S{s}' for s in subjects)} under "
                            f"{self.root.resolve()}; {HOW_TO_GET}")
        self.cut_clips(folders, frame_step, clip_stride, eval_clip_stride, grey=False,
                       fit=FrameFit(size_pair(image_size), bool(resize)))

    @classmethod
    def frame_shape(cls, image_size: int = 256, **_) -> tuple[int, int, int]:
        return (3, image_size, image_size)

    @classmethod
    def describe_files(cls, root: Path, **_) -> list[str]:
        folders = [p for p in find_sources(root) if p.is_dir()]
        per_subject = Counter(subject_of(p.relative_to(root)) for p in folders)
        lines = [f"  S{s}: {per_subject.get(s, 0)} frame folders" for s in (1, 5, 6, 7, 8, 9, 11)]
        unnamed = per_subject.get(None, 0)
        if unnamed:
            lines.append(f"  {unnamed} frame folders without a subject (S<number>) in their path: ignored")
        return lines
