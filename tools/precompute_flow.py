#!/usr/bin/env python
"""Precompute optical flows between consecutive frames, stored next to the data. See `python tools/precompute_flow.py --help`."""
from pdr.cli.precompute_flow import main

if __name__ == "__main__":
    raise SystemExit(main())
