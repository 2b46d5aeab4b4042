"""Command-line entry points (tools/train.py, tools/eval.py)."""
