#!/usr/bin/env python
"""Predict the future of new clips (videos, frame folders, arrays) with a trained run. See `python tools/predict.py --help`."""
from pdr.cli.predict import main

if __name__ == "__main__":
    raise SystemExit(main())
