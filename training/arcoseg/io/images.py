"""Reading and writing images and label maps with validation (the SimpleITK boundary).

Everything outside this module sees numpy arrays in (z, y, x) order; SimpleITK's (x, y, z) order
(spacing, origin, size) is converted here only.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable, Collection, Iterator, Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from arcoseg.constants import IGNORE_LABEL
from arcoseg.errors import InputError, OutputError
from arcoseg.fileutil import atomic_paths, full_suffix
from arcoseg.io.dicom import dicom_series_files, read_dicom_series
from arcoseg.io.geometry import Grid, GridLike, check_same_geometry, check_written
from arcoseg.io.image_files import check_readable, last_line, unreadable, write_nifti_gz
from arcoseg.io.nifti import check_nifti_file

MAX_LABEL_VALUE = 254  # 255 is IGNORE_LABEL (unannotated) inside the engine


def check_image(path: str | os.PathLike) -> None:
    """`read_image`'s checks from the header alone (no voxels read), to refuse a bad image
    before any work: InputError for a missing, unreadable or unsupported file, a truncated
    NIfTI file or one with NaN/Inf voxels (`io.nifti` reads its voxels), a 4D or
    multi-component image, and a folder without exactly one evenly spaced DICOM series.
    NaN intensities in other formats and truncated NRRD/MHA data show only when the voxels are
    read."""
    p = _checked_path(path)
    if p.is_dir():
        dicom_series_files(p)
        return
    reader = _header(p)
    _check_layout(p, reader.GetNumberOfComponents(), reader.GetSize())


def _header(path: str | os.PathLike) -> sitk.ImageFileReader:
    """A reader holding `path`'s header (no voxels read); InputError when it cannot be read."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise unreadable(path, err) from err
    return reader


def image_spacing_zyx(image: GridLike) -> tuple[float, float, float]:
    """Voxel spacing of a 3D image (or Grid) in (z, y, x) order."""
    return tuple(float(s) for s in reversed(Grid.of(image).spacing))  # type: ignore[return-value]


def read_spacing_zyx(path: str | os.PathLike) -> tuple[float, float, float]:
    """Voxel spacing (z, y, x) from the file header only (no pixel data is read)."""
    spacing = list(_header(path).GetSpacing())[:3]
    spacing += [1.0] * (3 - len(spacing))
    return tuple(float(s) for s in reversed(spacing))  # type: ignore[return-value]


def read_image(path: str | os.PathLike) -> sitk.Image:
    """Read a 3D image (any SimpleITK file or a DICOM series folder) as float32.

    2D images become one-slice 3D images. Raises InputError for a missing, unreadable or truncated
    file, a 4D or multi-component image, and NaN/Inf intensities (in NIfTI files found on the
    file itself, `io.nifti`: ITK's reader turns them into 0).
    """
    image = _read_3d(path)
    if image.GetPixelID() == sitk.sitkFloat64:  # what the cast below would make infinite
        values = sitk.GetArrayViewFromImage(image)
        if np.isfinite(values).all() and np.abs(values).max() > np.finfo(np.float32).max:
            raise InputError(f"Image {path} holds values beyond the float32 range (up to "
                             f"{np.abs(values).max():.3g}). Rescale or re-export the image.")
    if image.GetPixelID() != sitk.sitkFloat32:
        image = sitk.Cast(image, sitk.sitkFloat32)
    if not np.isfinite(sitk.GetArrayViewFromImage(image)).all():
        raise InputError(f"Image {path} contains NaN or infinite intensities. "
                         "Fix or re-export the image.")
    return image


def read_label(path: str | os.PathLike, reference: sitk.Image | None = None,
               allowed_values: Collection[int] | None = None,
               reference_name: str = "the reference image",
               partial: bool = False, labels_source: str = "the dataset's labels",
               remedy: str = "Fix the label map or add the labels to dataset.json.") -> sitk.Image:
    """Read a label map as uint8 and validate its values (and its grid against `reference`).

    Raises InputError for non-integer values, values outside 0..254 (0..255 when `partial`:
    255 marks unannotated voxels) or not in `allowed_values` (the message names
    `labels_source` and ends with `remedy`), and (with `reference`) a grid that differs from the
    reference's (`geometry.grid_difference`).
    """
    label = _read_3d(path)
    values = _label_values(label, path, IGNORE_LABEL if partial else MAX_LABEL_VALUE)
    if allowed_values is not None:
        unknown = sorted(set(values) - {int(v) for v in allowed_values})
        if unknown:
            raise InputError(f"Label map {path} contains value(s) {unknown} that are not in "
                             f"{labels_source} {sorted(int(v) for v in allowed_values)}. "
                             f"{remedy}")
    if reference is not None:
        check_same_geometry(reference, label, reference_name, str(path))
    return sitk.Cast(label, sitk.sitkUInt8) if label.GetPixelID() != sitk.sitkUInt8 else label


ImageWriter = Callable[[sitk.Image, Path], None]


def _write_with_simpleitk(image: sitk.Image, path: Path) -> None:
    sitk.WriteImage(image, str(path), useCompression=True)


# Output formats by suffix; writer(image, path) writes to `path` (an atomic write's temporary
# file, which keeps the suffix). Add formats with `register_image_writer`.
_IMAGE_WRITERS: dict[str, ImageWriter] = {
    ".nii.gz": write_nifti_gz,
    **{suffix: _write_with_simpleitk for suffix in (".nii", ".nrrd", ".mha")}}


def register_image_writer(suffix: str, writer: ImageWriter) -> None:
    """Make `write_image` (and every command's -o / --ext) accept `suffix` (e.g. '.seg.nrrd')."""
    _IMAGE_WRITERS[suffix.lower()] = writer


