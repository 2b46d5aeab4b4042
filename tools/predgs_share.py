#!/usr/bin/env python
"""How much of a trained PredGS model's output comes from the rendered Gaussians: see `python tools/predgs_share.py --help`."""
from pdr.cli.predgs_share import main

if __name__ == "__main__":
    raise SystemExit(main())
