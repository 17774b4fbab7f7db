"""The demo's output folder: what the demo writes there, and what a rerun may delete.

A rerun deletes only the demo's own files, and only in a folder the demo is shown to have
written: it holds the MARKER file (written first by every run since it exists), or, from an
older version, the demo's report, its input image and a registry of the demo's model alone.
Names alone prove nothing: anything else in the folder, in inputs/, evaluation/ or the
registry (another model, a user's notes) makes the rerun refuse, and hidden entries (.git,
.DS_Store) are never deleted.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

MARKER = ".arcoseg-demo"
REPORT_NAME = "report.md"  # written last: its presence marks a complete demo output
REPORT_TITLE = "# ARCOSegment demo: adapt from a few annotated slices"
IMAGE_FILE, LABELS_FILE = "image.nii.gz", "full_labels.nii.gz"
ANNOTATIONS_FILE = "annotations.nii.gz"
INPUTS, EVALUATION, REGISTRY = "inputs", "evaluation", "registry"
SEGMENTATION, OVERLAY = "segmentation.nii.gz", "overlay.png"
OUTPUTS = (INPUTS, REGISTRY, SEGMENTATION, EVALUATION, OVERLAY, REPORT_NAME)
MODEL_NAME = "demo"  # the demo registry's only model
_INDEX = "registry.json"
_TEMPORARY = re.compile(r"^\..+\.\d+\..*tmp")  # a killed run's file (`fileutil` names them)


def replaceable(out: Path) -> list[Path]:
    """The demo's own files and folders in `out`, to be deleted (`replace`); OutputError unless
    `out` is new, empty (hidden entries aside), or a folder the demo wrote holding nothing of
    anyone else's."""
    from arcoseg.errors import OutputError
    from arcoseg.io.outputs import check_output_folder

    check_output_folder(out)
    entries = _visible(out) if out.is_dir() else []
    if not entries:
        return []
    if not (out / MARKER).is_file() and not _older_demo(out):
        raise OutputError(f"{out} is not empty and was not written by `arcoseg demo` (no "
                          f"{MARKER} file). Choose a new or empty folder for -o.")
    own, others = [], [p.name for p in entries if p.name not in OUTPUTS]
    for path in (p for p in entries if p.name in OUTPUTS):
        if path.is_dir() and not path.is_symlink():
            mine, theirs = _inside(path)
            own += mine
            others += theirs
        own.append(path)  # a folder after its files: deleted when they leave it empty
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise OutputError(f"{out} holds files that are not the demo's ({shown}), and the demo "
                          "replaces its outputs there. Move them, or choose a new or empty "
                          "folder for -o.")
    return own


def replace(own: list[Path], out: Path) -> None:
    """Delete `own` (from `replaceable`: files and links themselves, the registry's model and
    staging folders whole, other folders once empty), then mark `out` as the demo's."""
    from arcoseg.fileutil import write_text_atomic

    for path in own:
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        elif (path.parent.name, path.name) in ((REGISTRY, "staging"), ("models", MODEL_NAME)):
            shutil.rmtree(path)  # the registry's own work area; the demo's model (checked)
        elif not any(path.iterdir()):
            path.rmdir()  # a hidden entry (kept) keeps its folder
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / MARKER, "This folder is the output of `arcoseg demo`: the next demo "
                                    "run into it replaces the demo's files here.\n")


def _inside(folder: Path) -> tuple[list[Path], list[str]]:
    """(the demo's entries in `folder`, the names of anyone else's): hidden entries are neither
    (kept), but for the temporary files of a killed run."""
    from arcoseg.evaluation.evaluate import CSV_NAME, SUMMARY_JSON, SUMMARY_MD

    known = {INPUTS: {IMAGE_FILE, LABELS_FILE, ANNOTATIONS_FILE},
             EVALUATION: {CSV_NAME, SUMMARY_JSON, SUMMARY_MD},
             REGISTRY: {_INDEX, "registry.lock", "staging", "models"}}[folder.name]
    own, others = [], []
    for path in sorted(folder.iterdir()):
        if path.name in known or _TEMPORARY.match(path.name):
            own.append(path)
        elif not path.name.startswith("."):
            others.append(f"{folder.name}/{path.name}")
    models = folder / "models"
    if folder.name == REGISTRY and models.is_dir() and not models.is_symlink():
        others += _other_models(folder)
        own = [p for p in own if p != models] + _visible(models) + [models]  # files first
    return own, others


def _other_models(registry: Path) -> list[str]:
    """What in a demo's registry is not the demo's model (a model a user added to it)."""
    found = [f"{REGISTRY}/models/{p.name}" for p in _visible(registry / "models")
             if p.name != MODEL_NAME]
    try:
        listed = json.loads((registry / _INDEX).read_text(encoding="utf-8-sig"))["models"]
    except (OSError, ValueError, KeyError, TypeError):
        return [*found, f"{REGISTRY}/{_INDEX} (not the demo's registry index)"]
    return found + [f"{REGISTRY}/{_INDEX}: model {name}" for name in listed if name != MODEL_NAME]


def _older_demo(out: Path) -> bool:
    """Whether `out` is a complete output of a demo from before MARKER: its report (by title)
    and its input image (the registry and the rest are checked as for any demo folder)."""
    try:
        title = (out / REPORT_NAME).read_text(encoding="utf-8").split("\n", 1)[0]
    except (OSError, UnicodeDecodeError):
        return False
    return title == REPORT_TITLE and (out / INPUTS / IMAGE_FILE).is_file()


def _visible(folder: Path) -> list[Path]:
    """`folder`'s entries but hidden ones, sorted; none if it is not a folder."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
