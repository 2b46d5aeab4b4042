#!/usr/bin/env python
"""One prepared check of PDR on a GPU (tests, renderer and train-step benchmarks, a short comparison). See
`python tools/gpu_check.py --help`."""
from pdr.cli.gpu_check import main

if __name__ == "__main__":
    raise SystemExit(main())
