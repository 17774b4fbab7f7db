"""Temporary files and folders that a killed process does not leave behind for good.

Every temporary name carries the creating process id; the next run deletes those whose process
has ended (on POSIX; elsewhere, those older than a day). A normal exit, an error or Ctrl-C
deletes them at once; only a hard kill (SIGKILL, power loss) leaves them until the next run.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

STALE_AGE_SECONDS = 24 * 3600  # without a process check (Windows): older than this is stale
_YOUNG_SECONDS = 60.0  # never touch a name this new: its process may not be visible yet


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists (POSIX). Elsewhere True: the caller falls back to age."""
    if os.name != "posix":  # os.kill(pid, 0) would send CTRL_C_EVENT on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def is_stale(path: Path, pid_text: str) -> bool:
    """Whether temporary `path`, created by process `pid_text`, was left by a dead process."""
    try:
        age = time.time() - path.lstat().st_mtime
    except OSError:
        return False
    if not pid_text.isdigit() or age < _YOUNG_SECONDS:
        return False
    return not process_alive(int(pid_text)) or age > STALE_AGE_SECONDS


@contextlib.contextmanager
def work_folder(prefix: str) -> Iterator[Path]:
    """A private folder `<tmp>/<prefix>-<pid>-<random>`, deleted on every exit path; folders of
    the same prefix left by killed processes are deleted first."""
    root = Path(tempfile.gettempdir())
    for path in root.glob(f"{prefix}-*"):
        if path.is_dir() and is_stale(path, path.name[len(prefix) + 1:].split("-")[0]):
            shutil.rmtree(path, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}-{os.getpid()}-", dir=root))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sibling_temp_prefix(dest: Path) -> str:
    """Name prefix of a temporary file written beside `dest`: hidden, with this process id."""
    return f".{dest.name}.{os.getpid()}."


def remove_stale_siblings(dest: Path) -> None:
    """Delete temporary files and folders beside `dest` (named by `sibling_temp_prefix`, ending
    in .tmp and a suffix) that ended processes left."""
    head = f".{dest.name}."
    for path in dest.parent.glob(f"{glob.escape(head)}*.tmp*"):
        if is_stale(path, path.name[len(head):].split(".")[0]):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
