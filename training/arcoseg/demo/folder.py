"""The demo's output folder: what the demo writes there, and which folders a rerun may replace.

A rerun replaces only the demo's own outputs, and only in a folder the demo is shown to have
written: it holds the MARKER file (written first by every run since it exists), or, from an
older version, a report, a registry and demo files only. Names alone prove nothing: a user's
own `inputs/` or `report.md` is never deleted. Hidden entries (.DS_Store, .git, temporary
files of a killed run) are never deleted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

MARKER = ".arcoseg-demo"
REPORT_NAME = "report.md"  # written last: its presence marks a complete demo output
IMAGE_FILE, LABELS_FILE = "image.nii.gz", "full_labels.nii.gz"
ANNOTATIONS_FILE = "annotations.nii.gz"
INPUTS, EVALUATION, REGISTRY = "inputs", "evaluation", "registry"
SEGMENTATION, OVERLAY = "segmentation.nii.gz", "overlay.png"
OUTPUTS = (INPUTS, REGISTRY, SEGMENTATION, EVALUATION, OVERLAY, REPORT_NAME)


def replaceable(out: Path) -> list[Path]:
    """The earlier demo's outputs in `out`, to be replaced (`replace`); OutputError unless `out`
    is new, empty (hidden entries aside), or a folder the demo wrote that holds nothing else:
    no other entry, and in inputs/ and evaluation/ only the files the demo writes there."""
    from arcoseg.errors import OutputError
    from arcoseg.io.outputs import check_output_folder

    check_output_folder(out)
    entries = sorted(p for p in out.iterdir() if not p.name.startswith(".")) if out.is_dir() \
        else []
    if not entries:
        return []
    if not (out / MARKER).is_file() and not _older_demo(out):
        raise OutputError(f"{out} is not empty and was not written by `arcoseg demo` (no "
                          f"{MARKER} file). Choose a new or empty folder for -o.")
    others = [p.name for p in entries if p.name not in OUTPUTS] + _foreign_files(out)
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise OutputError(f"{out} holds files that are not the demo's ({shown}), and the demo "
                          "replaces its outputs there. Move them, or choose a new or empty "
                          "folder for -o.")
    return [p for p in entries if p.name in OUTPUTS]


def replace(entries: list[Path], out: Path) -> None:
    """Delete `entries` (from `replaceable`; a symbolic link itself, never what it points to),
    then mark `out` as the demo's."""
    from arcoseg.fileutil import write_text_atomic

    for path in entries:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / MARKER, "This folder is the output of `arcoseg demo`: the next demo "
                                    "run into it replaces the demo's files here.\n")


def _foreign_files(out: Path) -> list[str]:
    """Files in inputs/ and evaluation/ that the demo does not write there."""
    from arcoseg.evaluation.evaluate import CSV_NAME, SUMMARY_JSON, SUMMARY_MD

    known = {INPUTS: {IMAGE_FILE, LABELS_FILE, ANNOTATIONS_FILE},
             EVALUATION: {CSV_NAME, SUMMARY_JSON, SUMMARY_MD}}
    found = []
    for folder, names in known.items():
        if (out / folder).is_dir() and not (out / folder).is_symlink():
            found += [f"{folder}/{p.name}" for p in sorted((out / folder).iterdir())
                      if p.name not in names and not p.name.startswith(".")]
    return found


def _older_demo(out: Path) -> bool:
    """Whether `out` is a complete output of a demo from before MARKER: a report and a registry
    (`_foreign_files` and the entry names are checked as for any demo folder)."""
    return (out / REPORT_NAME).is_file() and (out / REGISTRY / "registry.json").is_file()
