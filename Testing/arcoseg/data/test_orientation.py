"""Reorienting for 2D slicing along any axis keeps voxels at their physical positions."""

import numpy as np
import pytest
import SimpleITK as sitk

from arcoseg.data.orientation import array_from_slicing_axis, slicing_order, to_slicing_axis


def _image():
    array = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.5, 1.0, 3.0))
    image.SetOrigin((10.0, -2.0, 4.0))
    c, s = np.cos(0.4), np.sin(0.4)
    image.SetDirection((c, -s, 0, s, c, 0, 0, 0, 1))
    return array, image


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_permuted_array_is_a_transpose_with_the_axis_first(axis):
    array, image = _image()
    moved = sitk.GetArrayFromImage(to_slicing_axis(image, axis))
    assert np.array_equal(moved, np.transpose(array, slicing_order(axis)))
    assert moved.shape[0] == array.shape[axis]


@pytest.mark.parametrize("axis", [1, 2])
def test_every_voxel_keeps_its_physical_position(axis):
    array, image = _image()
    moved = to_slicing_axis(image, axis)
    for index in [(0, 0, 0), (4, 3, 2), (1, 2, 1)]:  # sitk (x, y, z) indices of the original
        point = image.TransformIndexToPhysicalPoint(index)
        new_index = moved.TransformPhysicalPointToIndex(point)
        assert moved[new_index] == image[index]


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_array_inverse_restores_the_original_layout_with_leading_axes(axis):
    array, image = _image()
    moved = sitk.GetArrayFromImage(to_slicing_axis(image, axis))
    stacked = np.stack([moved, moved * 2])
    back = array_from_slicing_axis(stacked, axis)
    assert np.array_equal(back[0], array) and np.array_equal(back[1], array * 2)
