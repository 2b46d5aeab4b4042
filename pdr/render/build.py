"""``python -m pdr.render.build``: compile the CPU and CUDA rasterizers now and say where they went (or why not)."""
from __future__ import annotations

import argparse
import sys
import time

from . import _cpu, _cuda, _emulated
from ._extension import build_directory, source_directory


def _build_one(name: str, module, load) -> bool:
    reason = module.why_unbuildable()
    if reason:
        print(f"cannot build the {name} rasterizer: {reason}. pdr.render will use the torch backend instead.",
              file=sys.stderr)
        return False
    print(f"{name}: build folder {build_directory(module.EXTENSION_NAME)}")
    start = time.perf_counter()
    try:
        built = load()
    except RuntimeError as exc:
        print(f"{exc}\npdr.render will use the torch backend instead.", file=sys.stderr)
        return False
    print(f"{name}: {built.file} ready in {time.perf_counter() - start:.1f}s")
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pdr.render.build", description=__doc__)
    p.add_argument("--only", choices=("cpu", "cuda", "emulated"),
                   help="build one of them (default: cpu and cuda; emulated: the CUDA kernels on the CPU emulator)")
    p.add_argument("--arch", help='CUDA architectures, e.g. "9.0" or "8.0;9.0+PTX" (TORCH_CUDA_ARCH_LIST); '
                                  f"default: $TORCH_CUDA_ARCH_LIST, else {_cuda.DEFAULT_ARCHS} (those nvcc supports)")
    p.add_argument("--quiet", action="store_true", help="do not show the compiler's commands")
    args = p.parse_args(argv)
    print(f"sources: {source_directory()}")
    ok = True
    if args.only in (None, "cpu"):
        ok &= _build_one("CPU", _cpu, lambda: _cpu.load_extension(verbose=not args.quiet))
    if args.only in (None, "cuda"):
        ok &= _build_one("CUDA", _cuda, lambda: _cuda.load_extension(verbose=not args.quiet, archs=args.arch))
    if args.only == "emulated":
        ok &= _build_one("emulated CUDA", _emulated, lambda: _emulated.load_extension(verbose=not args.quiet))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
