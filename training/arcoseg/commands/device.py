"""`arcoseg device`: which compute device a run would use (for the Slicer panel and users)."""

from __future__ import annotations

import argparse
from typing import Any, Callable

from arcoseg.commands.common import HelpFormatter, add_device_arguments
from arcoseg.progress import Reporter


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `device`."""
    p = sub.add_parser("device", help="show the compute device, its name and the torch version",
                       formatter_class=HelpFormatter)
    add_device_arguments(p)
    return p


def run(args: argparse.Namespace, reporter: Reporter, stop: Callable[[], bool]) -> dict[str, Any]:
    """Describe the resolved device."""
    from arcoseg.device import describe_device, resolve_device  # torch: only when run

    return describe_device(resolve_device(args.device))
