#!/usr/bin/env python
"""Train arms of one config the same way and compare them: see `python tools/compare.py --help`."""
from pdr.cli.compare import main

if __name__ == "__main__":
    raise SystemExit(main())
