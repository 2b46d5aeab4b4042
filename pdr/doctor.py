"""``pdr-doctor`` (``python -m pdr.doctor``): what PDR's renderer can use on this machine, and what is broken.

Prints the versions that matter (PDR, Python, torch, CUDA, compilers, GPUs and driver), which renderer backends
load and why not, the CUDA module's architectures and whether it was built from the current sources, the
self-test verdicts of the CUDA module on this machine's GPUs, and a small timing of each backend on the
current device. Exits with status 1 when something is broken (a backend that should build here does not,
a self-test fails), 0 otherwise; missing tools and a machine without a GPU are notes, not failures.
"""
from __future__ import annotations

import argparse
import importlib.util
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import torch

OK, NOTE, WARN, FAIL = "ok", "note", "warn", "FAIL"
TIMING_CASE = dict(frames=2, size=32, n=64, kernel_size=9, channels=3)


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def section(self, title: str) -> None:
        self.lines.append(f"\n{title}")

    def item(self, status: str, text: str) -> None:
        self.lines.append(f"  [{status:>4}] {text}" if status else f"         {text}")
        if status == FAIL:
            self.failures.append(text.splitlines()[0])


def shown(path) -> str:
    """A path relative to the working folder when inside it, else with the home folder as ~."""
    path = Path(path).resolve()
    with_home = str(path).replace(str(Path.home()), "~", 1) if str(path).startswith(str(Path.home())) else str(path)
    try:
        return str(path.relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return with_home


def _first_line(command: list[str]) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else None


def _short(message: str, lines: int = 3) -> str:
    parts = [line for line in str(message).strip().splitlines() if line.strip()]
    return "\n         ".join(parts[:lines] + (["..."] if len(parts) > lines else []))


def versions(report: Report) -> None:
    from pdr.render import _cuda

    report.section("versions")
    try:
        pdr_version = metadata.version("pdr-predgs")
    except metadata.PackageNotFoundError:
        pdr_version = "(not installed)"
    report.item("", f"pdr-predgs {pdr_version}, Python {platform.python_version()}, torch {torch.__version__} "
                    f"(built for CUDA {torch.version.cuda or 'none: CPU only'}), {platform.system()} "
                    f"{platform.machine()}")
    from torch.utils import cpp_extension

    compiler = cpp_extension.get_cxx_compiler() if hasattr(cpp_extension, "get_cxx_compiler") else "c++"
    home = _cuda.find_cuda_home()
    nvcc = _cuda.nvcc_version()
    report.item("", f"C++ compiler: {_first_line([compiler, '--version']) or f'{compiler} not found'}; ninja "
                    f"{_first_line(['ninja', '--version']) or 'not found'}; nvcc "
                    f"{f'{nvcc} ({shown(home)})' if nvcc else 'not found'}")
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(index)
            memory = torch.cuda.get_device_properties(index).total_memory / 2**30
            report.item("", f"GPU {index}: {torch.cuda.get_device_name(index)} (compute capability {major}.{minor}, "
                            f"{memory:.0f} GiB), driver {_cuda.driver_version() or 'unknown'}")
    else:
        report.item("", "GPU: none visible (torch.cuda.is_available() is False)")


def _compiled(report: Report, name: str, module) -> bool:
    reason = module.why_unbuildable()
    if reason:
        report.item(WARN, f"{name:<14}cannot be built here: {reason}; the torch backend is used instead")
        return False
    ok, why = module.extension_status()
    if ok:
        report.item(OK, f"{name:<14}{shown(module.load_extension().file)}")
    else:
        report.item(FAIL, f"{name:<14}does not build or load:\n         {_short(why)}")
    return ok


def backends(report: Report) -> dict[str, bool]:
    from pdr.render import _cpu, _cuda, _emulated

    report.section("renderer backends (rasterize_gaussians(..., backend=...))")
    report.item(OK, f"{'torch':<14}plain PyTorch, every device")
    usable = {"torch": True, "cpu": _compiled(report, "cpu", _cpu), "cuda": False}
    if not torch.cuda.is_available():
        reason = _cuda.why_unbuildable()
        report.item(NOTE, f"{'cuda':<14}not used: no GPU visible"
                          + (f" (nor could it be built: {reason})" if reason else
                             "; it is built and self-tested on its first use on a GPU"))
    else:
        usable["cuda"] = True
        for index in range(torch.cuda.device_count()):
            ok, why, wrong = _cuda.device_status(torch.device("cuda", index))
            usable["cuda"] &= ok
            if ok:
                report.item(OK, f"{'cuda':<14}GPU {index}: its self-test passed")
            else:
                report.item(FAIL, f"{'cuda':<14}GPU {index}: {'WRONG RESULTS, ' if wrong else ''}not used:\n"
                                  f"         {_short(why, 6)}")
    usable["cuda_emulated"] = _compiled(report, "cuda_emulated", _emulated)
    return usable


def _covered(capability: str, archs: str | None) -> str:
    """How a module built for ``archs`` (TORCH_CUDA_ARCH_LIST syntax) runs on a GPU of ``capability``."""
    if not archs:
        return "unknown (the module records no architectures)"
    entries = [a for a in re.split(r"[;\s]+", archs) if a]
    numeric = [(a.split("+")[0], a.endswith("+PTX")) for a in entries if re.fullmatch(r"\d+\.\d+a?(\+PTX)?", a)]
    if any(version.rstrip("a") == capability for version, _ in numeric):
        return f"yes (sm_{capability.replace('.', '')} code)"
    below = [version for version, ptx in numeric if ptx and float(version.rstrip("a")) <= float(capability)]
    if below:
        return f"through the PTX of {max(below, key=float)}, compiled by the driver on first use"
    if len(numeric) < len(entries):
        return f"unknown ({archs} names architectures by name)"
    return "NO: rebuild with TORCH_CUDA_ARCH_LIST naming it"


def cuda_module(report: Report, usable: dict[str, bool]) -> None:
    from pdr.render import _cuda, selftest
    from pdr.render._extension import build_directory

    report.section("CUDA module")
    try:
        loaded = torch.cuda.is_available() or importlib.util.find_spec("pdr._C") is not None
    except (ImportError, ValueError):
        loaded = False
    if not loaded:
        report.item(NOTE, f"not built here (no GPU, no ahead-of-time pdr._C); built on first use on a GPU into "
                          f"{shown(build_directory(_cuda.EXTENSION_NAME))}, for {_cuda.arch_list()}")
    else:
        try:
            described = _cuda.module_description()
        except RuntimeError as exc:
            report.item(FAIL, f"does not build or load:\n         {_short(exc)}")
            described = None
        if described is not None:
            report.item(OK if not described["stale"] else WARN,
                        f"{shown(described['file'])}, built {described['built']}, architectures "
                        f"{described['cuda_archs'] or 'not recorded'}, sources "
                        f"{'changed since: rebuild it' if described['stale'] else 'current'}")
            for index in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
                capability = "{}.{}".format(*torch.cuda.get_device_capability(index))
                coverage = _covered(capability, described["cuda_archs"])
                report.item(FAIL if coverage.startswith("NO") else OK, f"GPU {index} ({capability}): {coverage}")
    report.section(f"CUDA self-test verdicts (kept in {shown(_cuda.self_test_folder())})")
    verdicts = selftest.cached_verdicts(_cuda.self_test_folder())
    if not verdicts:
        report.item(NOTE, "none yet: the CUDA module is self-tested on its first use on each GPU")
    for result in verdicts:
        key = result.key
        what = (f"{key.get('device')} ({key.get('capability')}), module {key.get('module')}, torch "
                f"{key.get('torch')}, CUDA {key.get('cuda')}, driver {key.get('driver')}")
        if result.passed:
            report.item(OK, f"{what}: passed in {result.seconds * 1e3:.0f} ms")
        else:
            report.item(WARN, f"{what}: failed:\n         {_short('; '.join(result.failures), 4)}")


def _time(fn, device, repeats: int = 3) -> float:
    fn()  # warm-up (and any build)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timing(report: Report, usable: dict[str, bool]) -> None:
    from pdr.render import rasterize_gaussians

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    c = TIMING_CASE
    report.section(f"timing on {device} ({c['frames']} frames of {c['size']}x{c['size']}, N={c['n']}, "
                   f"K={c['kernel_size']}, C={c['channels']}, float32, {torch.get_num_threads()} CPU threads; "
                   "median of 3 calls)")
    g = torch.Generator().manual_seed(0)
    inputs = [torch.rand(c["frames"], c["n"], 2, generator=g) * 2 - 1,
              torch.rand(c["frames"], c["n"], 2, generator=g) * 3 + 0.5,
              torch.rand(c["frames"], c["n"], generator=g) * 6.28,
              torch.rand(c["frames"], c["n"], c["channels"], generator=g)]
    inputs = [t.to(device).requires_grad_() for t in inputs]
    names = ["torch", "cuda"] if device.type == "cuda" else ["torch", "cpu", "cuda_emulated"]
    report.item("", f"{'backend':<14}{'forward':>12}{'forward+backward':>20}")
    for name in names:
        if not usable.get(name):
            report.item("", f"{name:<14}{'n/a':>12}{'n/a':>20}")
            continue

        def forward(name=name):
            with torch.no_grad():
                rasterize_gaussians(*inputs, c["size"], c["size"], c["kernel_size"], backend=name)

        def both(name=name):
            rasterize_gaussians(*inputs, c["size"], c["size"], c["kernel_size"], backend=name).sum().backward()

        try:
            row = f"{_time(forward, device) * 1e3:>10.2f}ms{_time(both, device) * 1e3:>18.2f}ms"
        except RuntimeError as exc:
            report.item(FAIL, f"{name}: {_short(exc, 1)}")
            continue
        report.item("", f"{name:<14}{row}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="pdr-doctor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-timing", action="store_true", help="skip the timing of the backends")
    args = parser.parse_args(argv)
    report = Report()
    report.lines.append(f"pdr-doctor: the renderer on {platform.node() or 'this machine'}")
    versions(report)
    usable = backends(report)
    cuda_module(report, usable)
    if not args.no_timing:
        timing(report, usable)
    report.section("verdict")
    if report.failures:
        report.item(FAIL, f"{len(report.failures)} problem(s): " + "; ".join(report.failures))
    else:
        report.item(OK, "nothing is broken" + ("" if torch.cuda.is_available() else " (no GPU here: the cuda backend "
                                                                                    "was not checked)"))
    print("\n".join(report.lines))
    sys.stdout.flush()
    return 1 if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
