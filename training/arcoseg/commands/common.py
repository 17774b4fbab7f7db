"""Arguments and helpers shared by several commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from arcoseg.device import DEVICE_CHOICES


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """--device and --no-amp."""
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES,
                        help="compute device: auto = CUDA GPU, then Apple MPS, then CPU (default)")
    parser.add_argument("--no-amp", dest="amp", action="store_false",
                        help="disable mixed precision on the GPU")


def existing_path(text: str) -> Path:
    """argparse type for a path; existence is checked by the reader with a clearer message."""
    return Path(text).expanduser()
