#!/usr/bin/env python
"""Check a benchmark download: see `python tools/prepare_data.py --help`."""
from pdr.cli.prepare_data import main

if __name__ == "__main__":
    raise SystemExit(main())
