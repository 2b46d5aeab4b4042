#!/usr/bin/env python
"""Time per training step and parameter count of a backbone alone and wrapped with PredGS. See `python tools/bench_train_step.py --help`."""
from pdr.cli.bench_train_step import main

if __name__ == "__main__":
    raise SystemExit(main())
