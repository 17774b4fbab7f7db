"""Output paths: one rule for every command, checked before any work starts.

- A name with a suffix ('seg.nii.gz', 'seg.png', 'out.seg.nrrd') is a file: written if its
  format is one of `image_output_suffixes()`, else refused. It is never made a folder.
- A name without a suffix, or an existing folder, is a folder; results go inside it named
  '<case id><ext>'.
- Several images need a folder; two results with the same name are refused.
- An empty -o (e.g. an unset shell variable) is refused, not taken as the current folder.
- The place must be writable (the nearest existing folder above it), and where it is cheap to
  know, hold the uncompressed size of what will be written.
Nothing is created here: a refused run leaves no folder behind.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Mapping, Union

from arcoseg.errors import InputError, OutputError
from arcoseg.fileutil import expand_user, file_identity, full_suffix
from arcoseg.io.images import image_output_suffixes
from arcoseg.io.segnrrd import SUFFIX as SEG_NRRD

# Suffixes that name a file, refused as the name of an output folder (train, evaluate, demo).
FILE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".seg.nrrd", ".nhdr", ".mha", ".mhd", ".png",
                 ".jpg", ".csv", ".json", ".md", ".txt", ".zip", ".tar.gz", ".tgz", ".tar",
                 ".gz", ".safetensors", ".pt", ".pth", ".ckpt")


def output_path(text: str) -> Path:
    """argparse type of every output option (-o): the path, or exit 2 before any work when it is
    empty or blank, which `Path` would take as the current folder, or ends in a separator (a
    folder) after a file's suffix: `Path` drops the separator, and `-o seg.nrrd/` wrote a file."""
    if not text.strip():
        raise argparse.ArgumentTypeError("-o is empty; give a file or folder")
    path = user_path(text)
    if (text.endswith(("/", os.sep)) and full_suffix(path).lower() in FILE_SUFFIXES
            and not path.is_dir()):
        raise argparse.ArgumentTypeError(
            f"{text!r} ends with '/' (a folder) but its name ends in {full_suffix(path)} (a "
            "file): drop the '/' for a file, or name the folder without that suffix")
    return path


def user_path(text: str) -> Path:
    """argparse type of a path typed by a user: '~' and '~name' expanded (`expand_user`);
    ArgumentTypeError (exit 2) for a '~name' with no such user."""
    try:
        return expand_user(text)
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def names_file(out: Path) -> bool:
    """Whether -o names one output file: not an existing folder, and a name with a suffix."""
    return not out.is_dir() and bool(full_suffix(out))


def image_output_paths(out: Path, case_ids: list[str], ext: Union[str, Mapping[str, str]],
                       suffixes: tuple[str, ...] | None = None) -> dict[str, Path]:
    """{case id: output file} following the module's rule; OutputError when -o is a file name
    in an unknown format, a file name for several images, or a file where a folder is needed.

    `ext` is the format of files written into a folder: one for all, or one per case id;
    `suffixes` the formats the caller writes (default `image_output_suffixes()`)."""
    suffixes = suffixes or image_output_suffixes()
    exts = {cid: ext if isinstance(ext, str) else ext[cid] for cid in case_ids}
    for suffix in set(exts.values()) - set(suffixes):
        raise OutputError(f"Cannot write format '{suffix}'. Use one of {', '.join(suffixes)}.")
    if names_file(out):
        suffix = full_suffix(out)
        if suffix not in suffixes:
            raise OutputError(
                f"Cannot write {out}: '{suffix}' is not an image format ARCOSegment writes. Use "
                f"one of {', '.join(suffixes)}; for a folder, give a name without a dot or "
                "create the folder first.")
        if len(case_ids) > 1:
            raise OutputError(f"{out} names one file but {len(case_ids)} images are segmented. "
                              "Give a folder for -o (one file per image is written inside).")
        return {case_ids[0]: out}
    check_output_folder(out)
    return {cid: out / f"{cid}{exts[cid]}" for cid in case_ids}


