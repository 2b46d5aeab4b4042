"""KTH human actions (Schuldt et al., 2004): 25 persons, 6 actions, 4 scenarios, grey 160x120 video.

Reads the videos as distributed (``root/<action>/personXX_<action>_dY_uncomp.avi``) or folders of
extracted frames named the same way (``root/<action>/personXX_<action>_dY/*.png``); the
person, action and scenario come from the name, anywhere under ``root``. The usual protocol
(PredRNN, OpenSTL): persons 1-16 train, 17-25 test, 10 -> 20 frames at 128x128. The raw frames are
160x120, so the configs set ``resize: true`` (area averaging to ``image_size``); without it a
size mismatch is an error. OpenSTL validates on the test persons; ``val_persons`` picks others.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from ..errors import DataError
from ..registry import DATASETS
from .clips import ClipDataset, find_sources, split_ids
from .frame_fit import FrameFit, size_pair

ACTIONS = ("boxing", "handclapping", "handwaving", "jogging", "running", "walking")
NAME = re.compile(r"person(\d+)_([a-z]+)_d(\d+)", re.IGNORECASE)
HOW_TO_GET = "download the six action zips from https://www.csc.kth.se/cvap/actions/ and unzip them in data.root"


def parse_name(path: Path) -> tuple[int, str, int] | None:
    """(person, action, scenario) from a KTH file or folder name, None if it is not one."""
    match = NAME.search(path.name)
    return (int(match.group(1)), match.group(2).lower(), int(match.group(3))) if match else None


@DATASETS.register("kth")
class KTH(ClipDataset):
    """KTH, grey, ``image_size`` x ``image_size``, values in [0, 1].

    Args:
        split, in_frames, out_frames: as every dataset (10 -> 20 in the standard protocol).
        root: folder with the videos or frame folders.
        image_size: frame height and width (128).
        resize: resize frames of another size to ``image_size`` (the raw videos are 160x120).
        train_persons, test_persons: person numbers per split (1-16 and 17-25).
        val_persons: persons for val; null uses the test persons, as OpenSTL does.
        actions: actions to use (all six by default).
        frame_step: source frames between consecutive clip frames.
        clip_stride: source frames between the starts of consecutive clips (train), and eval_clip_stride (val, test).
    """

    def __init__(
        self,
        split: str,
        in_frames: int,
        out_frames: int,
        root: str = "data/kth",
        image_size: int = 128,
        resize: bool = False,
        train_persons: list = tuple(range(1, 17)),
        test_persons: list = tuple(range(17, 26)),
        val_persons: list | None = None,
        actions: list = ACTIONS,
        frame_step: int = 1,
        clip_stride: int = 10,
        eval_clip_stride: int = 20,
    ):
        super().__init__(split, in_frames, out_frames)
        self.open_root(root, "KTH", HOW_TO_GET)
        unknown = [a for a in actions if a not in ACTIONS]
        if unknown:
            raise DataError(f"data.actions: unknown {unknown}; KTH has {', '.join(ACTIONS)}")
        self.validation_is_test = val_persons is None  # checkpoint selection on test data: said in eval notes
        persons = split_ids(split, list(train_persons), val_persons, list(test_persons),
                            ("train_persons", "val_persons", "test_persons"), "person")
        paths = [p for p in find_sources(self.root) if (info := parse_name(p)) and info[0] in persons and info[1] in actions]
        if not paths:
            raise DataError(f"data.root: no KTH video (personXX_<action>_dY[_uncomp].avi or a frame folder of that name) "
                            f"of persons {sorted(persons)} under {self.root.resolve()}; {HOW_TO_GET}")
        self.cut_clips(paths, frame_step, clip_stride, eval_clip_stride, grey=True,
                       fit=FrameFit(size_pair(image_size), bool(resize)))

    @classmethod
    def frame_shape(cls, image_size: int = 128, **_) -> tuple[int, int, int]:
        return (1, image_size, image_size)

    @classmethod
    def describe_files(cls, root: Path, **_) -> list[str]:
        found = [info for p in find_sources(root) if (info := parse_name(p))]
        per_action = Counter(action for _, action, _ in found)
        persons = sorted({person for person, _, _ in found})
        lines = [f"  {action}: {per_action.get(action, 0)} videos (100 expected: 25 persons x 4 scenarios)"
                 for action in ACTIONS]
        missing = sorted(set(range(1, 26)) - set(persons))
        lines.append(f"  persons present: {len(persons)} of 25" + (f"; missing {missing}" if missing else ""))
        return lines
