#!/usr/bin/env python
"""Predict future frames of frame folders with a trained latent flow model (docs/latent_flow.md). See `python tools/infer.py --help`."""
from pdr.cli.infer import main

if __name__ == "__main__":
    raise SystemExit(main())
