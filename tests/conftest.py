import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from pdr.render._extension import build_directory

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

torch.set_num_threads(min(2, os.cpu_count() or 1))
sys.path.insert(0, str(Path(__file__).parent / "support"))  # test-only registry entries (tiny_backbones)
os.environ["PDR_OFFLINE"] = "1"  # tests never download (LPIPS's AlexNet is fetched on first use otherwise)
# One cache of compiled extensions for every process of a test run (CLI and torchrun subprocesses, the installed
# copy): the CPU rasterizer is built at most once, by the first process that needs it (pdr.render._extension).
os.environ.setdefault("PDR_EXTENSIONS_DIR", str(build_directory()))
# What the libraries the tests drive leave in the temporary folder (torchrun's torchelastic_* folders, wandb's staging
# folders in the CLI subprocesses, torch.compile's cache) goes into one folder, removed at exit; this process keeps
# the usual temporary folder, where pytest's own folders live.
_SCRATCH = tempfile.mkdtemp(prefix="pdr-tests-", dir=tempfile.gettempdir())
os.environ["TMPDIR"] = _SCRATCH
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(_SCRATCH, "torchinductor"))
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def tiny_overrides() -> list[str]:
    """--set overrides that shrink any embedded-data config to a few seconds of CPU work."""
    return [
        "model.backbone.hid_S=8", "model.backbone.hid_T=16", "model.backbone.N_T=2",
        "data.num_train=8", "data.num_val=4", "data.num_test=4", "data.batch_size=4",
        "train.max_steps=4", "train.log_every=1",
    ]
