"""Volume export for the engine and mapping results back, with a stand-in volume node made of
real vtk objects (vtkImageData voxels + vtkMatrix4x4 geometry, as vtkMRMLScalarVolumeNode has)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import vtk

from ARCOSegmentLib import conversions as cv
from ARCOSegmentLib import scene
from standins import OBLIQUE, StandInROINode, StandInVolumeNode


@pytest.fixture
def volume():
    array = np.arange(6 * 7 * 8, dtype=np.int16).reshape(6, 7, 8)
    return StandInVolumeNode(array, OBLIQUE), array


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


def test_roi_crop_is_written_in_place_and_results_map_back_to_the_full_grid(tmp_path, volume):
    node, array = volume
    roi = StandInROINode([7.0, 9.0, -18.5, -16.0, 29.0, 36.0])
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


def test_annotations_are_written_on_the_same_grid_as_the_image(tmp_path, volume):
    node, array = volume
    roi = StandInROINode([7.0, 9.0, -18.5, -16.0, 29.0, 36.0])
    exported = scene.export_volume(node, tmp_path / "image.nii.gz", scene.roi_ras_bounds(roi))
    full_labels = np.full(array.shape, cv.UNANNOTATED, np.uint8)
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


def test_volumes_without_voxels_or_with_colour_are_refused(tmp_path):
    empty = StandInVolumeNode(np.zeros((1, 1, 1)), np.eye(4), "empty")
    empty._image = vtk.vtkImageData()
    with pytest.raises(ValueError, match="'empty' has no voxels"):
        scene.export_volume(empty, tmp_path / "x.nii.gz")
    rgb = StandInVolumeNode(np.zeros((2, 2, 2)), np.eye(4), "photo")
    rgb._image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 3)
    with pytest.raises(ValueError, match="several components"):
        scene.export_volume(rgb, tmp_path / "x.nii.gz")


def test_no_roi_means_no_bounds():
    assert scene.roi_ras_bounds(None) is None


def test_annotation_summary_names_axis_and_plane():
    assert cv.describe_annotations(0, [12, 17], np.diag([-1.0, -1, 2, 1])) == \
        "2 slices annotated along K (axial): 12, 17"
    assert cv.describe_annotations(2, [3], OBLIQUE).startswith("1 slice annotated along I (coronal)")
