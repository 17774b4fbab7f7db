"""Scene glue: volume and segmentation nodes ↔ engine files. Kept thin on purpose.

Functions use only documented node methods; the geometry and array work lives in `conversions`.
Volume export needs no `slicer` (a stand-in node built from real vtk objects exercises it);
the rest imports `slicer` inside the function.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ARCOSegmentLib import conversions as cv
from ARCOSegmentLib.segments import ClassInfo, labels_to_indices, plan_segments


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
        if written.shape != self.written_shape or \
                not np.allclose(ijk_to_ras, expected, atol=1e-3 * max(1.0, np.abs(expected).max())):
            raise ValueError("The engine output does not have the geometry of the input volume; "
                             "it cannot be placed on the volume.")
        return written if self.box is None else cv.paste(written, self.box, self.shape, fill)

    def index_in_full(self, axis: int, index: int) -> int:
        """A slice index on the written grid as an index on the full grid."""
        return index + (self.box[axis].start if self.box is not None else 0)


def volume_ijk_to_ras(volume_node) -> np.ndarray:
    """The node's IJK-to-RAS matrix as numpy."""
    import vtk
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return cv.vtk_matrix_to_numpy(matrix)


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
    """Write the volume (cropped to RAS bounds if given) with its geometry for the engine."""
    array, ijk_to_ras = volume_array(volume_node), volume_ijk_to_ras(volume_node)
    exported = ExportedVolume(Path(path), array.shape, ijk_to_ras)
    if ras_bounds is not None:
        exported.box = cv.ijk_box_for_ras_bounds(ijk_to_ras, array.shape, ras_bounds)
    write_on_grid(array, exported, exported.path)
    return exported


def write_on_grid(full: np.ndarray, exported: ExportedVolume, path: str | Path) -> Path:
    """Write a full-grid array (e.g. annotations) on the exported volume's (cropped) grid."""
    return cv.write_volume(exported.to_written(full), exported.written_ijk_to_ras, path)


def roi_ras_bounds(roi_node) -> list[float] | None:
    """The RAS bounding box of an ROI node, or None without one."""
    if roi_node is None:
        return None
    bounds = [0.0] * 6
    roi_node.GetRASBounds(bounds)
    return bounds


# -- everything below needs Slicer -------------------------------------------------------------


def segments_of(segmentation_node) -> dict[str, str]:
    """Segment ID → name, in segment order."""
    segmentation = segmentation_node.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    return {sid: segmentation.GetSegment(sid).GetName() for sid in ids}


def segment_colors(segmentation_node, segment_ids: Sequence[str]) -> list[tuple[float, float, float]]:
    """The display colours (0..1) of the given segments."""
    segmentation = segmentation_node.GetSegmentation()
    return [tuple(segmentation.GetSegment(sid).GetColor()) for sid in segment_ids]


def segment_masks(segmentation_node, indexed_ids: Sequence[tuple[str, int]],
                  reference_volume) -> list[tuple[int, np.ndarray]]:
    """(class index, boolean mask on the reference volume's grid) for each (segment ID, index)."""
    import slicer
    return [(index, slicer.util.arrayFromSegmentBinaryLabelmap(segmentation_node, sid,
                                                                 reference_volume) > 0)
            for sid, index in indexed_ids]


def new_segmentation(volume_node, name: str | None = None):
    """A segmentation node for results on `volume_node` (same grid and parent transform)."""
    import slicer
    node = slicer.mrmlScene.AddNewNodeByClass(
        "vtkMRMLSegmentationNode", name or f"{volume_node.GetName()} segmentation")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
    return node


def import_labels(labels_path: str | Path, exported: ExportedVolume, classes: Sequence[ClassInfo],
                  segmentation_node, volume_node):
    """Load a result label map into `segmentation_node`: one segment per class, stable IDs."""
    import slicer
    import vtk
    written, ijk_to_ras = cv.read_labelmap(labels_path)
    indices = labels_to_indices(exported.to_full(written, ijk_to_ras), classes)
    segmentation = segmentation_node.GetSegmentation()
    specs = plan_segments(classes, segments_of(segmentation_node))
    ids = vtk.vtkStringArray()
    for spec in specs:
        if not spec.exists:
            segmentation.AddEmptySegment(spec.segment_id, spec.name, list(spec.color))
        segment = segmentation.GetSegment(spec.segment_id)
        segment.SetName(spec.name)
        segment.SetColor(*spec.color)
        ids.InsertNextValue(spec.segment_id)
    labelmap = slicer.util.addVolumeFromArray(indices, ijkToRAS=exported.ijk_to_ras,
                                              name="ARCOSegment labels",
                                              nodeClassName="vtkMRMLLabelMapVolumeNode")
    try:
        labelmap.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        if not slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(
                labelmap, segmentation_node, ids):
            raise RuntimeError("Slicer could not import the segmentation result.")
    finally:
        slicer.mrmlScene.RemoveNode(labelmap)
    return segmentation_node


def import_scalar_volume(path: str | Path, exported: ExportedVolume, name: str, volume_node):
    """Load a float map (e.g. uncertainty) on the volume's grid, updating a node of that name."""
    import slicer
    written, ijk_to_ras = cv.read_volume(path)
    array = exported.to_full(written.astype(np.float32), ijk_to_ras)
    node = slicer.mrmlScene.GetFirstNodeByName(name)
    if node is None or not node.IsA("vtkMRMLScalarVolumeNode"):
        node = slicer.util.addVolumeFromArray(array, ijkToRAS=exported.ijk_to_ras, name=name)
    else:
        slicer.util.updateVolumeFromArray(node, array)
        node.SetIJKToRASMatrix(cv.numpy_to_vtk_matrix(exported.ijk_to_ras))
    node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
    return node


def jump_to_slice(volume_node, axis: int, index: int) -> None:
    """Centre the slice views on slice `index` along array axis `axis` (0 = K) of the volume."""
    import slicer
    import vtk
    point = cv.slice_center_ras(volume_ijk_to_ras(volume_node), volume_shape(volume_node), axis, index)
    transform_node = volume_node.GetParentTransformNode()
    if transform_node is not None:  # the grid is in the transform's space: go to world
        to_world = vtk.vtkGeneralTransform()
        transform_node.GetTransformToWorld(to_world)
        point = to_world.TransformPoint(point)
    slicer.modules.markups.logic().JumpSlicesToLocation(*point, True)


def save_segmentation(segmentation_node, segment_ids: Sequence[str], reference_volume,
                      path: str | Path) -> Path:
    """Save as a Slicer segmentation (.seg.nrrd) or as a label map on the volume's grid, where
    segment `segment_ids[n]` gets label value n + 1."""
    import slicer
    import vtk
    path = Path(path)
    if path.name.lower().endswith(".seg.nrrd"):
        saved = slicer.util.saveNode(segmentation_node, str(path))
    else:
        ids = vtk.vtkStringArray()
        for sid in segment_ids:
            ids.InsertNextValue(sid)
        labelmap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
        try:
            slicer.modules.segmentations.logic().ExportSegmentsToLabelmapNode(
                segmentation_node, ids, labelmap, reference_volume)
            saved = slicer.util.saveNode(labelmap, str(path))
        finally:
            slicer.mrmlScene.RemoveNode(labelmap)
    if not saved:
        raise RuntimeError(f"Could not write {path}. Check that the folder is writable.")
    return path
