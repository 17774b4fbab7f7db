"""Scene data ↔ engine files, with numpy, vtk and SimpleITK only (no Slicer).

Conventions: arrays are (K, J, I) as `slicer.util.arrayFromVolume` returns them, which is also
SimpleITK's (z, y, x) array order, so array axis 0 is K. Geometry is Slicer's 4×4 IJK-to-RAS
matrix (`volumeNode.GetIJKToRASMatrix`); files are ITK/NIfTI, whose physical space is LPS. The two
differ by flipping the first two world axes. Array axis `a` corresponds to IJK index `2 - a`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

RAS_LPS_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])
ORIENTATIONS = ("sagittal", "coronal", "axial")  # dominant RAS component R, A, S


# -- matrices --------------------------------------------------------------------------------


def vtk_matrix_to_numpy(matrix) -> np.ndarray:
    """A vtkMatrix4x4 as a 4×4 numpy array."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def numpy_to_vtk_matrix(array: np.ndarray):
    """A 4×4 numpy array as a vtkMatrix4x4."""
    import vtk
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def ras_to_lps(points: np.ndarray) -> np.ndarray:
    """Points (…, 3) from RAS to LPS; the same flip maps LPS back to RAS."""
    return np.asarray(points, dtype=float) * np.array([-1.0, -1.0, 1.0])


lps_to_ras = ras_to_lps


@dataclass(frozen=True)
class ItkGeometry:
    """ITK image geometry in LPS: origin, spacing (x, y, z) and row-major 3×3 direction."""

    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    direction: tuple[float, ...]


def ijk_to_ras_to_itk(ijk_to_ras: np.ndarray) -> ItkGeometry:
    """Split an IJK-to-RAS matrix into ITK's LPS origin, spacing and direction."""
    lps = RAS_LPS_FLIP @ np.asarray(ijk_to_ras, dtype=float)
    columns = lps[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    if np.any(spacing <= 0) or abs(np.linalg.det(columns)) < 1e-12:
        raise ValueError("The volume geometry is degenerate (IJK-to-RAS matrix "
                         f"{np.asarray(ijk_to_ras).tolist()}).")
    direction = columns / spacing
    return ItkGeometry(tuple(lps[:3, 3]), tuple(spacing), tuple(direction.ravel()))


def itk_to_ijk_to_ras(origin: Sequence[float], spacing: Sequence[float],
                      direction: Sequence[float]) -> np.ndarray:
    """The IJK-to-RAS matrix of an ITK (LPS) geometry."""
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(direction, dtype=float).reshape(3, 3) * np.asarray(spacing, dtype=float)
    lps[:3, 3] = origin
    return RAS_LPS_FLIP @ lps


def image_ijk_to_ras(image: sitk.Image) -> np.ndarray:
    """The IJK-to-RAS matrix of a 3D SimpleITK image."""
    return itk_to_ijk_to_ras(image.GetOrigin(), image.GetSpacing(), image.GetDirection())


# -- files -----------------------------------------------------------------------------------


def array_to_image(array: np.ndarray, ijk_to_ras: np.ndarray) -> sitk.Image:
    """A (K, J, I) array with its IJK-to-RAS geometry as a SimpleITK image."""
    if array.ndim != 3:
        raise ValueError(f"Expected a 3D (K, J, I) array, got shape {array.shape}.")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    geometry = ijk_to_ras_to_itk(ijk_to_ras)
    image.SetOrigin(geometry.origin)
    image.SetSpacing(geometry.spacing)
    image.SetDirection(geometry.direction)
    return image


def voxel_offset(ijk_to_ras: np.ndarray, other: np.ndarray, shape: Sequence[int]) -> float:
    """How far apart (in voxels of `other`) the same voxel lies on two grids of (K, J, I) `shape`.

    The engine's rule (arcoseg.io.geometry), restated here because the module never imports the
    engine: grids match when no voxel moves by more than GRID_TOLERANCE_VOXELS."""
    corners = np.array([[i, j, k, 1.0] for i in (0, shape[2] - 1) for j in (0, shape[1] - 1)
                        for k in (0, shape[0] - 1)])
    moved = (np.linalg.inv(np.asarray(other, float)) @ np.asarray(ijk_to_ras, float)
             @ corners.T).T
    return float(np.abs(moved[:, :3] - corners[:, :3]).max())


GRID_TOLERANCE_VOXELS = 0.01


def write_volume(array: np.ndarray, ijk_to_ras: np.ndarray, path: str | Path) -> Path:
    """Write a (K, J, I) array with its geometry (NIfTI, NRRD, … by the file name).

    ValueError if the file would not read back on the same grid: NIfTI cannot hold a sheared
    (e.g. gantry-tilted) grid, which ITK orthogonalises with a mere warning; use .nrrd."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(array_to_image(array, ijk_to_ras), str(path), useCompression=True)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    written = itk_to_ijk_to_ras(reader.GetOrigin(), reader.GetSpacing(), reader.GetDirection())
    if voxel_offset(ijk_to_ras, written, array.shape) > GRID_TOLERANCE_VOXELS:
        path.unlink()
        raise ValueError(f"{path.name} cannot hold this volume's grid (sheared or tilted "
                         "geometry); write it as .nrrd.")
    return path


def read_volume(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(array (K, J, I), IJK-to-RAS matrix) of a 3D image file."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise ValueError(f"Cannot read the engine output {path}: {err}") from err
    if image.GetDimension() != 3:
        raise ValueError(f"{path} is {image.GetDimension()}D; a 3D image was expected.")
    return sitk.GetArrayFromImage(image), image_ijk_to_ras(image)


def read_labelmap(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 label array (K, J, I), IJK-to-RAS matrix) of a label map file."""
    array, ijk_to_ras = read_volume(path)
    if array.size and (array.min() < 0 or array.max() > 255 or not np.all(np.mod(array, 1) == 0)):
        raise ValueError(f"{path} does not hold integer labels 0..255.")
    return array.astype(np.uint8), ijk_to_ras


# -- vtkImageData ----------------------------------------------------------------------------


def array_from_image_data(image_data) -> np.ndarray:
    """The voxels of a vtkImageData as a (K, J, I) array (a copy)."""
    from vtk.util.numpy_support import vtk_to_numpy
    scalars = vtk_to_numpy(image_data.GetPointData().GetScalars())
    i, j, k = image_data.GetDimensions()
    components = image_data.GetNumberOfScalarComponents()
    return scalars.reshape((k, j, i, components) if components > 1 else (k, j, i)).copy()


def image_data_from_array(array: np.ndarray):
    """A (K, J, I) array as a vtkImageData with unit spacing and zero origin (Slicer's layout)."""
    from vtk.util.numpy_support import numpy_to_vtk
    import vtk
    image_data = vtk.vtkImageData()
    image_data.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    scalars = numpy_to_vtk(np.ascontiguousarray(array).ravel(), deep=True)
    image_data.GetPointData().SetScalars(scalars)
    return image_data


# -- regions and slices ----------------------------------------------------------------------

Box = tuple[slice, slice, slice]


def ijk_box_for_ras_bounds(ijk_to_ras: np.ndarray, shape: Sequence[int],
                           ras_bounds: Sequence[float]) -> Box:
    """(K, J, I) slices of the voxels whose centres lie in RAS bounds (xmin, xmax, ymin, …)."""
    lo, hi = np.asarray(ras_bounds[0::2], float), np.asarray(ras_bounds[1::2], float)
    corners = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])])
    ijk = (np.linalg.inv(ijk_to_ras) @ corners.T)[:3]
    start = np.maximum(np.ceil(ijk.min(axis=1) - 1e-6), 0).astype(int)
    stop = np.minimum(np.floor(ijk.max(axis=1) + 1e-6), np.asarray(shape[::-1]) - 1).astype(int) + 1
    if np.any(stop <= start):
        raise ValueError("The ROI does not overlap the volume. Move the ROI onto the volume.")
    return tuple(slice(int(a), int(b)) for a, b in zip(start[::-1], stop[::-1]))