def sibling(path: Path, tag: str) -> Path:
    """'seg.nii.gz' → 'seg_<tag>.nii.gz' (extra maps written beside a label map); beside a
    Slicer segmentation 'seg.seg.nrrd' they are plain volumes, 'seg_<tag>.nrrd'."""
    suffix = full_suffix(path)
    stem = path.name[: len(path.name) - len(suffix)]
    return path.with_name(f"{stem}_{tag}{'.nrrd' if suffix == SEG_NRRD else suffix}")


def check_distinct(paths: Iterable[Path], inputs: Iterable[Path] = ()) -> None:
    """OutputError if two outputs would be written to the same file, or one onto an input file
    (which it would replace: the user's image or drawing lost). Outputs are compared ignoring
    letter case (on macOS's and Windows' file systems Patient1.nii.gz and patient1.nii.gz are
    one file), and with the inputs by path and, where the output exists, by identity
    (`file_identity`: a hard link, or another letter case on those file systems)."""
    inputs = list(inputs)
    read = {os.path.realpath(path) for path in inputs}
    existing = {file_identity(path) for path in inputs if Path(path).is_file()}
    seen: dict[str, Path] = {}
    for path in paths:
        key = os.path.abspath(path).casefold()
        if key in seen:
            raise OutputError(f"Two results would both be written to {path}"
                              + (f" and {seen[key]} (one file where letter case is ignored, as "
                                 "on macOS and Windows)" if str(seen[key]) != str(path) else "")
                              + "; rename an input or choose another output.")
        if os.path.realpath(path) in read or (path.is_file() and file_identity(path) in existing):
            raise OutputError(f"The result would be written to {path}, which is one of the "
                              "input files, and replace it. Choose another output (-o).")
        seen[key] = path


def check_output_folder(folder: Path) -> None:
    """OutputError unless `folder` is (or can become) a writable folder."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file, but a folder is needed here. Choose a folder name.")
    if not folder.exists() and full_suffix(folder) in FILE_SUFFIXES:
        raise OutputError(f"{folder} looks like a file name ('{full_suffix(folder)}'), but a "
                          "folder is needed here. Give a folder name without a file suffix.")
    _check_can_create(folder)


def check_output_file(path: Path) -> None:
    """OutputError unless `path` can be written as a file (its folder may still be missing)."""
    if path.is_dir():
        raise OutputError(f"Output path {path} is a folder; give a file name.")
    _check_can_create(path.parent)


def check_free_space(paths_and_bytes: Mapping[Path, int]) -> None:
    """OutputError if a disk lacks the bytes the given outputs need (summed per disk)."""
    needed: dict[int, tuple[Path, int]] = {}
    for path, size in paths_and_bytes.items():
        anchor = _nearest_existing(path.parent)
        device = anchor.stat().st_dev
        needed[device] = (anchor, needed.get(device, (anchor, 0))[1] + size)
    for anchor, size in needed.values():
        free = shutil.disk_usage(anchor).free
        if free < size:
            raise OutputError(f"Not enough disk space in {anchor}: the results need up to "
                              f"{size / 1e6:.0f} MB, {free / 1e6:.0f} MB are free. Free some "
                              "space or choose another output location.")


def _check_can_create(folder: Path) -> None:
    anchor = _nearest_existing(folder)
    if not anchor.is_dir():
        raise OutputError(f"Cannot create output folder {folder}: {anchor} is a file. Choose "
                          "another location.")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise OutputError(f"Output folder {anchor} is not writable. Choose another location or "
                          "fix its permissions.")
    # os.access trusts the permission bits, which root passes everywhere and file systems like
    # /proc or a read-only mount do not honour: create (and delete) a file to be sure (a disk
    # that fills while writing is caught where the file is written, `io.images`)
    try:
        fd, probe = tempfile.mkstemp(dir=anchor, prefix=".arcoseg-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        where = anchor if folder == anchor else f"{anchor} (to create {folder})"
        raise OutputError(f"Cannot write in {where}: {err.strerror or err}. Choose another "
                          "location or fix its permissions.") from err


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path.parent != path:
        path = path.parent
    return path
