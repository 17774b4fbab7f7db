"""Atomic file writing: write to a temporary sibling, then rename over the destination.

A crash or Ctrl-C mid-write never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from arcoseg.errors import OutputError

# Multi-part suffixes matter: SimpleITK picks the writer from the file name.
_COMPOUND_SUFFIXES = (".nii.gz", ".seg.nrrd", ".tar.gz")


def full_suffix(path: str | os.PathLike) -> str:
    """The suffix that decides a file's format, e.g. '.nii.gz' for 'a.nii.gz'."""
    name = Path(path).name.lower()
    for suffix in _COMPOUND_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return Path(path).suffix.lower()


def ensure_parent_writable(path: str | os.PathLike) -> Path:
    """Create the parent folder of `path` if needed; raise OutputError if it cannot be written."""
    dest = Path(path)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"Cannot create output folder {dest.parent}: {err.strerror}. "
                          "Choose a writable location.") from err
    if dest.is_dir():
        raise OutputError(f"Output path {dest} is a folder; give a file name.")
    if not os.access(dest.parent, os.W_OK):
        raise OutputError(f"Output folder {dest.parent} is not writable. "
                          "Choose another location or fix its permissions.")
    return dest


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it to `path`, else delete it."""
    dest = ensure_parent_writable(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{full_suffix(dest)}",
                                    dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write a binary file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