def box_shape(box: Box) -> tuple[int, int, int]:
    """The (K, J, I) shape of a box."""
    return tuple(s.stop - s.start for s in box)


def crop_ijk_to_ras(ijk_to_ras: np.ndarray, box: Box) -> np.ndarray:
    """The IJK-to-RAS matrix of the grid cut out by `box` (same physical positions)."""
    shift = np.eye(4)
    shift[:3, 3] = [box[2].start, box[1].start, box[0].start]
    return np.asarray(ijk_to_ras, float) @ shift


def crop(array: np.ndarray, ijk_to_ras: np.ndarray, box: Box) -> tuple[np.ndarray, np.ndarray]:
    """The sub-array in `box` and its own IJK-to-RAS matrix."""
    return array[box], crop_ijk_to_ras(ijk_to_ras, box)


def paste(sub: np.ndarray, box: Box, shape: Sequence[int], fill: int = 0) -> np.ndarray:
    """A full-size array of `shape` holding `sub` in `box` and `fill` elsewhere."""
    full = np.full(tuple(shape), fill, dtype=sub.dtype)
    full[box] = sub
    return full


def slice_center_ras(ijk_to_ras: np.ndarray, shape: Sequence[int], axis: int,
                     index: int) -> np.ndarray:
    """RAS position of the centre of slice `index` along array axis `axis` (0 = K)."""
    centre_kji = (np.asarray(shape, float) - 1) / 2
    centre_kji[axis] = index
    return (np.asarray(ijk_to_ras, float) @ np.append(centre_kji[::-1], 1.0))[:3]


def axis_orientation(ijk_to_ras: np.ndarray, axis: int) -> str:
    """'axial', 'coronal' or 'sagittal': the anatomical direction closest to array axis `axis`."""
    column = np.asarray(ijk_to_ras, float)[:3, 2 - axis]
    return ORIENTATIONS[int(np.argmax(np.abs(column)))]
