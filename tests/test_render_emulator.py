"""The CUDA emulator (csrc/emu/cuda_emu.h) itself, through the small kernels of tests/support/cuda_emu_probe.cpp:
what its warp collectives, barriers and atomics return (against values worked out here from CUDA's definitions),
that NaN-filled shared memory and the thread orders expose a missing barrier, that it refuses what a GPU would
punish, and that pixel_coordinate's device branch rounds like the torch backend under contraction."""
from pathlib import Path

import pytest
import torch

from pdr.render import _emulated, _extension

SUPPORT = Path(__file__).parent / "support"
pytestmark = pytest.mark.skipif(_emulated.why_unbuildable() is not None,
                                reason=f"cannot build the emulator here: {_emulated.why_unbuildable()}")


@pytest.fixture(scope="module")
def probe():
    source = str(SUPPORT / "cuda_emu_probe.cpp")  # an absolute path: not in csrc/
    files = (source, *_emulated.FILES[1:])
    _extension.load_library("pdr_cuda_emu_probe", (source,), files, False, "CUDA emulator probe",
                            _emulated.why_unbuildable, extra_cflags=_emulated.compile_flags(),
                            extra_include_paths=[str(_extension.source_directory())])
    return torch.ops.cuda_emu_probe


def expected_collectives(t: int) -> list[int]:
    """What thread t of a 64-thread block computes in collectives_kernel, from CUDA's definitions."""
    lane, base = t % 32, t - t % 32
    ballot = sum(1 << i for i in range(32) if i % 3 == 0)
    half = sum(1 << i for i in range(32) if i % 2 == 1) & (0x0000FFFF if lane < 16 else 0xFFFF0000)
    as_int = lambda bits: bits - (1 << 32) if bits >= 1 << 31 else bits  # noqa: E731
    segment8 = lane - lane % 8
    return [
        as_int(ballot),
        1,  # any(lane == 5)
        0,  # all(lane < 31)
        100 + base + (lane + 1) % 32,  # __shfl_sync from lane + 1
        100 + t - 1 if lane >= 1 else 100 + t,  # __shfl_up_sync by 1: lane 0 keeps its own
        100 + t + 3 if lane + 3 < 32 else 100 + t,  # __shfl_down_sync by 3
        100 + base + (lane ^ 5),  # __shfl_xor_sync with 5
        100 + t + 3 if lane - segment8 + 3 < 8 else 100 + t,  # __shfl_down_sync by 3 within 8 lanes
        16,  # __syncthreads_count(t % 4 == 0) over 64 threads
        1,  # __syncthreads_and(t < 64)
        1,  # __syncthreads_or(t == 63)
        None,  # atomicAdd's old value: checked as a set
        as_int(half),
        int(t + 16.5) if lane < 16 else int(t + 0.5),  # float __shfl_down_sync by 16
        None,  # block index: checked separately
        64 + 1000 * 2,  # blockDim.x + 1000 * gridDim.x
    ]


@pytest.mark.parametrize("order", [0, 1, 2], ids=_emulated.ORDERS)
def test_warp_collectives_barriers_and_atomics_return_what_cuda_defines(probe, order):
    out = probe.collectives(torch.empty(0), order)
    results, counter = out[:64], out[64, 0].item()
    for t in range(64):
        want = expected_collectives(t)
        got = results[t].tolist()
        assert [g for g, w in zip(got, want) if w is not None] == [w for w in want if w is not None], f"thread {t}"
    # six blocks of 64 threads each added 1; the last block saw the old values 320..383, each once
    assert counter == 6 * 64
    assert sorted(results[:, 11].tolist()) == list(range(5 * 64, 6 * 64))
    assert set(results[:, 14].tolist()) == {1 + 100 * 2}  # blocks run in order: the last is (1, 2)


@pytest.mark.parametrize("order", [0, 1, 2], ids=_emulated.ORDERS)
def test_shared_memory_starts_as_nan_and_a_missing_barrier_shows(probe, order):
    values = torch.arange(256, dtype=torch.float32)
    torch.testing.assert_close(probe.reverse(values, True, order), values.flip(0), rtol=0, atol=0)
    racy = probe.reverse(values, False, order)
    assert torch.isnan(racy).any(), "a thread read shared memory no thread had written, and did not see NaN"


@pytest.mark.parametrize("order", [0, 1, 2], ids=_emulated.ORDERS)
def test_greedy_warps_expose_a_warp_that_runs_a_round_ahead(probe, order):
    """Without a barrier at the end of a round, a fast warp publishes its next value before a slow one has read this
    one. Interleaved warps never let a warp get a round ahead; greedy warps do, when the fast one runs first."""
    want = torch.tensor([1] * 32 + [0] * 32 + [11] * 32 + [10] * 32, dtype=torch.int32)
    for greedy in (False, True):
        assert torch.equal(probe.rounds(torch.empty(0), True, order, greedy), want)
    assert torch.equal(probe.rounds(torch.empty(0), False, order, False), want)
    racy = probe.rounds(torch.empty(0), False, order, True)
    if order == 1:  # warp 1 runs first, and publishes 11 before warp 0 reads its round-0 value
        assert not torch.equal(racy, want)


