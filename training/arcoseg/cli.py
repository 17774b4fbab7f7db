"""`arcoseg` command line: parsing, signal handling and the mapping of errors to exit codes."""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import os
import signal
import sys
import traceback
from types import FrameType

from arcoseg import __version__
from arcoseg.allocator import keep_freed_memory
from arcoseg.commands import adapt, demo, device, evaluate, models, segment, train
from arcoseg.commands.common import apply_threads
from arcoseg.errors import (EXIT_CANCELLED, EXIT_INTERNAL, EXIT_OK, EXIT_USER, ArcosegError,
                            is_out_of_memory)
from arcoseg.progress import Reporter, make_reporter

COMMANDS = (train, segment, evaluate, adapt, models, demo, device)
_MEMORY_REMEDY = ("Close other programs, or use --device cpu if the GPU ran out (the CPU has "
                  "the computer's whole memory).")
_MEMORY_REMEDIES = {  # what lowers each command's memory
    "segment": "Use --batch 1 (fewer windows or slices at once), leave out --probabilities and "
               "--entropy (both keep every class's probabilities), or "
               "crop the image to the region of interest. " + _MEMORY_REMEDY,
    "train": "Use a smaller --batch or --patch. " + _MEMORY_REMEDY,
    "adapt": "Crop the image to the region of interest (an ROI in Slicer). " + _MEMORY_REMEDY}


class StopFlag:
    """Set by SIGINT/SIGTERM; long loops poll it and stop cleanly. A second signal aborts."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def install(self) -> None:
        """Route SIGINT and SIGTERM to this flag."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


def build_parser(parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser
                 ) -> argparse.ArgumentParser:
    """The full parser; every command documents itself with --help."""
    parser = parser_class(
        prog="arcoseg",
        description="ARCOSegment engine: train, segment, evaluate label-efficient segmentation "
                    "models (ARCO semi-supervised contrastive learning).")
    parser.add_argument("--version", action="version", version=f"arcoseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        p = command.add_parser(sub)
        p.add_argument("--progress", choices=("text", "json", "none"), default="text",
                       help="text: progress bars; json: one JSON object per line on "
                            "stdout for programs; none: only the result")
        p.set_defaults(handler=command.run)
    from arcoseg import serve  # here: serve's lanes run commands through this module

    serve.add_parser(sub).set_defaults(serve=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code (0 ok, 2 bad input, 3 cancelled, 1 bug).

    Bad arguments end in SystemExit(2) from argparse before any work, the message on stderr
    and, with --progress json, also as an `error` event on stdout for the program reading it.
    """
    args = parse_arguments(build_parser(), argv)
    keep_freed_memory()  # before the work allocates: large tensors reused, not re-faulted
    if getattr(args, "serve", False):
        from arcoseg.serve import run_server

        return run_server(args)
    return run_with_signals(args, StopFlag())


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """`parser.parse_args(argv)`; a usage error is also reported as JSON when asked for."""
    words = sys.argv[1:] if argv is None else list(argv)
    pairs = zip(words, [*words[1:], ""])
    if not any(w == "--progress=json" or (w, n) == ("--progress", "json") for w, n in pairs):
        return parser.parse_args(argv)
    messages = io.StringIO()
    try:
        with contextlib.redirect_stderr(messages):
            return parser.parse_args(argv)
    except SystemExit as stop:
        if stop.code == 2:
            make_reporter("json").error(messages.getvalue().strip().splitlines()[-1],
                                        exit_code=2, kind="UsageError")
        raise
    finally:
        sys.stderr.write(messages.getvalue())


def run_with_signals(args: argparse.Namespace, stop: StopFlag) -> int:
    """Install `stop` for SIGINT/SIGTERM, run `args.handler` with a reporter for
    `args.progress`, and return the exit code."""
    reporter = make_reporter(args.progress)
    stop.install()
    try:
        return run_command(args, reporter, stop)
    finally:
        reporter.close()


def run_command(args: argparse.Namespace, reporter: Reporter, stop: StopFlag) -> int:
    """Run a parsed command, report its result or error, and return the exit code."""
    result = None
    try:
        apply_threads(getattr(args, "threads", None))  # commands without --device have none
        result = args.handler(args, reporter, stop)
        reporter.result(**result)
        return 0
    except ArcosegError as err:
        reporter.error(str(err), exit_code=err.exit_code, kind=type(err).__name__)
        return err.exit_code
    except KeyboardInterrupt:
        reporter.error("Cancelled.", exit_code=EXIT_CANCELLED, kind="Cancelled")
        return EXIT_CANCELLED
    except BrokenPipeError:  # the reader left (`| head`): nobody to tell, stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return EXIT_OK if result is not None else EXIT_CANCELLED
    except Exception as err:  # a bug: keep the traceback for the report
        if (known := _user_os_error(err)) is not None:
            reporter.error(known[0], exit_code=EXIT_USER, kind=known[1])
            return EXIT_USER
        if is_out_of_memory(err):
            reporter.error(f"Out of memory ({type(err).__name__}). "
                           f"{_MEMORY_REMEDIES.get(args.command, _MEMORY_REMEDY)}",
                           exit_code=EXIT_USER, kind="OutOfMemory")
            return EXIT_USER
        reporter.error(f"Internal error: {type(err).__name__}: {err}. Please report this with "
                       "the traceback printed on stderr.", exit_code=EXIT_INTERNAL, kind="internal")
        traceback.print_exc(file=sys.stderr)
        return EXIT_INTERNAL


def _user_os_error(err: Exception) -> tuple[str, str] | None:
    """(message, kind) for a system error the user can fix, wherever it is first met, or None: a
    path too long for the file system (a typo, a pasted text: Path.exists raises it), a full
    disk or quota (also inside safetensors' writer, which reports it as its own error)."""
    if isinstance(err, OSError) and err.errno == errno.ENAMETOOLONG:
        name = os.fsdecode(err.filename or "")
        if len(name) > 120:
            name = f"{name[:60]}…{name[-40:]} ({len(name)} characters)"
        return (f"A file or folder name is too long for the file system: {name}. Use a shorter "
                "name.", "InputError")
    quota = getattr(errno, "EDQUOT", errno.ENOSPC)  # not on Windows
    full = (isinstance(err, OSError) and err.errno in (errno.ENOSPC, quota)) or any(
        text in str(err) for text in ("No space left on device", "Disk quota exceeded"))
    if full:
        where = f" while writing {os.fsdecode(err.filename)}" if getattr(err, "filename", None) \
            else ""
        return (f"The disk is full (or your quota is used up){where}: {type(err).__name__}: "
                f"{str(err)[:300]}. Free some space, or write to another disk.", "OutputError")
    return None
