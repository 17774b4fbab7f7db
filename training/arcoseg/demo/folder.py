"""The demo's output folder: what the demo writes there, and what a rerun may delete.

Every run writes the MARKER file first, and when it finishes, the list of the files it wrote
(size and modification time of each). A rerun deletes exactly those files, and only if the
folder holds nothing else and none of them has changed: a model version a user adapted in the
demo's registry, a note in inputs/, an edited report, a symbolic link, a run that did not
finish — each makes the rerun refuse (choose another -o, or delete the folder). Hidden entries
(.git, .DS_Store) are neither listed nor deleted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

MARKER = ".arcoseg-demo"
REPORT_NAME = "report.md"  # written last: its presence marks a complete demo output
REPORT_TITLE = "# ARCOSegment demo: adapt from a few annotated slices"
IMAGE_FILE, LABELS_FILE = "image.nii.gz", "full_labels.nii.gz"
ANNOTATIONS_FILE = "annotations.nii.gz"
INPUTS, EVALUATION, REGISTRY = "inputs", "evaluation", "registry"
SEGMENTATION, OVERLAY = "segmentation.nii.gz", "overlay.png"
OUTPUTS = (INPUTS, REGISTRY, SEGMENTATION, EVALUATION, OVERLAY, REPORT_NAME)  # what runs write


def replaceable(out: Path) -> list[Path]:
    """The files an earlier demo run wrote in `out`, to be deleted (`start`); OutputError unless
    `out` is new, empty (hidden entries aside), or holds exactly those files, unchanged."""
    from arcoseg.errors import OutputError
    from arcoseg.io.outputs import check_output_folder

    check_output_folder(out)
    found = _visible_files(out) if out.is_dir() else {}
    if not found:
        return []
    try:
        written = json.loads((out / MARKER).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        written = None
    if not isinstance(written, dict):
        why = ("a demo run there did not finish, or was made by an older version"
               if (out / MARKER).exists() else
               f"it was not written by `arcoseg demo` (no {MARKER} file)")
        raise OutputError(f"{out} is not empty and {why}. Choose a new or empty folder for -o, "
                          "or delete that folder.")
    others = sorted(name for name, stamp in found.items() if written.get(name) != stamp)
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise OutputError(f"{out} holds files the demo did not write, or changed since "
                          f"({shown}), and the demo replaces its outputs there. Move them, or "
                          "choose a new or empty folder for -o.")
    return [out / name for name in found]


def start(written: list[Path], out: Path) -> None:
    """Delete `written` (from `replaceable`) and the folders they leave empty, then mark `out`
    as a demo folder whose run has not finished."""
    from arcoseg.fileutil import write_text_atomic

    for path in written:
        path.unlink()
    for folder in sorted({p.parent for p in written}, key=lambda p: -len(p.parts)):
        _remove_empty(folder, out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / MARKER, json.dumps({"files": None}) + "\n")


def finish(out: Path, since_ns: int) -> None:
    """Record the files this run wrote in `out` (what the next run may replace): those in the
    demo's outputs (OUTPUTS) modified since `since_ns` (`time.time_ns()` before `start`), not a
    file someone else saved beside them while it ran."""
    from arcoseg.fileutil import write_text_atomic

    ours = {name: stamp for name, stamp in _visible_files(out).items()
            if name.split("/", 1)[0] in OUTPUTS and stamp[1] >= since_ns}
    write_text_atomic(out / MARKER, json.dumps({"files": ours}, indent=1) + "\n")


def _visible_files(out: Path) -> dict[str, list[int]]:
    """{path relative to `out`: [size, modification time in ns]} of every entry under `out` but
    hidden ones and what lies under them; folders are walked, symbolic links listed as
    entries (never followed), so a link is never taken for the demo's."""
    found: dict[str, list[int]] = {}
    for root, folders, files in os.walk(out):
        folders[:] = [f for f in folders if not f.startswith(".")]
        for name in [*files, *(f for f in folders if Path(root, f).is_symlink())]:
            if not name.startswith("."):
                path = Path(root, name)
                stat = path.lstat()
                found[path.relative_to(out).as_posix()] = [stat.st_size, stat.st_mtime_ns]
    return found


def _remove_empty(folder: Path, out: Path) -> None:
    """Remove `folder` and its parents up to `out` while they are empty (hidden entries kept)."""
    while folder != out and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
