"""Atomic file writing: write to a temporary sibling, then rename over the destination.

A crash or Ctrl-C mid-write never leaves a half-written output behind, and the file ends with the
permissions a plain `open(path, "w")` would give (umask applied; an existing file keeps its mode),
not the 0600 of the temporary file.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterator

from arcoseg.errors import OutputError
from arcoseg.tempfiles import remove_stale_siblings, sibling_temp_prefix

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


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (/proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it (and restore it)
    os.umask(mask)
    return mask


def normal_mode(directory: bool = False) -> int:
    """Permission bits a new file (or folder) gets from open() (mkdir) under the current umask."""
    return (0o777 if directory else 0o666) & ~current_umask()


def make_temp_dir(parent: Path, prefix: str, suffix: str = ".tmp") -> Path:
    """A new folder in `parent` with a unique name and normal permissions (mkdtemp's are 0700,
    which would stay on a folder that is later renamed into place)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))
    os.chmod(folder, normal_mode(directory=True))
    return folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it to `path`, else delete it.

    The renamed file has the mode an existing `path` had, else the umask's normal file mode.
    """
    dest = ensure_parent_writable(path)
    mode = stat.S_IMODE(dest.stat().st_mode) if dest.is_file() else normal_mode()
    remove_stale_siblings(dest)  # left by a killed run
    fd, tmp_name = tempfile.mkstemp(prefix=sibling_temp_prefix(dest),
                                    suffix=f".tmp{full_suffix(dest)}", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, mode)  # after the writer: some writers replace the file they are given
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
