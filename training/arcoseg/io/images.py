"""Reading and writing images and label maps with validation (the SimpleITK boundary).

Everything outside this module sees numpy arrays in (z, y, x) order; SimpleITK's (x, y, z) order
(spacing, origin, size) is converted here only.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import Collection

import numpy as np
import SimpleITK as sitk

from arcoseg.constants import IGNORE_LABEL
from arcoseg.errors import InputError, OutputError
from arcoseg.fileutil import atomic_path, full_suffix

READABLE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
SUPPORTED_OUTPUT_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
MAX_LABEL_VALUE = 254  # 255 is IGNORE_LABEL (unannotated) inside the engine
_GEOMETRY_RTOL = 1e-4


def is_image_path(path: str | os.PathLike) -> bool:
    """True if the name (not hidden) has a readable image suffix (.nii.gz, .nrrd, ...)."""
    p = Path(path)
    return not p.name.startswith(".") and full_suffix(p) in READABLE_SUFFIXES


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside `folder`, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"Image folder {folder} does not exist or is not a folder.")
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_path(p))


def image_spacing_zyx(image: sitk.Image) -> tuple[float, float, float]:
    """Voxel spacing of a 3D image in (z, y, x) order."""
    return tuple(float(s) for s in reversed(image.GetSpacing()))  # type: ignore[return-value]


def read_spacing_zyx(path: str | os.PathLike) -> tuple[float, float, float]:
    """Voxel spacing (z, y, x) from the file header only (no pixel data is read)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise _unreadable(path, err) from err
    spacing = list(reader.GetSpacing())[:3]
    spacing += [1.0] * (3 - len(spacing))
    return tuple(float(s) for s in reversed(spacing))  # type: ignore[return-value]


def read_image(path: str | os.PathLike) -> sitk.Image:
    """Read a 3D image (any SimpleITK file or a DICOM series folder) as float32.

    2D images become one-slice 3D images. Raises InputError for a missing, unreadable or truncated
    file, a 4D or multi-component image, and NaN/Inf intensities (ITK's NIfTI reader already
    turns those into 0).
    """
    image = _read_3d(path)
    if image.GetPixelID() != sitk.sitkFloat32:
        image = sitk.Cast(image, sitk.sitkFloat32)
    if not np.isfinite(sitk.GetArrayViewFromImage(image)).all():
        raise InputError(f"Image {path} contains NaN or infinite intensities. "
                         "Fix or re-export the image.")
    return image


def read_label(path: str | os.PathLike, reference: sitk.Image | None = None,
               allowed_values: Collection[int] | None = None,
               reference_name: str = "the reference image",
               partial: bool = False) -> sitk.Image:
    """Read a label map as uint8 and validate its values (and its grid against `reference`).

    Raises InputError for non-integer values, values outside 0..254 (0..255 when `partial`:
    255 marks unannotated voxels) or not in `allowed_values`, and (with `reference`) a size,
    spacing, origin or direction that differs from the reference.
    """
    label = _read_3d(path)
    values = _label_values(label, path, IGNORE_LABEL if partial else MAX_LABEL_VALUE)
    if allowed_values is not None:
        unknown = sorted(set(values) - {int(v) for v in allowed_values})
        if unknown:
            raise InputError(f"Label map {path} contains value(s) {unknown} that are not in the "
                             f"dataset's labels {sorted(int(v) for v in allowed_values)}. "
                             "Fix the label map or add the labels to dataset.json.")
    if reference is not None:
        check_same_geometry(reference, label, reference_name, str(path))
    return sitk.Cast(label, sitk.sitkUInt8) if label.GetPixelID() != sitk.sitkUInt8 else label


def geometry_difference(image: sitk.Image, other: sitk.Image) -> str | None:
    """The first of size/spacing/origin/direction that differs (relative tolerance 1e-4),
    described with both values in (x, y, z) order, or None if the grids match."""
    checks = (("size", image.GetSize(), other.GetSize()),
              ("spacing", image.GetSpacing(), other.GetSpacing()),
              ("origin", image.GetOrigin(), other.GetOrigin()),
              ("direction", image.GetDirection(), other.GetDirection()))
    for prop, a, b in checks:
        scale = max([1.0, *(abs(v) for v in a)])
        if len(a) != len(b) or not np.allclose(a, b, rtol=_GEOMETRY_RTOL,
                                               atol=_GEOMETRY_RTOL * scale):
            return f"{prop} differs ({_fmt(b)} vs {_fmt(a)}, in (x, y, z) order)"
    return None


def check_same_geometry(image: sitk.Image, other: sitk.Image, image_name: str,
                        other_name: str) -> None:
    """Raise InputError unless both images share size, spacing, origin and direction."""
    difference = geometry_difference(image, other)
    if difference is not None:
        raise InputError(f"{other_name} does not match {image_name}: {difference}. Both must be "
                         "on the same voxel grid; resample one onto the other (e.g. in 3D "
                         "Slicer) and try again.")


def write_image(image: sitk.Image, path: str | os.PathLike) -> None:
    """Write an image atomically with compression; the format follows the extension."""
    suffix = full_suffix(path)
    if suffix not in SUPPORTED_OUTPUT_SUFFIXES:
        raise OutputError(f"Cannot write {path}: unsupported extension '{suffix or '(none)'}'. "
                          f"Use one of {', '.join(SUPPORTED_OUTPUT_SUFFIXES)}.")
    with atomic_path(path) as tmp:
        try:
            sitk.WriteImage(image, str(tmp), useCompression=True)
        except RuntimeError as err:
            raise OutputError(f"Could not write {path}: {_last_line(err)}. "
                              "Check the free disk space and permissions.") from err