BROKEN = {  # which: (what a GPU would do wrong, the emulator's message)
    0: ("a thread returns before __syncthreads", r"a __syncthreads not reached by every thread of the block.*"
                                                 r"threads 0-6, 8-255 wait at cuda_emu_probe\.cpp:\d+; threads 7 have exited"),
    1: ("__syncthreads in divergent code", r"wait at different __syncthreads: thread 0 at cuda_emu_probe\.cpp:\d+, "
                                           r"thread 32 at cuda_emu_probe\.cpp:\d+"),
    2: ("lane 31 skips a shuffle", r"a warp collective not reached by every lane of its mask.*lane 0 of warp 0 waits "
                                   r"at __shfl_down_sync .* mask 0xffffffff, but lane 31 has exited"),
    3: ("a lane outside its own mask", r"__ballot_sync at cuda_emu_probe\.cpp:\d+ called with mask 0x7fffffff, which "
                                       r"does not include the calling lane .*lane 31"),
    4: ("lanes with different masks", r"a warp collective not reached by every lane of its mask.*lane 16 of warp 0 "
                                      r"waits at __ballot_sync .* mask 0xffffffff, but lane 0 has exited"),
    5: ("a mask naming lanes a partial warp lacks", r"mask 0xffffffff, which names lanes that do not exist: the warp "
                                                    r"has 16 threads"),
    6: ("a shuffle width that is no power of two", r"called with width 3; it must be a power of two from 1 to 32"),
    7: ("2048 threads per block", r"block dimension x = 2048 is outside \[1, 1024\]"),
    8: ("grid y of 70000", r"grid dimension y = 70000 is outside \[1, 65535\]"),
    9: ("an empty grid", r"grid dimension x = 0 is outside"),
    10: ("52 KiB of static shared memory", r"53248 bytes of shared memory per block \(53248 static, 0 dynamic\), "
                                          r"more than 49152"),
}


@pytest.mark.parametrize("which", sorted(BROKEN), ids=[BROKEN[w][0] for w in sorted(BROKEN)])
def test_what_a_gpu_would_punish_is_refused_with_a_clear_message(probe, which):
    with pytest.raises(RuntimeError, match=BROKEN[which][1]):
        probe.broken(torch.empty(0), which)
    probe.reverse(torch.arange(256, dtype=torch.float32), True, 0)  # a refused launch leaves the emulator usable


FAULT_SCRIPT = """
import sys, torch
from pdr.render import _emulated, _extension
source = sys.argv[1]
_extension.load_library("pdr_cuda_emu_probe", (source,), (source, *_emulated.FILES[1:]), False, "probe",
                        _emulated.why_unbuildable, extra_cflags=_emulated.compile_flags(),
                        extra_include_paths=[str(_extension.source_directory())])
for which in (int(sys.argv[2]), 10):
    try:
        torch.ops.cuda_emu_probe.broken(torch.empty(0), which)
    except RuntimeError as exc:
        print(str(exc).splitlines()[0])
"""


@pytest.mark.parametrize("which,kernel,what", [
    (11, "out_of_bounds_kernel", ("an illegal memory access (segmentation fault at address",
                                  "an access outside the memory the kernel was given")),
    (12, "stack_overflow_kernel", ("an illegal memory access (segmentation fault at address",
                                   "the thread's stack overflowed")),
    (13, "division_by_zero_kernel", ("an integer division by zero (at ", "where a GPU computes a meaningless value")),
], ids=["out-of-bounds", "stack", "division-by-zero"])
def test_a_memory_fault_fails_the_launch_and_every_later_one_as_on_a_gpu(probe, which, kernel, what):
    """In a process of its own: after the fault, the emulator refuses every launch."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", FAULT_SCRIPT, str(SUPPORT / "cuda_emu_probe.cpp"), str(which)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, second = proc.stdout.strip().splitlines()[-2:]
    assert all(part in first for part in what), first
    assert f"in kernel {kernel}, block (0, 0, 0), thread " in first
    assert second == first  # the next launch (a different kernel) is refused with the same message


def test_pixel_coordinate_rounds_like_the_torch_backend_where_the_build_fuses_multiply_adds(probe):
    """The emulator is built with contraction into fused multiply-adds on, as nvcc compiles device code. The device
    branch of pixel_coordinate (round-to-nearest operations) gives the torch backend's pixel coordinate bit for
    bit; the same formula written plainly does not, so this test would notice the rounding being lost."""
    g = torch.Generator().manual_seed(0)
    means = (torch.rand(200_000, generator=g) * 2.6 - 1.3).float()
    for size in (13, 37, 100, 255):
        want = (means + 1) * (size / 2) - 0.5  # the torch backend's order of operations, each rounded
        assert torch.equal(probe.pixel_coordinates(means, size, True), want), size
    plain = probe.pixel_coordinates(means, 13, False)
    if _emulated.fuses_multiply_add():
        assert not torch.equal(plain, (means + 1) * 6.5 - 0.5), "the build did not fuse: the test shows nothing"
