"""Volume export for the engine and mapping results back, on Slicer's real volume and ROI nodes
(slicer-core): oblique and anisotropic grids, ROI crops, volumes under a parent transform."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import vtk

from ARCOSegmentLib import conversions as cv
from ARCOSegmentLib import mrml, scene
from ARCOSegmentLib.annotations import UNANNOTATED, describe_annotations
from standins import OBLIQUE

ROI_BOUNDS = [7.0, 9.0, -18.5, -16.0, 29.0, 36.0]  # holds voxels K 2..4, J 2..5, I 2..5


@pytest.fixture
def volume(slicer_core):
    """A vtkMRMLScalarVolumeNode on the oblique, anisotropic OBLIQUE grid, and its voxels."""
    array = np.arange(6 * 7 * 8, dtype=np.int16).reshape(6, 7, 8)
    return mrml.add_volume(array, OBLIQUE, "CT"), array


def test_exported_volume_puts_every_voxel_at_its_scene_position(tmp_path, volume):
    node, array = volume
    exported = scene.export_volume(node, tmp_path / "image.nii.gz")
    image = sitk.ReadImage(str(exported.path))
    assert (sitk.GetArrayFromImage(image) == array).all()
    for k, j, i in [(0, 0, 0), (5, 6, 7), (2, 3, 1)]:
        ras = (OBLIQUE @ [i, j, k, 1])[:3]
        np.testing.assert_allclose(cv.lps_to_ras(image.TransformIndexToPhysicalPoint((i, j, k))),
                                   ras, atol=1e-4)
    assert exported.box is None and exported.shape == (6, 7, 8)


def test_roi_crop_is_written_in_place_and_results_map_back_to_the_full_grid(tmp_path, volume,
                                                                           slicer_core):
    node, array = volume
    roi = slicer_core.add_roi(ROI_BOUNDS)
    exported = scene.export_volume(node, tmp_path / "image.nii.gz", scene.roi_ras_bounds(roi))
    written, written_matrix = cv.read_volume(exported.path)
    assert exported.box == (slice(2, 5), slice(2, 6), slice(2, 6))
    assert written.shape == exported.written_shape == (3, 4, 4)
    assert (written == array[exported.box]).all()
    # the engine's label map comes back on the written grid; it lands on the right voxels
    labels = np.ones(written.shape, np.uint8)
    path = cv.write_volume(labels, written_matrix, tmp_path / "labels.nii.gz")
    full = exported.to_full(*cv.read_labelmap(path))
    expected = np.zeros(array.shape, np.uint8)
    expected[exported.box] = 1
    assert (full == expected).all()
    assert exported.index_in_full(0, 0) == exported.box[0].start


def test_annotations_are_written_on_the_same_grid_as_the_image(tmp_path, volume, slicer_core):
    node, array = volume
    roi = slicer_core.add_roi(ROI_BOUNDS)
    exported = scene.export_volume(node, tmp_path / "image.nii.gz", scene.roi_ras_bounds(roi))
    full_labels = np.full(array.shape, UNANNOTATED, np.uint8)
    full_labels[exported.box] = 1
    path = scene.write_on_grid(full_labels, exported, tmp_path / "annotations.nii.gz")
    image, labels = sitk.ReadImage(str(exported.path)), sitk.ReadImage(str(path))
    assert labels.GetSize() == image.GetSize()
    np.testing.assert_allclose(labels.GetOrigin(), image.GetOrigin())
    np.testing.assert_allclose(labels.GetDirection(), image.GetDirection())
    assert (sitk.GetArrayFromImage(labels) == 1).all()


def test_outputs_with_another_geometry_are_refused(tmp_path, volume):
    node, array = volume
    exported = scene.export_volume(node, tmp_path / "image.nii.gz")
    with pytest.raises(ValueError, match="geometry"):
        exported.to_full(np.zeros(array.shape, np.uint8), np.eye(4))
    with pytest.raises(ValueError, match="geometry"):
        exported.to_full(np.zeros((1, 2, 3), np.uint8), OBLIQUE)


def test_volumes_without_voxels_or_with_colour_are_refused(tmp_path, slicer_core):
    empty = slicer_core.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(ValueError, match="'empty' has no voxels"):
        scene.export_volume(empty, tmp_path / "x.nii.gz")
    rgb = slicer_core.scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "photo")
    image = vtk.vtkImageData()
    image.SetDimensions(2, 2, 2)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 3)
    rgb.SetAndObserveImageData(image)
    with pytest.raises(ValueError, match="several components"):
        scene.export_volume(rgb, tmp_path / "x.nii.gz")


def test_roi_in_world_space_crops_a_volume_under_a_parent_transform(tmp_path, volume, slicer_core):
    """The ROI is drawn in world space; the volume's grid is in its parent transform's space.
    The crop holds the voxels whose world positions lie in the ROI."""
    node, array = volume
    shift = np.eye(4)
    shift[:3, 3] = [5.0, -3.0, 12.0]  # parent → world
    node.SetAndObserveTransformNodeID(slicer_core.add_linear_transform(shift).GetID())
    world_bounds = [b + shift[i // 2, 3] for i, b in enumerate(ROI_BOUNDS)]
    exported = scene.export_volume(node, tmp_path / "image.nii.gz",
                                   scene.roi_ras_bounds(slicer_core.add_roi(world_bounds)))
    assert exported.box == (slice(2, 5), slice(2, 6), slice(2, 6))
    # the engine's files stay in the volume's own (parent) space, as the volume node's grid
    np.testing.assert_allclose(exported.ijk_to_ras, OBLIQUE)
    written, _ = cv.read_volume(exported.path)
    assert (written == array[exported.box]).all()


def test_volumes_under_a_warping_transform_are_refused_with_a_remedy(tmp_path, volume,
                                                                      slicer_core):
    node, _ = volume
    warp = slicer_core.scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "warp")
    node.SetAndObserveTransformNodeID(warp.GetID())
    with pytest.raises(ValueError, match="Harden"):
        scene.export_volume(node, tmp_path / "image.nii.gz", ROI_BOUNDS)


def test_no_roi_means_no_bounds():
    assert scene.roi_ras_bounds(None) is None


def test_annotation_summary_names_axis_and_plane():
    assert describe_annotations(0, [12, 17], np.diag([-1.0, -1, 2, 1])) == \
        "2 slices annotated along K (axial): 12, 17"
    assert describe_annotations(2, [3], OBLIQUE).startswith("1 slice annotated along I (coronal)")
