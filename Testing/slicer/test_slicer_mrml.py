"""ARCOSegmentLib.mrml on Slicer's real scene, nodes and logics (slicer-core): engine label maps
→ segments (names, colours, stable IDs, updates in place), the clinician's drawn slices, jumps of
the slice views, saving and loading."""

from __future__ import annotations

import numpy as np
import pytest

from ARCOSegmentLib import conversions as cv
from ARCOSegmentLib import mrml, scene
from ARCOSegmentLib.logic import EngineLogic
from ARCOSegmentLib.segments import ClassInfo, segment_values
from standins import OBLIQUE

SHAPE = (6, 7, 8)
CLASSES = [ClassInfo("Left kidney", 3, (1.0, 0.5, 0.0)), ClassInfo("Liver", 7, (0.0, 0.25, 1.0))]
IDS = ["ARCOSegment_Left_kidney", "ARCOSegment_Liver"]


def engine_labels(exported: scene.ExportedVolume, tmp_path, first: int = 1) -> tuple:
    """A label map as the engine writes it (class values on the written grid): slices
    first..first+1 along K hold class value 3, the slice after them 7. Returns (path, values)."""
    values = np.zeros(exported.written_shape, np.uint8)
    values[first:first + 2, 1:5, 2:6] = 3
    values[first + 2, 2:4, 1:7] = 7
    path = cv.write_volume(values, exported.written_ijk_to_ras, tmp_path / f"labels{first}.nii.gz")
    return path, values


@pytest.fixture
def volume(slicer_core, tmp_path):
    node = mrml.add_volume(np.zeros(SHAPE, np.int16), OBLIQUE, "CT")
    return node, scene.export_volume(node, tmp_path / "image.nii.gz")


def masks(node, volume_node, ids=IDS) -> list[np.ndarray]:
    return [m for _, m in mrml.segment_masks(node, [(sid, 1) for sid in ids], volume_node)]


def test_engine_labels_become_one_segment_per_class_named_and_coloured_after_the_model(
        volume, tmp_path):
    node, exported = volume
    path, values = engine_labels(exported, tmp_path)
    segmentation = mrml.new_segmentation(node)
    mrml.import_labels(path, exported, CLASSES, segmentation, node)
    assert segmentation.GetName() == "CT segmentation"
    assert mrml.segments_of(segmentation) == dict(zip(IDS, ["Left kidney", "Liver"]))
    segments = segmentation.GetSegmentation()
    assert [segments.GetSegment(sid).GetColor() for sid in IDS] == [c.color for c in CLASSES]
    kidney, liver = masks(segmentation, node)
    assert (kidney == (values == 3)).all() and (liver == (values == 7)).all()


def test_segmenting_again_updates_the_same_segments_in_place(volume, tmp_path):
    node, exported = volume
    segmentation = mrml.new_segmentation(node)
    mrml.import_labels(engine_labels(exported, tmp_path)[0], exported, CLASSES, segmentation, node)
    # the clinician renamed nothing but recoloured the kidney; the model's colour comes back
    segmentation.GetSegmentation().GetSegment(IDS[0]).SetColor(0.1, 0.1, 0.1)
    path, values = engine_labels(exported, tmp_path, first=2)
    mrml.import_labels(path, exported, CLASSES, segmentation, node)
    assert list(mrml.segments_of(segmentation)) == IDS
    assert segmentation.GetSegmentation().GetSegment(IDS[0]).GetColor() == CLASSES[0].color
    kidney, liver = masks(segmentation, node)
    assert (kidney == (values == 3)).all() and (liver == (values == 7)).all()
    assert not kidney[1].any()  # the old result is gone


def test_a_segment_drawn_with_a_class_name_is_reused_not_duplicated(volume, tmp_path):
    node, exported = volume
    segmentation = mrml.new_segmentation(node)
    own_id = segmentation.GetSegmentation().AddEmptySegment("", "liver", [0.5, 0.5, 0.5])
    mrml.import_labels(engine_labels(exported, tmp_path)[0], exported, CLASSES, segmentation, node)
    assert mrml.segments_of(segmentation) == {own_id: "Liver", IDS[0]: "Left kidney"}


