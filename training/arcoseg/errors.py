"""User-facing errors and the exit codes the command line maps them to.

Raise an `ArcosegError` (or a subclass) for anything the user can fix: the message must say which
file, what is wrong and what to do. The CLI prints it (or emits an `error` event) and exits with
`exit_code`, never with a traceback.
"""

from __future__ import annotations

from collections.abc import Collection

EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug: unexpected exception (traceback shown)
EXIT_USER = 2  # bad input, bad arguments, missing files: fix the input and rerun
EXIT_CANCELLED = 3  # SIGINT/SIGTERM: stopped on request, nothing half-written


class ArcosegError(Exception):
    """An error the user can act on; `str(err)` is the full message."""

    exit_code = EXIT_USER


class InputError(ArcosegError):
    """An input file, folder or dataset is missing, unreadable or inconsistent."""


class ModelFileError(ArcosegError):
    """A model folder is not a valid, safe ARCOSegment model."""


class DeviceError(ArcosegError):
    """The requested compute device is not available."""


class OutputError(ArcosegError):
    """An output path cannot be written."""


class Cancelled(ArcosegError):
    """The run was cancelled (SIGINT/SIGTERM)."""

    exit_code = EXIT_CANCELLED


_OUT_OF_MEMORY_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory",
                           "failed to allocate")


def is_out_of_memory(err: BaseException) -> bool:
    """True for numpy's MemoryError and torch's out-of-memory errors (torch.OutOfMemoryError
    for CUDA/MPS; a RuntimeError "... DefaultCPUAllocator: can't allocate memory" on the CPU)."""
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and any(m in text for m in _OUT_OF_MEMORY_MESSAGES)


def check_choice(value: str, choices: Collection[str], setting: str) -> None:
    """Raise ArcosegError naming `setting` and the choices unless `value` is one of `choices`."""
    if value not in choices:
        raise ArcosegError(f"Unknown {setting} '{value}'. Choose one of: {', '.join(choices)}.")