def image_output_suffixes() -> tuple[str, ...]:
    """The suffixes `write_image` can write, e.g. ('.nii.gz', '.nii', '.nrrd', '.mha')."""
    return tuple(_IMAGE_WRITERS)


def output_suffix_like(input_suffix: str) -> str:
    """The suffix of an output written for an input with `input_suffix`: the input's own format
    where `write_image` writes it (a sheared NRRD stays NRRD), else .nii.gz (.png, .jpg, .nhdr,
    .mhd and DICOM are read, not written)."""
    return input_suffix if input_suffix in _IMAGE_WRITERS else ".nii.gz"


def write_image(image: sitk.Image, path: str | os.PathLike) -> None:
    """Write an image atomically with compression; the format follows the extension.

    The written header is read back before the file takes its name: OutputError (and no file)
    if the format did not keep the image's grid (e.g. a sheared direction in NIfTI). Check with
    `geometry.check_format_holds` before long work to refuse earlier.
    """
    with pending_images([(image, path)]):
        pass


@contextlib.contextmanager
def pending_images(images: Sequence[tuple[sitk.Image, str | os.PathLike]],
                   writers: Mapping[str, ImageWriter] | None = None) -> Iterator[None]:
    """Write each (image, path) as `write_image` does (or with `writers[suffix]`, e.g. a
    .seg.nrrd writer that knows the class names), but let the files take their names only
    when the block ends without an exception (e.g. once the model they come from is committed);
    otherwise delete them, leaving every path as it was. OutputError as `write_image`."""
    known = {**_IMAGE_WRITERS, **(writers or {})}
    for _, path in images:
        if full_suffix(path) not in known:
            raise OutputError(f"Cannot write {path}: unsupported extension "
                              f"'{full_suffix(path) or '(none)'}'. Use one of "
                              f"{', '.join(known)}.")
    with atomic_paths([path for _, path in images]) as temps:
        for (image, path), tmp in zip(images, temps):
            _write_one(known[full_suffix(path)], image, Path(path), tmp)
        yield


def _write_one(writer: ImageWriter, image: sitk.Image, path: Path, tmp: Path) -> None:
    """Write `image` to temporary file `tmp` for `path` and check its header; OutputError
    naming `path` on failure."""
    try:
        writer(image, tmp)
    except (RuntimeError, OSError) as err:
        reason = err.strerror or err if isinstance(err, OSError) else last_line(err)
        raise OutputError(f"Could not write {path}: {reason}. "
                          "Check the free disk space and permissions.") from err
    except OutputError as err:  # a writer's own error names the temporary file
        raise OutputError(str(err).replace(str(tmp), str(path))) from err
    check_written(image, tmp, str(path))


def array_to_image(array_zyx: np.ndarray, reference: GridLike,
                   dtype: np.dtype | type = np.float32) -> sitk.Image:
    """A SimpleITK image from a (z, y, x) array with the reference's (image or Grid) geometry."""
    array = np.asarray(array_zyx, dtype=dtype)
    grid = Grid.of(reference)
    expected = tuple(reversed(grid.size))
    if array.shape != expected:
        raise ValueError(f"array shape {array.shape} does not match reference size {expected}")
    image = sitk.GetImageFromArray(array)
    del array  # a converted copy (e.g. float16 to float32) is not needed any more
    image.SetSpacing(grid.spacing)
    image.SetOrigin(grid.origin)
    image.SetDirection(grid.direction)
    return image


def _read_3d(path: str | os.PathLike) -> sitk.Image:
    """Read a file or DICOM folder and return it as a single-component 3D image."""
    p = _checked_path(path)
    if p.is_dir():
        image = read_dicom_series(p)
    else:
        try:
            image = sitk.ReadImage(str(p))
        except RuntimeError as err:
            raise unreadable(p, err) from err
    _check_layout(p, image.GetNumberOfComponentsPerPixel(), image.GetSize())
    if image.GetDimension() == 4:
        image = sitk.Extract(image, list(image.GetSize()[:3]) + [0], [0, 0, 0, 0])
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    return image


def _checked_path(path: str | os.PathLike) -> Path:
    """`path` if it exists and, for a file, can be opened (and a NIfTI file is complete, its
    float voxels finite: `io.nifti`)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"Image {p} does not exist. Check the path.")
    if not p.is_dir():
        check_readable(p)
        if full_suffix(p) in (".nii", ".nii.gz"):
            check_nifti_file(p)
    return p


def _check_layout(p: Path, components: int, size: Sequence[int]) -> None:
    """InputError unless an image of `size` with `components` per voxel is a scalar 2D or 3D
    image (a 4D one with one volume counts as 3D)."""
    if components != 1 and full_suffix(p) == ".seg.nrrd":
        raise InputError(f"{p} is a Slicer segmentation with overlapping segments (one layer "
                         "per component), not an image. Give it as annotations (adapt "
                         "--annotations) or ground truth (evaluate), or export it from Slicer "
                         "as a label map (Segmentations module → Export to files).")
    if components != 1:
        raise InputError(f"Image {p} has {components} components per voxel (e.g. RGB or vector "
                         "data); a scalar image is expected. Convert it to a grayscale volume.")
    if len(size) not in (2, 3) and not (len(size) == 4 and size[3] == 1):
        raise InputError(f"Image {p} is {len(size)}D (size {tuple(size)}); a 3D volume is "
                         "expected. Split time series or multi-channel files into one 3D file "
                         "per channel.")


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


def _fmt(values) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"
