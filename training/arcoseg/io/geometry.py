"""Voxel grids: when two grids are "the same", and whether a file format can hold a grid.

One rule for every comparison in the engine: two grids match when they have the same size and
no voxel centre of one lies more than `GRID_TOLERANCE_VOXELS` voxels from the same-index voxel
centre of the other. A tolerance in voxels (not millimetres of position) treats 0.2 mm voxels
at z = -1500 mm and 2 mm voxels at the origin alike, and covers spacing, origin and direction
cosines together: a tiny rotation is allowed on a small grid but not across 512 voxels.

NIfTI stores a rotation (qform) or an affine ITK turns into a rotation, so a sheared direction
(e.g. CT gantry tilt) read from NRRD or MHA is silently orthogonalised when written as NIfTI;
ITK only prints a warning. `check_format_holds` refuses that before any work, and
`check_written` compares what a writer actually stored with what it was given.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, replace
from typing import Union

import numpy as np
import SimpleITK as sitk

from arcoseg.errors import InputError, OutputError
from arcoseg.fileutil import full_suffix

GRID_TOLERANCE_VOXELS = 0.01  # float32 NIfTI headers stay far below; real shifts far above
ORTHONORMAL_ONLY_SUFFIXES = (".nii", ".nii.gz")  # formats that store a rotation, not a shear
HOLDS_ANY_DIRECTION = (".nrrd", ".mha")  # suggested instead (both keep a sheared direction)


@dataclass(frozen=True)
class Grid:
    """A voxel grid without voxels: size, spacing, origin, direction (SimpleITK's x, y, z)."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]  # row-major matrix; its columns are the axis directions

    @classmethod
    def of(cls, image: sitk.Image | Grid) -> Grid:
        """The grid of an image (a Grid is returned as is)."""
        if isinstance(image, Grid):
            return image
        return cls(tuple(image.GetSize()), tuple(image.GetSpacing()), tuple(image.GetOrigin()),
                   tuple(image.GetDirection()))

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """(index-to-physical matrix, origin)."""
        dim = len(self.size)
        direction = np.asarray(self.direction, dtype=float).reshape(dim, dim)
        return direction * np.asarray(self.spacing, dtype=float), np.asarray(self.origin)


GridLike = Union[sitk.Image, Grid]


def voxel_offset(image: GridLike, other: GridLike) -> float:
    """The largest distance, in voxels of `other`, between a voxel centre of `image` and the
    voxel of `other` with the same index (checked at the corners: the map is affine).

    Both grids must have the same dimension; their sizes may differ (the corners of `image`
    are used)."""
    grid, other_grid = Grid.of(image), Grid.of(other)
    matrix, origin = grid.affine()
    other_matrix, other_origin = other_grid.affine()
    corners = np.array(list(itertools.product(*[(0, max(n - 1, 0)) for n in grid.size])),
                       dtype=float)
    physical = origin + corners @ matrix.T
    in_other = np.linalg.solve(other_matrix, (physical - other_origin).T).T
    return float(np.abs(in_other - corners).max())


def grid_difference(image: GridLike, other: GridLike,
                    tolerance: float = GRID_TOLERANCE_VOXELS) -> str | None:
    """None if the grids match (same size, voxels within `tolerance` voxels), else a description
    of what differs with both values in (x, y, z) order and the largest offset in voxels."""
    a, b = Grid.of(image), Grid.of(other)
    if a.size != b.size:
        return f"size differs ({_fmt(b.size)} vs {_fmt(a.size)}, in (x, y, z) order)"
    offset = voxel_offset(a, b)
    if offset <= tolerance:
        return None
    diffs = [f"{prop} differs ({_fmt(getattr(b, prop))} vs {_fmt(getattr(a, prop))}, "
             "in (x, y, z) order)" for prop in ("spacing", "origin", "direction")
             if not np.allclose(getattr(a, prop), getattr(b, prop), rtol=0, atol=1e-9)]
    return f"{', '.join(diffs)}: voxels lie up to {offset:.3g} voxel(s) apart"


def orthonormalized(image: GridLike) -> Grid:
    """The grid with its direction replaced by the nearest rotation (polar decomposition):
    roughly what a NIfTI writer stores instead of a sheared direction."""
    grid = Grid.of(image)
    dim = len(grid.size)
    u, _, vt = np.linalg.svd(np.asarray(grid.direction, dtype=float).reshape(dim, dim))
    return replace(grid, direction=tuple((u @ vt).ravel().tolist()))


def check_format_holds(image: GridLike, output: str | os.PathLike, source: str,
                       ext_option: bool = True, components: int = 1) -> None:
    """Raise OutputError (before any work) if writing a result on `image`'s grid to `output`
    would move it: a sheared direction cannot be stored in NIfTI, nor can a map of several
    `components` per voxel on a single-slice grid (ITK reads it back without its slice axis).
    `ext_option`: the command has --ext for folder outputs (the message suggests it)."""
    if full_suffix(output) not in ORTHONORMAL_ONLY_SUFFIXES:
        return
    grid = Grid.of(image)
    if components > 1 and (len(grid.size) == 2 or grid.size[2] == 1):
        raise OutputError(
            f"{source} is a single slice: NIfTI cannot hold {output}, a map of {components} "
            "values per voxel on it (ITK reads it back without the slice axis). The maps take "
            f"the label map's format: name -o {' or '.join(HOLDS_ANY_DIRECTION)}"
            f"{' (or --ext .nrrd for a folder)' if ext_option else ''}.")
    offset = voxel_offset(grid, orthonormalized(grid))
    if offset > GRID_TOLERANCE_VOXELS:
        millimetres = offset * max(grid.spacing)
        folders = ", or --ext .nrrd for a folder" if ext_option else ""
        raise OutputError(
            f"{source} has a sheared (non-orthogonal) direction, e.g. a tilted CT gantry: "
            f"{_fmt(grid.direction)}. NIfTI cannot store it, so {output} would place the "
            f"labels up to {offset:.2g} voxels (about {millimetres:.2g} mm) away from the image. "
            f"Write {' or '.join(HOLDS_ANY_DIRECTION)} instead (e.g. -o "
            f"{_with_suffix(output, '.nrrd')}{folders}), or resample the image to an orthogonal "
            "grid first.")


def check_same_geometry(image: GridLike, other: GridLike, image_name: str,
                        other_name: str) -> None:
    """Raise InputError unless both images (or grids) are on the same voxel grid
    (`grid_difference`)."""
    difference = grid_difference(image, other)
    if difference is not None:
        raise InputError(f"{other_name} does not match {image_name}: {difference}. Both must be "
                         "on the same voxel grid; resample one onto the other (e.g. in 3D "
                         "Slicer) and try again.")


def read_grid(path: str | os.PathLike) -> Grid | None:
    """The grid of an image file from its header alone, or None where the header cannot be read
    that way (DICOM folders, unreadable files: their readers report those)."""
    if os.path.isdir(path):
        return None
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    return Grid(tuple(int(s) for s in reader.GetSize()), tuple(reader.GetSpacing()),
                tuple(reader.GetOrigin()), tuple(reader.GetDirection()))


def check_written(intended: GridLike, written: str | os.PathLike, shown: str) -> None:
    """Raise OutputError if the file `written` does not hold `intended`'s grid (header only)."""
    grid = read_grid(written)
    difference = "its header cannot be read back" if grid is None else grid_difference(
        intended, grid)
    if difference is not None:
        raise OutputError(f"Could not write {shown} faithfully: written, it would read back "
                          f"with another geometry ({difference}). Nothing was written; use "
                          f"{' or '.join(HOLDS_ANY_DIRECTION)}.")


def _with_suffix(path: str | os.PathLike, suffix: str) -> str:
    text = str(path)
    return text[: len(text) - len(full_suffix(path))] + suffix


def _fmt(values) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"
