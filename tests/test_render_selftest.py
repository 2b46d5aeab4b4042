"""The self-test that a CUDA module must pass on a GPU before it is used there (pdr.render.selftest), run on the
CPU: with the cpu backend and the CUDA kernels on the emulator (they pass), with deliberately broken modules
(they fail, with the numbers), its cache, and what backend="auto" and backend="cuda" do with a failed verdict."""
import re
import warnings

import pytest
import torch

import pdr.render as render
from pdr.render import _cpu, _cuda, _emulated, selftest

CPU = torch.device("cpu")
needs_cpu = pytest.mark.skipif(_cpu.why_unbuildable() is not None, reason=f"{_cpu.why_unbuildable()}")
needs_emulator = pytest.mark.skipif(_emulated.why_unbuildable() is not None, reason=f"{_emulated.why_unbuildable()}")


class Broken:
    """The cpu backend's kernels (float32) with one thing wrong, as a miscompiled or mis-built module could be."""

    file = "broken_module.so"

    def __init__(self, fault: str):
        self.good, self.fault, self.calls = _cpu.load_extension(), fault, 0

    def forward(self, means, scales, rotations, amplitudes, height, width, kernel_size):
        self.calls += 1
        if self.fault == "no kernel image":
            raise RuntimeError("CUDA error: no kernel image is available for execution on the device")
        out = self.good.forward(means, scales, rotations, amplitudes, height, width, kernel_size)
        if self.fault == "window one pixel off" and kernel_size == 1:
            out = out.roll(1, dims=-1)
        if self.fault == "second channel chunk dropped":
            out[:, 16:] = 0
        if self.fault == "a pixel not written":
            out[..., -1, -1] = float("nan")
        if self.fault == "not repeatable":
            out = out + 1e-6 * self.calls * out.abs().max()
        return out

    def backward(self, means, scales, rotations, amplitudes, grad_out, kernel_size, need_amplitudes):
        grads = list(self.good.backward(means, scales, rotations, amplitudes, grad_out, kernel_size, need_amplitudes))
        if self.fault == "rotation gradient 1% off":
            grads[2] = grads[2] * 1.01
        return grads


@needs_cpu
def test_the_cpu_kernels_pass():
    result = selftest.run_self_test(_cpu.load_extension(), CPU)
    assert result.passed, result.failures
    assert result.summary() == "self-test passed"


@needs_emulator
def test_the_cuda_kernels_on_the_emulator_pass():
    """The CUDA kernels themselves, run by the emulator (with fused multiply-adds as on a GPU), pass the self-test
    a GPU runs: its cases and tolerances do not fail correct kernels."""
    with _emulated.schedule("shuffled", "shuffled", seed=2):
        result = selftest.run_self_test(_emulated.load_extension(), CPU)
    assert result.passed, result.failures


@needs_cpu
@pytest.mark.parametrize("fault,message", [
    ("window one pixel off", r"a window of one pixel \(K=1\), partial tiles: image: relative error [\d.e+-]+ "
                             r"\(tolerance 1e-04\)"),
    ("second channel chunk dropped", r"two channel chunks \(C=17\), partial tiles: image: relative error"),
    ("a pixel not written", r"image: 1 of \d+ values are not finite \(not written, or wrong\)"),
    ("not repeatable", r"a repeated forward differs in \d+ values"),
    ("rotation gradient 1% off", r"gradient of rotations: relative error 1\.00e-02"),
    ("no kernel image", r"it raised RuntimeError: CUDA error: no kernel image is available"),
])
def test_a_broken_module_fails_with_the_numbers(fault, message):
    result = selftest.run_self_test(Broken(fault), CPU)
    assert not result.passed
    assert result.raised == (fault == "no kernel image")
    assert any(re.search(message, f) for f in result.failures), result.failures


@needs_cpu
def test_the_verdict_is_cached_by_its_key_unless_the_module_raised(tmp_path):
    key = {"module": "abc", "device": "Some GPU", "capability": "9.0", "torch": "2.x", "cuda": "13.0", "driver": "x"}
    broken = Broken("rotation gradient 1% off")
    first = selftest.verdict(broken, CPU, key, tmp_path)
    assert not first.passed and not first.cached and broken.calls > 0
    calls = broken.calls
    again = selftest.verdict(broken, CPU, key, tmp_path)
    assert again.cached and again.failures == first.failures and broken.calls == calls  # not run again
    other = selftest.verdict(_cpu.load_extension(), CPU, {**key, "driver": "y"}, tmp_path)  # a new driver: run
    assert other.passed and not other.cached
    assert [r.passed for r in selftest.cached_verdicts(tmp_path)] == [False, True]
    selftest.verdict(Broken("no kernel image"), CPU, {**key, "device": "Other GPU"}, tmp_path)
    assert len(selftest.cached_verdicts(tmp_path)) == 2  # an exception may not last: not kept


@pytest.fixture
def simulated_gpu(monkeypatch, tmp_path):
    """device_status on "cuda:0" with a given module, whose self-test runs on the CPU."""
    run_verdict = selftest.verdict

    def use(kernels):
        monkeypatch.setattr(_cuda, "_status", (True, ""))
        monkeypatch.setattr(_cuda, "_module", kernels)
        monkeypatch.setattr(_cuda, "_verdicts", {})
        monkeypatch.setattr(_cuda, "self_test_key", lambda device: {"device": "Simulated GPU", "capability": "9.0"})
        monkeypatch.setattr(_cuda, "self_test_folder", lambda: tmp_path)
        monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
        monkeypatch.setattr(selftest, "verdict", lambda k, device, key, folder: run_verdict(k, CPU, key, folder))
        monkeypatch.setattr(render, "_warned_fallback", set())
        return torch.device("cuda", 0)

    return use


@needs_cpu
def test_a_failed_self_test_makes_auto_warn_loudly_once_and_cuda_raise_with_the_numbers(simulated_gpu):
    device = simulated_gpu(Broken("rotation gradient 1% off"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert render._resolve_backend("auto", device) == "torch"
        assert render._resolve_backend("auto", device) == "torch"
    loud = [str(w.message) for w in caught if "WRONG RESULTS" in str(w.message)]
    assert len(loud) == 1 and "self-test failed on Simulated GPU" in loud[0] and "!!!!" in loud[0]
    with pytest.raises(RuntimeError, match=r"backend='cuda' is not available: .*self-test failed on Simulated GPU: "
                                           r".*gradient of rotations: relative error 1\.00e-02"):
        render._resolve_backend("cuda", device)


@needs_cpu
def test_a_module_that_cannot_run_on_the_gpu_is_not_available(simulated_gpu):
    device = simulated_gpu(Broken("no kernel image"))
    with pytest.raises(RuntimeError, match="no kernel image is available"):
        render._resolve_backend("cuda", device)


@needs_cpu
def test_a_module_that_passes_is_used(simulated_gpu):
    device = simulated_gpu(_cpu.load_extension())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert render._resolve_backend("auto", device) == "cuda"
        assert render._resolve_backend("cuda", device) == "cuda"
