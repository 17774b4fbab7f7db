"""Arguments and helpers shared by several commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from arcoseg.constants import DEVICE_CHOICES


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """--device, --no-amp and --threads."""
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES,
                        help="compute device: auto = CUDA GPU, then Apple MPS, then CPU (default)")
    parser.add_argument("--no-amp", dest="amp", action="store_false",
                        help="disable mixed precision on the GPU")
    parser.add_argument("--threads", type=positive_int,
                        help="CPU threads torch may use (default: one per core). On a machine "
                             "busy with other programs, fewer (e.g. 1) can be many times "
                             "faster: oversubscribed cores slow torch down up to tenfold")


def apply_threads(threads: int | None) -> None:
    """Limit torch's CPU threads to `threads` (None: leave torch's default)."""
    if threads:
        import torch  # here, so that --help and argument errors stay fast

        torch.set_num_threads(threads)


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def existing_path(text: str) -> Path:
    """argparse type for a path; existence is checked by the reader with a clearer message."""
    return Path(text).expanduser()