def array_to_image(array_zyx: np.ndarray, reference: sitk.Image,
                   dtype: np.dtype | type = np.float32) -> sitk.Image:
    """A SimpleITK image from a (z, y, x) array with the reference's geometry."""
    array = np.asarray(array_zyx, dtype=dtype)
    expected = tuple(reversed(reference.GetSize()))
    if array.shape != expected:
        raise ValueError(f"array shape {array.shape} does not match reference size {expected}")
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def _read_3d(path: str | os.PathLike) -> sitk.Image:
    """Read a file or DICOM folder and return it as a single-component 3D image."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"Image {p} does not exist. Check the path.")
    if p.is_dir():
        image = _read_dicom_series(p)
    else:
        if full_suffix(p) in (".nii", ".nii.gz"):
            _check_nifti_complete(p)
        try:
            image = sitk.ReadImage(str(p))
        except RuntimeError as err:
            raise _unreadable(p, err) from err
    if image.GetNumberOfComponentsPerPixel() != 1 and full_suffix(p) == ".seg.nrrd":
        raise InputError(f"{p} is a Slicer segmentation with overlapping segments (one layer "
                         "per component), not an image. Give it as annotations (adapt "
                         "--annotations) or ground truth (evaluate), or export it from Slicer "
                         "as a label map (Segmentations module → Export to files).")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"Image {p} has {image.GetNumberOfComponentsPerPixel()} components per "
                         "voxel (e.g. RGB or vector data); a scalar image is expected. "
                         "Convert it to a grayscale volume.")
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = sitk.Extract(image, list(image.GetSize()[:3]) + [0], [0, 0, 0, 0])
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    if image.GetDimension() != 3:
        raise InputError(f"Image {p} is {image.GetDimension()}D (size {image.GetSize()}); a 3D "
                         "volume is expected. Split time series or multi-channel files into "
                         "one 3D file per channel.")
    return image


def _read_dicom_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(f"Folder {folder} contains no DICOM series. Give an image file or a "
                         "folder holding exactly one DICOM series.")
    if len(series) > 1:
        raise InputError(f"Folder {folder} contains {len(series)} DICOM series "
                         f"({', '.join(series)}); put each series in its own folder.")
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), series[0]))
    try:
        return reader.Execute()
    except RuntimeError as err:
        raise _unreadable(folder, err) from err


def _check_nifti_complete(path: Path) -> None:
    """Raise InputError if a NIfTI file holds fewer bytes than its header promises.

    Hand-written because ITK's NIfTI reader silently accepts truncated files (it returns
    uninitialised memory); for .nii.gz this also verifies the gzip checksum. Files whose header
    is not NIfTI are left to SimpleITK to reject.
    """
    opener = gzip.open if full_suffix(path) == ".nii.gz" else open
    try:
        with opener(path, "rb") as f:
            header = f.read(540)
            expected_end = _nifti_data_end(header)
            if expected_end is None:
                return
            if opener is open:
                total = path.stat().st_size
            else:
                total = len(header)
                while chunk := f.read(1 << 22):
                    total += len(chunk)
    except (OSError, EOFError, zlib.error) as err:
        raise InputError(f"{path} is not a readable image: the compressed data is corrupt or "
                         f"truncated ({err}). Re-export or re-download the file.") from err
    if total < expected_end:
        raise InputError(f"{path} is not a readable image: it holds {total} bytes but its header "
                         f"needs {expected_end}; the file may be truncated. Re-export or "
                         "re-download it.")


def _nifti_data_end(header: bytes) -> int | None:
    """Offset of the end of the voxel data from a NIfTI-1/2 header, or None if not NIfTI."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
        elif len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            dims = struct.unpack(endian + "8q", header[16:80])
            bitpix = struct.unpack(endian + "h", header[14:16])[0]
            offset = struct.unpack(endian + "q", header[168:176])[0]
        else:
            continue
        if not 1 <= dims[0] <= 7:
            return None
        return max(offset, 348) + math.prod(max(d, 1) for d in dims[1:dims[0] + 1]) * bitpix // 8
    return None


def _label_values(label: sitk.Image, path: str | os.PathLike, highest: int) -> list[int]:
    """The distinct values of a label map; InputError unless they are integers in 0..highest."""
    values = np.unique(sitk.GetArrayViewFromImage(label))
    if not np.all(np.isfinite(values)) or not np.array_equal(values, np.round(values)):
        raise InputError(f"Label map {path} contains non-integer values; a label map must hold "
                         "integer class values. Check that you picked the segmentation, not the "
                         "image.")
    bad = values[(values < 0) | (values > highest)]
    if bad.size:
        raise InputError(f"Label map {path} contains value(s) {_fmt(bad[:10])} outside "
                         f"0..{highest}. Relabel the classes with small non-negative "
                         "integers.")
    return [int(v) for v in values]


def _unreadable(path: str | os.PathLike, err: RuntimeError) -> InputError:
    return InputError(f"{path} is not a readable image (unsupported format, corrupt, or "
                      f"truncated): {_last_line(err)}. Re-export or re-download the file.")


def _last_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def _fmt(values) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"
