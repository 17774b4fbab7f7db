"""What ITK's NIfTI reader gets wrong, checked on the file itself before it is read: a truncated
file reads as uninitialised memory, and NaN or infinite voxels read as 0 (both with no error).
`check_nifti_file` refuses both; for .nii.gz it also verifies the gzip checksum."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from arcoseg.errors import InputError
from arcoseg.fileutil import full_suffix

# NIfTI datatype codes of the floating-point voxels whose NaN/Inf ITK reads as 0
_FLOAT_TYPES = {16: "f4", 64: "f8"}
# (path, device, inode, size, mtime in ns) of the NIfTI files found good: `segment` checks an
# input's header before any work and reads it later, and a .nii.gz is decompressed to be checked
# (0.16 s for 128 x 256 x 256 voxels); a file changed since (size or time) is checked again.
# Bounded for a long-lived `serve` worker: past COMPLETE_MEMO files the oldest is forgotten.
_COMPLETE: dict[tuple[str, int, int, int, int], None] = {}
COMPLETE_MEMO = 1024
_CHUNK = 1 << 22


class NiftiLayout(NamedTuple):
    """Where a NIfTI file's voxels are: byte offsets of their start and end; `float_dtype` the
    numpy dtype (with byte order) of floating-point voxels, else None."""

    start: int
    end: int
    float_dtype: str | None


def check_nifti_file(path: Path) -> None:
    """Raise InputError if a NIfTI file holds fewer bytes than its header promises, or NaN or
    infinite floating-point voxels; for .nii.gz also on a corrupt gzip stream. Files whose
    header is not NIfTI are left to SimpleITK. A file found good is not read again while its
    size and modification time stay the same."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key in _COMPLETE:
        return
    opener = gzip.open if full_suffix(path) == ".nii.gz" else open
    try:
        with opener(path, "rb") as f:
            header = f.read(540)
            layout = nifti_layout(header)
            if layout is None:
                return
            if opener is open and layout.float_dtype is None:
                total, finite = stat.st_size, True  # nothing to read: the size says it
            else:
                total, finite = _read_voxels(f, header, layout)
    except (OSError, EOFError, zlib.error) as err:
        raise InputError(f"{path} is not a readable image: the compressed data is corrupt or "
                         f"truncated ({err}). Re-export or re-download the file.") from err
    if total < layout.end:
        raise InputError(f"{path} is not a readable image: it holds {total} bytes but its header "
                         f"needs {layout.end}; the file may be truncated. Re-export or "
                         "re-download it.")
    if not finite:
        raise InputError(f"Image {path} contains NaN or infinite intensities (ITK's NIfTI reader "
                         "would read them as 0). Fix or re-export the image.")
    _COMPLETE[key] = None
    if len(_COMPLETE) > COMPLETE_MEMO:
        del _COMPLETE[next(iter(_COMPLETE))]


def _read_voxels(f: BinaryIO, header: bytes, layout: NiftiLayout) -> tuple[int, bool]:
    """(bytes in the file, whether its float voxels are all finite), reading from after
    `header` to the end; non-float voxels are not looked at (only counted)."""
    total, finite = len(header), True
    kept = header[layout.start:] if layout.float_dtype else b""
    if layout.float_dtype and len(header) < layout.start:
        f.read(layout.start - len(header))  # the extensions between header and voxels
        total = layout.start
    while chunk := f.read(_CHUNK):
        total += len(chunk)
        if layout.float_dtype and finite:
            kept += chunk
            size = np.dtype(layout.float_dtype).itemsize
            usable = min(len(kept), max(0, layout.end - (total - len(kept)))) // size * size
            finite = bool(np.isfinite(np.frombuffer(kept[:usable], layout.float_dtype)).all())
            kept = kept[usable:]
    return total, finite


def nifti_layout(header: bytes) -> NiftiLayout | None:
    """Where the voxels of a NIfTI-1/2 file with `header` (its first 540 bytes) are, or None if
    it is not NIfTI."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            datatype, bitpix = struct.unpack(endian + "2h", header[70:74])
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
        elif len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            datatype, bitpix = struct.unpack(endian + "2h", header[12:16])
            dims = struct.unpack(endian + "8q", header[16:80])
            offset = struct.unpack(endian + "q", header[168:176])[0]
        else:
            continue
        if not 1 <= dims[0] <= 7:
            return None
        start = max(offset, 348)
        end = start + math.prod(max(d, 1) for d in dims[1:dims[0] + 1]) * bitpix // 8
        dtype = _FLOAT_TYPES.get(datatype)
        return NiftiLayout(start, end, endian + dtype if dtype else None)
    return None