def test_results_of_an_roi_crop_land_on_the_full_volume_grid(slicer_core, tmp_path):
    node = mrml.add_volume(np.zeros(SHAPE, np.int16), OBLIQUE, "CT")
    roi = slicer_core.add_roi([7.0, 9.0, -18.5, -16.0, 29.0, 36.0])
    exported = scene.export_volume(node, tmp_path / "image.nii.gz", scene.roi_ras_bounds(roi))
    path, values = engine_labels(exported, tmp_path, first=0)
    segmentation = mrml.new_segmentation(node)
    mrml.import_labels(path, exported, CLASSES, segmentation, node)
    kidney, liver = masks(segmentation, node)
    assert kidney.shape == SHAPE
    assert (kidney == cv.paste(values == 3, exported.box, SHAPE, False)).all()
    assert (liver == cv.paste(values == 7, exported.box, SHAPE, False)).all()


def test_results_on_a_transformed_volume_follow_its_transform(slicer_core, volume, tmp_path):
    node, exported = volume
    shift = np.eye(4)
    shift[:3, 3] = [5.0, -3.0, 12.0]
    transform = slicer_core.add_linear_transform(shift)
    node.SetAndObserveTransformNodeID(transform.GetID())
    path, values = engine_labels(exported, tmp_path)
    segmentation = mrml.new_segmentation(node)
    mrml.import_labels(path, exported, CLASSES, segmentation, node)
    assert segmentation.GetTransformNodeID() == transform.GetID()
    kidney, _ = masks(segmentation, node)
    assert (kidney == (values == 3)).all()


