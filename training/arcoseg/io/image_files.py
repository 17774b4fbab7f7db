"""Checks and readers behind `io.images.read_image` for what SimpleITK reports badly: files
that cannot be opened, truncated NIfTI, folders without images (DICOM series: `io.dicom`); the .nii.gz writer behind
`io.images.write_image` (ITK's is slow); and results written as 2D for 2D input files."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import SimpleITK as sitk

from arcoseg.errors import InputError
from arcoseg.io.segnrrd import is_seg_nrrd

READABLE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def check_readable(path: Path) -> None:
    """InputError naming the real cause when `path` cannot be opened (permissions, ...): the
    readers would report it as a corrupt or unsupported file."""
    try:
        with open(path, "rb") as f:
            f.read(1)
    except PermissionError as err:
        raise InputError(f"Cannot read {path}: permission denied. Ask its owner to make it "
                         "readable for you (e.g. chmod a+r), or copy it to a folder you can "
                         "read.") from err
    except OSError as err:
        raise InputError(f"Cannot read {path}: {err.strerror or err}. Check the path and the "
                         "disk.") from err


def folder_entries(folder: Path) -> list[Path]:
    """The entries of an input folder (image files, or one DICOM series), sorted; InputError if
    it cannot be opened or is empty."""
    try:
        entries = sorted(folder.iterdir())
    except PermissionError as err:
        raise InputError(f"Cannot open folder {folder}: permission denied. Ask its owner to "
                         "make it readable for you, or copy it to a folder you can read.") from err
    if not entries:
        raise InputError(f"Folder {folder} is empty. Give {_accepted(suffixes=True)}.")
    return entries


def no_images(folder: Path, entries: list[Path]) -> InputError:
    """The InputError for a folder holding `entries` but nothing to read: no image file and no
    DICOM series."""
    folders = [e.name for e in entries if e.is_dir()]
    names = ", ".join(e.name for e in entries[:5]) + (", …" if len(entries) > 5 else "")
    return InputError(
        f"Folder {folder} holds no image file ({', '.join(READABLE_SUFFIXES)})"
        + f" and no DICOM series (it holds {len(entries)} entries: {names}). Give {_accepted()}"
        + (f"; subfolders are not searched, so give one of them (e.g. {folder / folders[0]})"
           if folders else "") + ".")


def _accepted(suffixes: bool = False) -> str:
    """What an input folder may be, in words (`suffixes`: with the image files' suffixes)."""
    files = "an image file" + (f" ({', '.join(READABLE_SUFFIXES)})" if suffixes else "")
    return f"{files}, a folder of image files, or a folder holding one DICOM series"


def unreadable(path: str | os.PathLike, err: RuntimeError) -> InputError:
    """The InputError for a file or folder SimpleITK failed to read with `err`."""
    return InputError(f"{path} is not a readable image (unsupported format, corrupt, or "
                      f"truncated): {last_line(err)}. Re-export or re-download the file.")


def last_line(err: Exception) -> str:
    """The last non-empty line of an error message (ITK's are long), or the error's type."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


NIFTI_GZIP_LEVEL = 1  # zlib's fastest level


def write_nifti_gz(image: sitk.Image, path: Path) -> None:
    """ITK's NIfTI writer, then gzip at NIFTI_GZIP_LEVEL. ITK compresses .nii.gz at a fixed
    level (it ignores SimpleITK's compressionLevel): a 128 x 256 x 256 label map took 0.30 s,
    written plain and gzipped here 0.08 s (the file a quarter larger); a float image about the
    same time either way (benchmarks/RESULTS.md, "Freed memory kept for reuse"). The plain
    file is a temporary sibling of `path` (an atomic write's temporary name: a killed run's
    is deleted by the next), removed on every exit path."""
    plain = path.with_name(path.name[:-len(".gz")])
    try:
        sitk.WriteImage(image, str(plain), useCompression=False)
        with open(plain, "rb") as source, open(path, "wb") as target, gzip.GzipFile(
                filename="", mode="wb", fileobj=target, compresslevel=NIFTI_GZIP_LEVEL,
                mtime=0) as packed:  # no name or time inside: the same image, the same bytes
            shutil.copyfileobj(source, packed, 1 << 20)
    finally:
        plain.unlink(missing_ok=True)


def input_dimension(path: str | os.PathLike) -> int:
    """2 for a 2D image file, else 3 (3D and 4D files, DICOM series folders), from the header."""
    p = Path(path)
    if not p.is_file():
        return 3
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    reader.ReadImageInformation()  # read_image has read the file: its header is readable
    return 2 if reader.GetDimension() == 2 else 3


def like_input(image: sitk.Image, path: Path, dimension: int) -> sitk.Image:
    """A result on the grid of an input read by `read_image`, for output file `path`: a 2D
    image (the 2D input's origin, spacing and direction) when the input was 2D (`dimension`),
    except for a Slicer .seg.nrrd, which is 3D; else `image` itself."""
    if dimension == 2 and image.GetDimension() == 3 and image.GetSize()[2] == 1 and \
            not is_seg_nrrd(path):
        return image[:, :, 0]
    return image
