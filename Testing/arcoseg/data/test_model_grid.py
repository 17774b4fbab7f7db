"""An image's size on a model's grid, from its header, is the size `preprocess_image` makes."""

from __future__ import annotations

import pytest
import SimpleITK as sitk

from arcoseg.data.model_grid import model_grid_size
from arcoseg.data.orientation import to_slicing_axis
from arcoseg.data.plan import Plan
from arcoseg.data.preprocess import preprocess_image
from arcoseg.io.geometry import Grid


@pytest.mark.parametrize("dims,axis,patch", [(2, 0, (32, 32)), (2, 1, (32, 32)),
                                              (2, 2, (32, 32)), (3, 0, (16, 32, 32))])
def test_the_size_on_the_model_grid_is_the_preprocessed_size(dims, axis, patch):
    image = sitk.Image([21, 17, 9], sitk.sitkFloat32)  # (x, y, z)
    image.SetSpacing((0.7, 1.3, 3.1))
    plan = Plan(dims=dims, target_spacing=(1.5, 0.9, 1.1), normalization="zscore",
                label_values=[0, 1], patch_size=patch, slice_axis=axis)
    array, _ = preprocess_image([to_slicing_axis(image, axis)], plan)
    assert model_grid_size(Grid.of(image), plan) == array.shape[1:]


def test_a_2d_image_is_one_slice_as_read_image_makes_it():
    image = sitk.Image([21, 17], sitk.sitkFloat32)  # (x, y): a PNG
    image.SetSpacing((0.5, 2.0))
    plan = Plan(dims=2, target_spacing=(1.0, 1.0, 1.0), normalization="zscore",
                label_values=[0, 1], patch_size=(32, 32))
    assert model_grid_size(Grid.of(image), plan) == (1, 34, 10)


def test_thick_slices_resampled_by_a_child_slicing_along_another_axis_are_accepted():
    """The regression hunt's finding: Adapt along coronal slices of a 12 mm MR (its plan the
    parent's 0.5 mm in-plane spacing) trained, then `segment` refused the same image (24x)."""
    from arcoseg.data.model_grid import check_model_grid

    image = sitk.Image([40, 40, 20], sitk.sitkFloat32)
    image.SetSpacing((0.5, 0.5, 12.0))
    child = Plan(dims=2, target_spacing=(12.0, 0.5, 0.5), normalization="zscore",
                 label_values=[0, 1], patch_size=(32, 32), slice_axis=1)
    check_model_grid(Grid.of(image), child, 1, 2, "mr.nii.gz")
