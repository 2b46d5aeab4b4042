"""pdr-doctor (python -m pdr.doctor): its report on this machine, and a non-zero exit when something is broken (a
compiled backend that does not build, a CUDA module that fails its self-test, is stale or lacks the GPU's
architecture), with GPUs simulated where needed."""
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from pdr import doctor
from pdr.render import _cpu, _cuda, _emulated, selftest

BUILDABLE = _cpu.why_unbuildable() is None and _emulated.why_unbuildable() is None


@pytest.mark.skipif(not BUILDABLE, reason="needs a C++ compiler and ninja")
@pytest.mark.skipif(torch.cuda.is_available(), reason="describes a machine without a GPU")
def test_the_report_of_this_machine(repo):
    proc = subprocess.run([sys.executable, "-m", "pdr.doctor"], cwd=repo, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for line in (f"torch {torch.__version__}", "GPU: none visible", "[  ok] cpu ", "[  ok] cuda_emulated ",
                 "[note] cuda          not used: no GPU visible", "CUDA self-test verdicts",
                 "[  ok] nothing is broken (no GPU here: the cuda backend was not checked)"):
        assert line in out, line
    timing = out[out.index("timing on cpu"):out.index("\nverdict\n")].splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in timing[2:] if line.strip()}
    assert set(rows) == {"torch", "cpu", "cuda_emulated"}
    assert all(value.endswith("ms") and float(value[:-2]) > 0 for row in rows.values() for value in row)


def test_a_backend_that_does_not_build_makes_it_fail(monkeypatch, capsys):
    monkeypatch.setattr(_cpu, "why_unbuildable", lambda: None)
    monkeypatch.setattr(_cpu, "_status", (False, "building the CPU rasterizer in /x failed:\nerror: boom"))
    assert doctor.main(["--no-timing"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] cpu           does not build or load:" in out and "error: boom" in out
    assert "[FAIL] 1 problem(s): cpu" in out


@pytest.fixture
def simulated_gpu(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "Simulated GPU")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index=None: SimpleNamespace(total_memory=80 * 2**30))
    monkeypatch.setattr(_cuda, "driver_version", lambda: "13.0")
    monkeypatch.setattr(_cuda, "self_test_folder", lambda: tmp_path)
    return tmp_path


def test_a_failed_self_test_a_stale_module_and_a_missing_architecture_are_reported(monkeypatch, capsys,
                                                                                   simulated_gpu):
    reason = "pdr/_C.so: self-test failed on Simulated GPU: no window (K=None): image: relative error 3.10e-02"
    monkeypatch.setattr(_cuda, "device_status", lambda device: (False, reason, True))
    monkeypatch.setattr(_cuda, "module_description", lambda: {
        "file": "pdr/_C.so", "built": "ahead of time (pdr._C)", "sources_digest": "0" * 16,
        "cuda_archs": "8.0;8.6", "stale": True})
    failed = selftest.SelfTest(False, ["no window (K=None): image: relative error 3.10e-02"], 0.02,
                               {"device": "Simulated GPU", "capability": "9.0", "module": "0" * 16})
    monkeypatch.setattr(selftest, "cached_verdicts", lambda folder: [failed])
    assert doctor.main(["--no-timing"]) == 1
    out = capsys.readouterr().out
    assert "GPU 0: Simulated GPU (compute capability 9.0, 80 GiB), driver 13.0" in out
    assert "[FAIL] cuda          GPU 0: WRONG RESULTS, not used:" in out and "relative error 3.10e-02" in out
    assert "architectures 8.0;8.6, sources changed since: rebuild it" in out
    assert "[FAIL] GPU 0 (9.0): NO: rebuild with TORCH_CUDA_ARCH_LIST naming it" in out
    assert "Simulated GPU (9.0), module 0000000000000000" in out and "failed:" in out
    assert "2 problem(s)" in out


@pytest.mark.parametrize("capability,archs,answer", [
    ("9.0", "7.5;8.0;8.6;8.9;9.0+PTX", "yes (sm_90 code)"),
    ("12.0", "7.5;8.0;8.6;8.9;9.0+PTX", "through the PTX of 9.0, compiled by the driver on first use"),
    ("8.9", "8.0;8.6", "NO: rebuild with TORCH_CUDA_ARCH_LIST naming it"),
    ("8.6", "Ampere", "unknown (Ampere names architectures by name)"),
    ("8.0", None, "unknown (the module records no architectures)"),
])
def test_which_gpus_a_module_covers(capability, archs, answer):
    assert doctor._covered(capability, archs) == answer
