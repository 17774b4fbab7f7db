"""The only helpers that touch Slicer's scene: segmentation nodes, result import, slice views,
loading and saving. Each function imports `slicer` inside, so this module loads anywhere.

The Logic, the panel, the batch loop and the self-test call these through `logic.mrml` (this
module). The tests run them on Slicer's real scene, nodes and logics from the slicer-core wheel
(Testing/slicer/real_slicer.py). Keep them thin: the array and geometry work lives in `scene` and
`conversions`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ARCOSegmentLib import conversions as cv
from ARCOSegmentLib import scene
from ARCOSegmentLib.segments import ClassInfo, indices_to_values, plan_segments


def segments_of(segmentation_node) -> dict[str, str]:
    """Segment ID → name, in segment order."""
    segmentation = segmentation_node.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    return {sid: segmentation.GetSegment(sid).GetName() for sid in ids}


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


def check_output_segmentation(segmentation_node, volume_node) -> None:
    """ValueError unless results can go into `segmentation_node`: it must sit under the volume's
    parent transform (Slicer's label map import puts them off by the difference otherwise) and
    be edited as a binary labelmap (a closed-surface source takes no label map import)."""
    name, volume = segmentation_node.GetName(), volume_node.GetName()
    if segmentation_node.GetTransformNodeID() != volume_node.GetTransformNodeID():
        raise ValueError(f"The output segmentation '{name}' is under "
                         f"{_transform(segmentation_node)} and the volume '{volume}' under "
                         f"{_transform(volume_node)}, so the results would land in the wrong "
                         "place. Choose an output under the volume's transform, or a new one.")
    if not segmentation_node.GetSegmentation().IsSourceRepresentationImageData():
        raise ValueError(f"The output segmentation '{name}' is edited as closed surfaces; the "
                         "results are label maps. Choose another output, or make Binary labelmap "
                         "its source representation (Segmentations module, Representations).")


def _transform(node) -> str:
    transform = node.GetParentTransformNode()
    return "no transform" if transform is None else f"the transform '{transform.GetName()}'"


def check_in_scene(*nodes) -> None:
    """RuntimeError if a node left the scene (deleted, or the scene was closed) during a run:
    its results would otherwise be added to whatever scene is open now."""
    import slicer
    for node in nodes:
        if node is not None and not slicer.mrmlScene.IsNodePresent(node):
            raise RuntimeError(f"'{node.GetName()}' was removed from the scene (or the scene was "
                               "closed) while the engine ran; its result was not loaded.")


def import_labels(labels_path: str | Path, exported: scene.ExportedVolume,
                  classes: Sequence[ClassInfo], segmentation_node, volume_node):
    """Load a result label map into `segmentation_node`: one segment per class (updated in place
    where one is named after the class). ValueError before any change if the node cannot take
    it (`check_output_segmentation`); segments added for a failed import are removed again."""
    import slicer
    import vtk
    check_output_segmentation(segmentation_node, volume_node)
    indices = scene.result_indices(labels_path, exported, classes)
    segmentation = segmentation_node.GetSegmentation()
    ids, added = vtk.vtkStringArray(), []
    for spec in plan_segments(classes, segments_of(segmentation_node)):
        if not spec.exists:
            segmentation.AddEmptySegment(spec.segment_id, spec.name, list(spec.color))
            added.append(spec.segment_id)
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
            for sid in added:
                segmentation.RemoveSegment(sid)
            raise RuntimeError("Slicer could not import the segmentation result.")
    finally:
        slicer.mrmlScene.RemoveNode(labelmap)
    return segmentation_node


# volume → its uncertainty map, and the map → its volume: node references, which Slicer keeps
# right when a scene is imported with new node IDs; a clone copies only the first
UNCERTAINTY_REFERENCE = "ARCOSegment.uncertainty"
UNCERTAINTY_OF = "ARCOSegment.uncertaintyOf"


def import_scalar_volume(path: str | Path, exported: scene.ExportedVolume, name: str,
                         volume_node):
    """Load a float map (e.g. uncertainty) on the volume's grid as the volume's map: the node the
    volume references and that references the volume back (updated in place), never another
    node that only has the same name, nor the map of a volume this one was cloned from."""
    import slicer
    array = scene.result_volume(path, exported)
    node = volume_node.GetNodeReference(UNCERTAINTY_REFERENCE)
    if (node is None or not node.IsA("vtkMRMLScalarVolumeNode")
            or node.GetNodeReferenceID(UNCERTAINTY_OF) != volume_node.GetID()):
        node = slicer.util.addVolumeFromArray(array, ijkToRAS=exported.ijk_to_ras, name=name)
        node.SetNodeReferenceID(UNCERTAINTY_OF, volume_node.GetID())
        volume_node.SetNodeReferenceID(UNCERTAINTY_REFERENCE, node.GetID())
    else:
        slicer.util.updateVolumeFromArray(node, array)
        node.SetIJKToRASMatrix(cv.numpy_to_vtk_matrix(exported.ijk_to_ras))
    node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
    return node


def jump_to_slice(volume_node, axis: int, index: int) -> None:
    """Centre the slice views on slice `index` along array axis `axis` (0 = K) of the volume."""
    import slicer
    import vtk
    point = cv.slice_center_ras(scene.volume_ijk_to_ras(volume_node),
                                scene.volume_shape(volume_node), axis, index)
    transform_node = volume_node.GetParentTransformNode()
    if transform_node is not None:  # the grid is in the transform's space: go to world
        to_world = vtk.vtkGeneralTransform()
        transform_node.GetTransformToWorld(to_world)
        point = to_world.TransformPoint(point)
    slicer.modules.markups.logic().JumpSlicesToLocation(*point, True)


def add_volume(array: np.ndarray, ijk_to_ras: np.ndarray, name: str):
    """A new scalar volume node holding a (K, J, I) array with its IJK-to-RAS geometry."""
    import slicer
    return slicer.util.addVolumeFromArray(array, ijkToRAS=ijk_to_ras, name=name)


def add_annotations(volume_node, name: str,
                    segments: Sequence[tuple[str, tuple[float, float, float], np.ndarray]]):
    """A segmentation node on the volume's grid with one segment per (name, colour, mask), as
    a clinician would paint them."""
    import slicer
    node = new_segmentation(volume_node, name)
    for segment_name, color, mask in segments:
        segment_id = node.GetSegmentation().AddEmptySegment(segment_name, segment_name,
                                                            list(color))
        slicer.util.updateSegmentBinaryLabelmapFromArray(mask.astype(np.uint8), node,
                                                         segment_id, volume_node)
    return node


def load_volume(path: str | Path):
    """Load a volume file into the scene."""
    import slicer
    return slicer.util.loadVolume(str(path))


def load_segmentation(path: str | Path):
    """Load a segmentation file (.seg.nrrd) into the scene."""
    import slicer
    return slicer.util.loadSegmentation(str(path))


def clear_scene() -> None:
    """Remove every node (between batch cases)."""
    import slicer
    slicer.mrmlScene.Clear()


def save_segmentation(segmentation_node, segment_values: Sequence[tuple[str, int]],
                      reference_volume, path: str | Path) -> Path:
    """Save as a Slicer segmentation (.seg.nrrd: every segment with its name and colour) or as a
    label map on the volume's grid where segment `sid` of each (sid, value) holds `value` (the
    model's class values, as `arcoseg segment` writes them)."""
    import slicer
    import vtk
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # Slicer's writers do not create folders
    if path.name.lower().endswith(".seg.nrrd"):
        saved = slicer.util.saveNode(segmentation_node, str(path))
    else:
        ids = vtk.vtkStringArray()
        for sid, _ in segment_values:
            ids.InsertNextValue(sid)
        labelmap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
        try:
            if not slicer.modules.segmentations.logic().ExportSegmentsToLabelmapNode(
                    segmentation_node, ids, labelmap, reference_volume):
                raise RuntimeError(f"Slicer could not export the segments to {path}.")
            indices = slicer.util.arrayFromVolume(labelmap)  # segment n → n + 1
            slicer.util.updateVolumeFromArray(
                labelmap, indices_to_values(indices, [value for _, value in segment_values]))
            saved = slicer.util.saveNode(labelmap, str(path))
        finally:
            slicer.mrmlScene.RemoveNode(labelmap)
    if not saved:
        raise RuntimeError(f"Could not write {path}. Check that the folder is writable.")
    return path
