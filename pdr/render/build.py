"""``python -m pdr.render.build``: compile the CUDA rasterizer now and say where it went (or why not)."""
from __future__ import annotations

import argparse
import sys
import time

from . import _cuda


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pdr.render.build", description=__doc__)
    p.add_argument("--arch", help='CUDA architectures, e.g. "9.0" or "8.0;9.0+PTX" (TORCH_CUDA_ARCH_LIST); '
                                  "default: the visible GPU's, or " + _cuda.DEFAULT_ARCHS + " without one")
    p.add_argument("--quiet", action="store_true", help="do not show the compiler's commands")
    args = p.parse_args(argv)
    reason = _cuda.why_unbuildable()
    if reason:
        print(f"cannot build the CUDA rasterizer: {reason}. pdr.render will use the torch backend.", file=sys.stderr)
        return 1
    print(f"sources: {_cuda.source_directory()}\nbuild folder: {_cuda.build_directory()}")
    start = time.perf_counter()
    try:
        module = _cuda.load_extension(verbose=not args.quiet, archs=args.arch)
    except RuntimeError as exc:
        print(f"{exc}\npdr.render will use the torch backend.", file=sys.stderr)
        return 1
    print(f"built {module.__file__} in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