def test_uncertainty_map_is_loaded_on_the_volume_and_updated_in_place(volume, tmp_path):
    node, exported = volume
    entropy = np.linspace(0, 1, np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    path = cv.write_volume(entropy, exported.written_ijk_to_ras, tmp_path / "entropy.nii.gz")
    first = mrml.import_scalar_volume(path, exported, "CT uncertainty", node)
    again = mrml.import_scalar_volume(path, exported, "CT uncertainty", node)
    assert again is first and first.IsA("vtkMRMLScalarVolumeNode")
    np.testing.assert_allclose(scene.volume_array(first), entropy)
    np.testing.assert_allclose(scene.volume_ijk_to_ras(first), OBLIQUE)


def test_each_volume_has_its_own_uncertainty_map_whatever_the_names(volume, tmp_path):
    """The tester's finding 7: maps were found by name, so a second volume named 'CT' took the
    first one's map, and the user's own volume 'CT uncertainty' was overwritten."""
    node, exported = volume
    users = mrml.add_volume(np.full(SHAPE, 255, np.int16), OBLIQUE, "CT uncertainty")
    twin = mrml.add_volume(np.zeros(SHAPE, np.int16), OBLIQUE, "CT")
    entropy = np.full(SHAPE, 0.1, np.float32)
    path = cv.write_volume(entropy, exported.written_ijk_to_ras, tmp_path / "entropy.nii.gz")
    first = mrml.import_scalar_volume(path, exported, "CT uncertainty", node)
    second = mrml.import_scalar_volume(path, exported, "CT uncertainty", twin)
    assert len({first.GetID(), second.GetID(), users.GetID()}) == 3
    assert (scene.volume_array(users) == 255).all()


def test_a_cloned_volume_gets_its_own_uncertainty_map(slicer_core, volume, tmp_path):
    """The tester's finding: Slicer's Clone copies the node reference, so segmenting the clone
    overwrote the original's map."""
    import slicer

    node, exported = volume
    path = cv.write_volume(np.full(SHAPE, 0.1, np.float32), exported.written_ijk_to_ras,
                           tmp_path / "entropy.nii.gz")
    original = mrml.import_scalar_volume(path, exported, "CT uncertainty", node)
    clone = slicer.modules.volumes.logic().CloneVolume(slicer_core.scene, node, "CT clone")
    other = cv.write_volume(np.full(SHAPE, 0.9, np.float32), exported.written_ijk_to_ras,
                            tmp_path / "other.nii.gz")
    its_own = mrml.import_scalar_volume(other, exported, "CT clone uncertainty", clone)
    assert its_own.GetID() != original.GetID()
    np.testing.assert_allclose(scene.volume_array(original), 0.1)
    assert mrml.import_scalar_volume(other, exported, "CT clone uncertainty", clone) is its_own


def test_a_volume_imported_with_a_saved_scene_keeps_its_uncertainty_map(slicer_core, volume,
                                                                       tmp_path):
    """The reviewer's finding: an ID kept in an attribute went stale when Slicer imported the
    scene with new node IDs, and the next Segment added a second map."""
    node, exported = volume
    path = cv.write_volume(np.full(SHAPE, 0.1, np.float32), exported.written_ijk_to_ras,
                           tmp_path / "entropy.nii.gz")
    first = mrml.import_scalar_volume(path, exported, "CT uncertainty", node)
    for saved in (node, first):
        saved.AddDefaultStorageNode()
        saved.GetStorageNode().SetFileName(str(tmp_path / f"{saved.GetName()}.nrrd"))
        saved.GetStorageNode().WriteData(saved)
    scene_ = slicer_core.scene
    scene_.SetRootDirectory(str(tmp_path))
    scene_.SetURL(str(tmp_path / "scene.mrml"))
    assert scene_.Commit() and scene_.Import()  # the same nodes again, with new IDs
    imported = [n for n in (scene_.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode") for i in
                            range(scene_.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")))
                if n.GetName() == "CT" and n is not node][0]
    maps = scene_.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    updated = mrml.import_scalar_volume(path, exported, "CT uncertainty", imported)
    assert updated is imported.GetNodeReference(mrml.UNCERTAINTY_REFERENCE)
    assert scene_.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == maps  # no second map


def test_an_output_under_another_transform_is_refused_before_any_change(slicer_core, volume,
                                                                        tmp_path):
    """The tester's finding 5: Slicer's label map import put the results 3 mm off."""
    node, exported = volume
    shift = np.eye(4)
    shift[:3, 3] = [3.0, 0.0, 0.0]
    segmentation = mrml.new_segmentation(node)
    segmentation.SetAndObserveTransformNodeID(slicer_core.add_linear_transform(shift).GetID())
    with pytest.raises(ValueError, match="'CT segmentation' is under the transform .* and the "
                                         "volume 'CT' under no transform"):
        mrml.import_labels(engine_labels(exported, tmp_path)[0], exported, CLASSES,
                           segmentation, node)
    assert mrml.segments_of(segmentation) == {}


def test_an_output_edited_as_closed_surfaces_is_refused_before_any_change(volume, tmp_path):
    """The tester's finding 6: 'Slicer could not import the segmentation result', and the
    failed run had added two empty segments to the user's node."""
    node, exported = volume
    segmentation = mrml.new_segmentation(node)
    segmentation.GetSegmentation().SetSourceRepresentationName("Closed surface")
    with pytest.raises(ValueError, match="edited as closed surfaces.*Binary labelmap"):
        mrml.import_labels(engine_labels(exported, tmp_path)[0], exported, CLASSES,
                           segmentation, node)
    assert mrml.segments_of(segmentation) == {}


def test_a_node_that_left_the_scene_is_named(slicer_core, volume):
    node, _ = volume
    mrml.check_in_scene(node, None)
    slicer_core.scene.RemoveNode(node)
    with pytest.raises(RuntimeError, match="'CT' was removed from the scene"):
        mrml.check_in_scene(node)


def drawing(node, slices_by_name: dict[str, tuple[int, int]]):
    """An annotation segmentation painted on the real node, segment name → (axis, slice)."""
    segments = []
    for name, (axis, index) in slices_by_name.items():
        mask = np.zeros(SHAPE, bool)
        where = [slice(1, 5)] * 3
        where[axis] = index
        mask[tuple(where)] = True
        segments.append((name, (1.0, 0.0, 0.0), mask))
    return mrml.add_annotations(node, "Annotations", segments)


def test_the_drawn_slices_and_their_axis_are_read_from_the_segmentation(volume):
    node, _ = volume
    logic = EngineLogic()
    assert logic.annotationSummary(node, drawing(node, {"Liver": (0, 1), "Spleen": (0, 4)})) == \
        "2 slices annotated along K (axial): 1, 4"
    # OBLIQUE: I points to A (coronal slices), J to R (sagittal slices)
    assert logic.annotationSummary(node, drawing(node, {"Liver": (2, 3), "Spleen": (2, 6)})) == \
        "2 slices annotated along I (coronal): 3, 6"
    assert logic.annotationSummary(node, drawing(node, {"Liver": (1, 2)})).startswith(
        "1 slice annotated along J (sagittal)")
    with pytest.raises(ValueError, match="Paint the structures"):
        logic.annotationSummary(node, mrml.new_segmentation(node, "empty"))


def test_jumping_centres_every_slice_view_on_the_slice(slicer_core, volume):
    node, _ = volume
    mrml.jump_to_slice(node, 0, 4)
    expected = (OBLIQUE @ [3.5, 3.0, 4.0, 1.0])[:3]  # centre of K slice 4
    for name, centre in slicer_core.slice_offsets().items():
        np.testing.assert_allclose(centre, expected, atol=1e-6, err_msg=name)


def test_jumping_on_a_transformed_volume_goes_to_the_slice_in_world_space(slicer_core, volume):
    node, _ = volume
    rotate = np.array([[0.0, -1, 0, 4], [1, 0, 0, -2], [0, 0, 1, 7], [0, 0, 0, 1]])
    node.SetAndObserveTransformNodeID(slicer_core.add_linear_transform(rotate).GetID())
    mrml.jump_to_slice(node, 2, 1)  # I slice 1
    expected = (rotate @ OBLIQUE @ [1.0, 3.0, 2.5, 1.0])[:3]
    np.testing.assert_allclose(slicer_core.slice_offsets()["Red"], expected, atol=1e-6)


def test_saved_label_maps_hold_the_models_class_values_on_the_volume_grid(volume, tmp_path):
    node, exported = volume
    path, values = engine_labels(exported, tmp_path)
    segmentation = mrml.new_segmentation(node)
    mrml.import_labels(path, exported, CLASSES, segmentation, node)
    saved = mrml.save_segmentation(segmentation, segment_values(
        CLASSES, mrml.segments_of(segmentation)), node, tmp_path / "out" / "CT.nii.gz")
    array, ijk_to_ras = cv.read_volume(saved)
    assert (array == values).all()  # 3 and 7, not segment indices 1 and 2
    np.testing.assert_allclose(ijk_to_ras, OBLIQUE, atol=1e-5)


def test_saved_segmentations_load_back_with_names_colours_and_voxels(volume, tmp_path):
    node, exported = volume
    path, values = engine_labels(exported, tmp_path)
    segmentation = mrml.new_segmentation(node)
    mrml.import_labels(path, exported, CLASSES, segmentation, node)
    saved = mrml.save_segmentation(segmentation, [], node, tmp_path / "CT.seg.nrrd")
    segmentation.GetScene().RemoveNode(segmentation)
    loaded = mrml.load_segmentation(saved)
    assert mrml.segments_of(loaded) == dict(zip(IDS, ["Left kidney", "Liver"]))
    assert [loaded.GetSegmentation().GetSegment(sid).GetColor() for sid in IDS] == \
        [c.color for c in CLASSES]
    kidney, liver = masks(loaded, node)
    assert (kidney == (values == 3)).all() and (liver == (values == 7)).all()


def test_a_volume_file_loads_with_every_voxel_at_its_position_and_the_scene_clears(slicer_core,
                                                                                   tmp_path):
    """OBLIQUE is left-handed; Slicer's reader makes it right-handed by reversing K, so the
    loaded array is the written one reversed along K with the same physical positions."""
    array = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE)
    path = cv.write_volume(array, OBLIQUE, tmp_path / "CT.nrrd")
    loaded = mrml.load_volume(path)
    ijk_to_ras = scene.volume_ijk_to_ras(loaded)
    assert np.linalg.det(ijk_to_ras[:3, :3]) > 0
    assert (scene.volume_array(loaded) == array[::-1]).all()
    np.testing.assert_allclose(ijk_to_ras @ [0, 0, SHAPE[0] - 1, 1], OBLIQUE @ [0, 0, 0, 1],
                               atol=1e-5)
    mrml.clear_scene()
    assert slicer_core.scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode") == 0
