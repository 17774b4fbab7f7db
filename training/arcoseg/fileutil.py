"""Atomic file writing: write to a temporary sibling, then rename over the destination.

A crash or Ctrl-C mid-write never leaves a half-written output behind, and the file ends with the
permissions a plain `open(path, "w")` would give (umask applied; an existing file keeps its mode),
not the 0600 of the temporary file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

from arcoseg.errors import InputError, OutputError
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
    with atomic_paths([path]) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_paths(paths: Sequence[str | os.PathLike]) -> Iterator[list[Path]]:
    """`atomic_path` for files that belong together (a label map and its probability maps):
    on success all take their names, in order; if a rename fails midway (a folder created at
    that name meanwhile, a file held open on Windows), the files renamed over so far are put
    back from hard-link backups and the new ones removed, so that every path is as before.
    Every temporary path exists before the block runs (all folders checked first)."""
    dests = [ensure_parent_writable(path) for path in paths]
    made: list[tuple[Path, Path, int]] = []  # (temporary file, destination, its mode)
    try:
        for dest in dests:
            made.append((_temporary_beside(dest), dest,
                         stat.S_IMODE(dest.stat().st_mode) if dest.is_file() else normal_mode()))
        yield [tmp for tmp, _, _ in made]
        try:
            _rename_all(made)
        except OSError as err:
            names = ", ".join(str(dest) for dest in dests)
            raise OutputError(f"Could not write {err.filename2 or err.filename}: "
                              f"{err.strerror or err}; {names} "
                              f"{'is' if len(dests) == 1 else 'are'} as before. Check the "
                              "permissions and that nothing else writes there.") from err
    except BaseException:
        for tmp, _, _ in made:
            tmp.unlink(missing_ok=True)
        raise


def _temporary_beside(dest: Path) -> Path:
    """A new empty temporary file next to `dest` (named by `sibling_temp_prefix`); stale ones
    of killed runs are deleted first. OutputError if it cannot be created."""
    remove_stale_siblings(dest)
    try:
        fd, name = tempfile.mkstemp(prefix=sibling_temp_prefix(dest),
                                    suffix=f".tmp{full_suffix(dest)}", dir=dest.parent)
    except OSError as err:
        raise OutputError(f"Could not write {dest}: {err.strerror or err}. Check the free "
                          "disk space and permissions.") from err
    os.close(fd)
    return Path(name)


def _rename_all(made: list[tuple[Path, Path, int]]) -> None:
    """Rename each temporary file to its destination, all or none (`atomic_paths`)."""
    renamed: list[tuple[Path, Path | None, bool]] = []  # (destination, backup, had a file)
    backup = None
    try:
        for tmp, dest, mode in made:
            os.chmod(tmp, mode)  # after the writer: some writers replace the file they are given
            had_file = os.path.lexists(dest) and not dest.is_dir()
            backup = _backup(dest, tmp) if len(made) > 1 and had_file else None
            os.replace(tmp, dest)
            renamed.append((dest, backup, had_file))
            backup = None
    except BaseException:
        _undo(renamed)
        raise
    finally:
        for old in (backup, *(old for _, old, _ in renamed)):
            if old is not None:
                old.unlink(missing_ok=True)


def _undo(renamed: list[tuple[Path, Path | None, bool]]) -> None:
    """Put back the files renamed over (from their backups, emptying `renamed`) and remove the
    new ones. OutputError naming the kept backups if some cannot be put back."""
    failed = []
    while renamed:
        dest, old, had_file = renamed.pop()
        try:
            if old is not None:
                os.replace(old, dest)
            elif had_file:  # no backup could be made (another user's unreadable file)
                failed.append(f"{dest} (its previous content could not be kept)")
            else:
                dest.unlink(missing_ok=True)
        except OSError as err:
            failed.append(f"{dest} ({err.strerror or err}"
                          + (f"; its previous content is in {old})" if old else ")"))
    if failed:
        raise OutputError(f"A write failed and could not be undone for {', '.join(failed)}.")


def _backup(dest: Path, tmp: Path) -> Path | None:
    """A hard link (a copy where the file system has none) to the file at `dest`, named after
    its temporary file `tmp` (so a killed run's backup is cleaned up like it); None if neither
    can be made (e.g. another user's unreadable file in a shared folder): the write goes on, as
    a single file's would, and only a failure after it cannot put that file back."""
    backup = tmp.with_name(tmp.name + ".old")
    try:
        os.link(dest, backup, follow_symlinks=False)
    except OSError:
        try:
            shutil.copy2(dest, backup, follow_symlinks=False)
        except OSError:
            backup.unlink(missing_ok=True)
            return None
    return backup


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write a binary file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def expand_user(path: str | os.PathLike) -> Path:
    """`path` with '~' and '~name' expanded; InputError (exit 2) for a '~name' whose user does
    not exist: Path.expanduser raises RuntimeError, which ended as an internal error (and took
    a whole `serve` worker down when raised while a request was parsed)."""
    try:
        return Path(path).expanduser()
    except RuntimeError as err:
        text = os.fspath(path)
        raise InputError(f"Cannot expand {text.split(os.sep)[0]!r} in {text!r}: {err} Give the "
                         "full path.") from None


def file_identity(path: str | os.PathLike) -> tuple[int, int] | str:
    """What identifies a file: (device, inode) where it exists (a hard link, another spelling
    of its path, another letter case on macOS and Windows), else its resolved path."""
    try:
        stat = os.stat(path)
        return (stat.st_dev, stat.st_ino)
    except OSError:
        return str(Path(path).resolve())
