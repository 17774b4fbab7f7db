"""Reproducible benchmarks: `python -m arcoseg.benchmarks.paper` reruns the paper's tables."""
