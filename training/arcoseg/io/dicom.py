"""DICOM series folders: the one series a folder holds, its files in slice order, and the
slice positions checked before the series is read as one volume.

ITK's series reader spreads N slices evenly between the first and the last position and only
prints a warning to stderr when they are not evenly spaced ("Non uniform sampling or missing
slices detected"): a series with a missing slice, uneven spacing, several images per position
(echoes, time points) or a gantry tilt is read onto a grid where slices lie up to half a slice
(or a tilt's shear) away from their true positions — a segmentation placed wrongly with exit 0.
`dicom_series_files` refuses such series from their headers, before any voxel is read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from arcoseg.errors import InputError
from arcoseg.io.image_files import folder_entries, no_images, unreadable

POSITION, ORIENTATION = "0020|0032", "0020|0037"  # Image Position / Orientation (Patient)
# largest deviation of one slice step from the median step: a fraction of the median, and at
# least STEP_ROUNDING mm (positions are written with a few decimals: at 2 decimals a 0.625 mm
# step reads as 0.62 or 0.63, an evenly spaced thin-slice series)
STEP_TOLERANCE, STEP_ROUNDING = 0.01, 0.02


def read_dicom_series(folder: Path) -> sitk.Image:
    """The one DICOM series in `folder` as a 3D image (`dicom_series_files` refuses the rest)."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(dicom_series_files(folder))
    try:
        return reader.Execute()
    except RuntimeError as err:
        raise unreadable(folder, err) from err


def dicom_series_files(folder: Path) -> list[str]:
    """The files of the one DICOM series in `folder` in slice order, found from their headers
    (no voxels read). InputError for an empty or unreadable folder, a folder without a series
    (naming what it holds) or with several, and slices not evenly spaced along one axis
    (`check_slice_positions`)."""
    entries = folder_entries(folder)
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise no_images(folder, entries)
    if len(series) > 1:
        raise InputError(f"Folder {folder} contains {len(series)} DICOM series "
                         f"({', '.join(series)}); put each series in its own folder.")
    files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0]))
    check_slice_positions(folder, files)
    return files


def check_slice_positions(folder: Path, files: list[str]) -> None:
    """InputError unless the slices `files` (in GDCM's order) share one orientation and lie at
    evenly spaced, distinct positions along its normal (within STEP_TOLERANCE of the step, at
    least STEP_ROUNDING mm). Files without a position (one slice, secondary captures) are not
    checked: ITK reads them as they are."""
    headers = [_position_and_orientation(folder, name) for name in files]
    if len(files) < 2 or any(h is None for h in headers):
        return
    positions = np.array([h[0] for h in headers])
    orientations = np.array([h[1] for h in headers])
    if np.abs(orientations - orientations[0]).max() > 1e-3:
        raise InputError(f"The slices of the DICOM series in {folder} do not share one "
                         "orientation (Image Orientation Patient): it is not one volume. Export "
                         "each stack as its own series.")
    normal = np.cross(orientations[0][:3], orientations[0][3:])
    steps = np.diff(positions, axis=0)
    along = steps @ normal
    step = float(np.median(np.abs(along)))
    tolerance = max(STEP_TOLERANCE * step, STEP_ROUNDING)
    if step < 1e-6 or np.abs(along).min() < min(tolerance, step / 2):
        raise InputError(f"The DICOM series in {folder} holds several images at one slice "
                         "position (echoes, time points or a repeated slice): it is not one "
                         "volume. Export one echo or time point per series.")
    _check_steps(folder, files, along, step, tolerance)
    sideways = np.linalg.norm(steps - np.outer(along, normal), axis=1)
    if sideways.max() > tolerance:
        raise InputError(f"The slices of the DICOM series in {folder} move sideways by up to "
                         f"{sideways.max():.2f} mm from one to the next (a gantry tilt): read "
                         "as one volume, the image would be sheared. Resample it to a regular "
                         "grid first (e.g. Slicer's DICOM import corrects gantry tilt), and "
                         "save it as NRRD or NIfTI.")


def _check_steps(folder: Path, files: list[str], along: np.ndarray, step: float,
                 tolerance: float) -> None:
    """InputError naming the first pair of neighbouring slices whose distance is not `step`
    (within `tolerance` mm)."""
    off = np.flatnonzero(np.abs(np.abs(along) - step) > tolerance)
    if off.size:
        i = int(off[0])
        raise InputError(
            f"The DICOM series in {folder} is not evenly spaced: slices {Path(files[i]).name} "
            f"and {Path(files[i + 1]).name} lie {abs(along[i]):.3g} mm apart, most others "
            f"{step:.3g} mm (a missing slice, or uneven spacing). Read as one volume, its slices "
            "would be placed up to half a slice from their true positions. Export the complete "
            "series, or resample it to even spacing (e.g. in Slicer) and save it as NRRD or "
            "NIfTI.")


def _position_and_orientation(folder: Path, name: str
                              ) -> tuple[np.ndarray, np.ndarray] | None:
    """(Image Position Patient (3,), Image Orientation Patient (6,)) of one file in mm, or
    None when either is missing or unparsable."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(name)
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise unreadable(Path(name), err) from err
    if not (reader.HasMetaDataKey(POSITION) and reader.HasMetaDataKey(ORIENTATION)):
        return None
    try:
        position = [float(v) for v in reader.GetMetaData(POSITION).split("\\")]
        orientation = [float(v) for v in reader.GetMetaData(ORIENTATION).split("\\")]
    except ValueError:
        return None
    if len(position) != 3 or len(orientation) != 6:
        return None
    return np.array(position), np.array(orientation)
