"""What an input path names: an image file (by its suffix), a folder of image files, or a
folder holding one DICOM series (checked by `io.images.check_image`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import SimpleITK as sitk

from arcoseg.errors import InputError
from arcoseg.fileutil import full_suffix
from arcoseg.io.image_files import READABLE_SUFFIXES, folder_entries


def is_image_path(path: str | os.PathLike) -> bool:
    """True if the name (not hidden) has a readable image suffix (.nii.gz, .nrrd, ...)."""
    p = Path(path)
    return not p.name.startswith(".") and full_suffix(p) in READABLE_SUFFIXES


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside `folder`, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"Image folder {folder} does not exist or is not a folder.")
    return _image_files(folder.iterdir())


def _image_files(entries: Iterable[Path]) -> list[Path]:
    """The image files (`is_image_path`) among a folder's `entries`, sorted by name."""
    return sorted(p for p in entries if p.is_file() and is_image_path(p))


def image_inputs(path: Path) -> list[Path]:
    """The images an input path names: a file itself, or a folder's image files; a folder
    without any is one DICOM series (itself; `check_image` checks it is one). InputError for a
    missing path, an empty or unreadable folder (`image_files.folder_entries`), and a folder
    holding image files beside a DICOM series (which one was meant is a guess: the series was
    skipped; e.g. `segment` written into the series' own folder)."""
    if not path.exists():
        raise InputError(f"Input {path} does not exist. Check the path.")
    if not path.is_dir():
        return [path]
    entries = folder_entries(path)
    images = _image_files(entries)
    others = len(images) < sum(1 for p in entries if p.is_file())  # a README, DICOM files…
    if images and others and _holds_dicom_series(path):
        raise InputError(f"Folder {path} holds image files ({', '.join(p.name for p in images[:3])}"
                         f"{', …' if len(images) > 3 else ''}) and a DICOM series: give the "
                         "series a folder of its own, or move the image files out.")
    return images or [path]


def _holds_dicom_series(folder: Path) -> bool:
    """Whether GDCM finds a DICOM series in `folder`, without ITK's "No Series were found"
    warning on stderr (the usual answer here: a README beside NIfTI files)."""
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        return bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
