#!/usr/bin/env python
"""Evaluate run folders on the test split: see `python tools/eval.py --help`."""
from pdr.cli.eval import main

if __name__ == "__main__":
    raise SystemExit(main())
