"""ARCOSegment engine: data I/O, networks, ARCO training, inference, metrics, model files, CLI."""

__version__ = "0.1.0"
