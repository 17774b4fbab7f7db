"""Arguments and helpers shared by several commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from arcoseg.constants import DEVICE_CHOICES
from arcoseg.cpu_load import allowed_cores, free_cores
from arcoseg.io.outputs import user_path
from arcoseg.ranges import Range


class HelpFormatter(argparse.HelpFormatter):
    """`--help` shows every option's default: "(default: X)" is appended unless the help names it
    with %(default)s or in words ("(default: the free cores)"). Flags, and None or empty
    defaults ("not set"), are explained in words."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        unset = default is None or default is argparse.SUPPRESS or default == []
        flag = action.nargs == 0  # store_true / store_false / help / version
        positional = not action.option_strings and action.nargs not in ("?", "*")
        if "%(default)" in text or "(default:" in text or unset or flag or positional:
            return text
        return f"{text} (default: %(default)s)"


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """--device, --no-amp and --threads."""
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES,
                        help="compute device: auto = CUDA GPU, then Apple MPS, then CPU")
    parser.add_argument("--no-amp", dest="amp", action="store_false",
                        help="disable mixed precision: bfloat16 on GPUs and, on CPUs with native "
                             "bfloat16 (AVX512-BF16, AMX), for inference and for training 2D "
                             "models")
    parser.add_argument("--threads", type=thread_range(), default=AUTO_THREADS,
                        help="CPU threads torch may use, at most the cores this process may use "
                             "(default: the cores not busy with other programs now, from the CPU "
                             "affinity and a sample of the CPU time). Oversubscribed cores slow "
                             "torch down up to tenfold")


AUTO_THREADS = 0  # --threads not given: choose from the free cores


def thread_range() -> Range:
    """The range of --threads: 1 to the cores this process may use (more only oversubscribes
    them, and a huge count makes torch's and OpenBLAS's thread pools fail to start: a crash,
    not an error)."""
    return Range(int, 1, allowed_cores())


def apply_threads(threads: int | None) -> int | None:
    """Set torch's CPU threads: `threads`, or AUTO_THREADS → `free_cores()`; None (a command
    without --threads) leaves torch alone. Returns the count set.

    OpenMP's busy-wait is switched off in `arcoseg/__init__.py` (OMP_WAIT_POLICY=PASSIVE, before
    torch loads): spinning threads steal the cores other programs and our own threads need.
    """
    if threads is None:
        return None
    import torch  # here, so that --help and argument errors stay fast

    count = threads or free_cores()
    torch.set_num_threads(count)
    return count


def existing_path(text: str) -> Path:
    """argparse type for a path; existence is checked by the reader with a clearer message."""
    return user_path(text)
