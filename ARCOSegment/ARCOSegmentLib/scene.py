"""Volume nodes ↔ engine files, without `slicer`: export a volume (optionally cropped to an
ROI) for the engine and read the engine's outputs back onto the volume's grid.

Only node methods are used (GetImageData, GetIJKToRASMatrix, GetName, GetParentTransformNode,
GetRASBounds), no `slicer` module; the tests run it on Slicer's real nodes (slicer-core). The
geometry and array work lives in `conversions`. What needs Slicer's scene (segmentation nodes,
import, views) is in `mrml`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ARCOSegmentLib import conversions as cv
from ARCOSegmentLib.segments import ClassInfo, labels_to_indices


@dataclass
class ExportedVolume:
    """A volume written for the engine, possibly cropped to an ROI, and how to map back."""

    path: Path
    shape: tuple[int, int, int]  # full volume, (K, J, I)
    ijk_to_ras: np.ndarray  # full volume
    box: cv.Box | None = None  # the written part, None = everything

    @property
    def written_shape(self) -> tuple[int, int, int]:
        """Shape of the written (cropped) grid."""
        return self.shape if self.box is None else cv.box_shape(self.box)

    @property
    def written_ijk_to_ras(self) -> np.ndarray:
        """Geometry of the written (cropped) grid."""
        return self.ijk_to_ras if self.box is None else cv.crop_ijk_to_ras(self.ijk_to_ras, self.box)

    def to_written(self, full: np.ndarray) -> np.ndarray:
        """A full-grid array cut to the written grid."""
        return full if self.box is None else full[self.box]

    def to_full(self, written: np.ndarray, ijk_to_ras: np.ndarray,
                fill: int | float = 0) -> np.ndarray:
        """An engine output on the written grid, placed on the full grid (geometry checked)."""
        expected = self.written_ijk_to_ras
        if written.shape != self.written_shape or cv.voxel_offset(
                ijk_to_ras, expected, written.shape) > cv.GRID_TOLERANCE_VOXELS:
            raise ValueError("The engine output does not have the geometry of the input volume; "
                             "it cannot be placed on the volume.")
        return written if self.box is None else cv.paste(written, self.box, self.shape, fill)

    def slices_inside(self, axis: int, slices: Sequence[int]) -> list[int]:
        """The full-grid `slices` along `axis` that lie on the written (cropped) grid."""
        if self.box is None:
            return list(slices)
        return [s for s in slices if self.box[axis].start <= s < self.box[axis].stop]

    def index_in_full(self, axis: int, index: int) -> int:
        """A slice index on the written grid as an index on the full grid."""
        return index + (self.box[axis].start if self.box is not None else 0)


def volume_ijk_to_ras(volume_node) -> np.ndarray:
    """The node's IJK-to-RAS matrix as numpy."""
    import vtk
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return cv.vtk_matrix_to_numpy(matrix)


def volume_ijk_to_world(volume_node) -> np.ndarray:
    """IJK to world (RAS after the node's parent transforms), where ROIs and views live.

    ValueError for a non-linear (warping) parent transform: a box in world space is no box of
    voxels then."""
    import vtk
    ijk_to_ras = volume_ijk_to_ras(volume_node)
    transform_node = volume_node.GetParentTransformNode()
    if transform_node is None:
        return ijk_to_ras
    if not transform_node.IsTransformToWorldLinear():
        raise ValueError(f"Volume '{volume_node.GetName()}' is under the non-linear transform "
                         f"'{transform_node.GetName()}', so an ROI cannot select a box of its "
                         "voxels. Harden the transform on the volume (Data module, right-click "
                         "→ Harden transform) or segment without an ROI.")
    to_world = vtk.vtkMatrix4x4()
    transform_node.GetMatrixTransformToWorld(to_world)
    return cv.vtk_matrix_to_numpy(to_world) @ ijk_to_ras


def volume_shape(volume_node) -> tuple[int, int, int]:
    """The (K, J, I) shape of the node's voxels."""
    image_data = volume_node.GetImageData()
    if image_data is None:
        raise ValueError(f"Volume '{volume_node.GetName()}' has no voxels. Load a volume first.")
    return tuple(image_data.GetDimensions()[::-1])


def volume_array(volume_node) -> np.ndarray:
    """The node's voxels as a (K, J, I) array; ValueError for an empty or multi-component one."""
    image_data = volume_node.GetImageData()
    if image_data is None or image_data.GetPointData().GetScalars() is None:
        raise ValueError(f"Volume '{volume_node.GetName()}' has no voxels. Load a volume first.")
    if image_data.GetNumberOfScalarComponents() != 1:
        raise ValueError(f"Volume '{volume_node.GetName()}' has several components (colour or "
                         "vector image); choose a scalar (grey-level) volume.")
    return cv.array_from_image_data(image_data)


def export_volume(volume_node, path: str | Path,
                  ras_bounds: Sequence[float] | None = None) -> ExportedVolume:
    """Write the volume (cropped to world RAS bounds if given, e.g. an ROI's) with its own
    geometry (its parent transform's space, like the volume node's grid) for the engine."""
    array, ijk_to_ras = volume_array(volume_node), volume_ijk_to_ras(volume_node)
    exported = ExportedVolume(Path(path), array.shape, ijk_to_ras)
    if ras_bounds is not None:
        exported.box = cv.ijk_box_for_ras_bounds(volume_ijk_to_world(volume_node), array.shape,
                                                 ras_bounds)
    write_on_grid(array, exported, exported.path)
    return exported


def write_on_grid(full: np.ndarray, exported: ExportedVolume, path: str | Path) -> Path:
    """Write a full-grid array (e.g. annotations) on the exported volume's (cropped) grid."""
    return cv.write_volume(exported.to_written(full), exported.written_ijk_to_ras, path)


def roi_ras_bounds(roi_node) -> list[float] | None:
    """The world RAS bounding box of an ROI node, or None without one."""
    if roi_node is None:
        return None
    bounds = [0.0] * 6
    roi_node.GetRASBounds(bounds)
    return bounds


def result_indices(labels_path: str | Path, exported: ExportedVolume,
                   classes: Sequence[ClassInfo]) -> np.ndarray:
    """An engine label map on the full volume grid as segment indices 1..N in class order."""
    written, ijk_to_ras = cv.read_labelmap(labels_path)
    return labels_to_indices(exported.to_full(written, ijk_to_ras), classes)


def result_volume(path: str | Path, exported: ExportedVolume) -> np.ndarray:
    """An engine float map (e.g. the uncertainty) on the full volume grid."""
    written, ijk_to_ras = cv.read_volume(path)
    return exported.to_full(written.astype(np.float32), ijk_to_ras)
