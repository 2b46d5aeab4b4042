"""Command-line entry points: the console scripts (pdr-train, ...) and the tools/*.py shims call their main()."""
