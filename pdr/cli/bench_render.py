"""pdr-bench-render: the render benchmark of tools/bench_render.py as a console script.

The benchmark's code lives in tools/bench_render.py, which an installed copy ships as ``pdr._tools``.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path


def _benchmark():
    try:  # an installed copy, or an editable install that maps tools/ to pdr._tools
        return importlib.import_module("pdr._tools.bench_render")
    except ImportError:
        path = Path(__file__).resolve().parents[2] / "tools" / "bench_render.py"  # a source checkout
        spec = importlib.util.spec_from_file_location("pdr_tools_bench_render", path)
        module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look it up
        spec.loader.exec_module(module)
        return module


def main(argv=None) -> int:
    return _benchmark().main(argv)
