#!/usr/bin/env python
"""Train a model from a config: see `python tools/train.py --help`."""
from pdr.cli.train import main

if __name__ == "__main__":
    raise SystemExit(main())
