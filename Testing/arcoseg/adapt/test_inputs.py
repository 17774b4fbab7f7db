"""Adapt's inputs on the plan's grid: a 3D plan coarser than the image keeps every drawn slice."""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from arcoseg.adapt.annotations import make_annotations
from arcoseg.adapt.inputs import AnnotatedImage, on_plan, widen_drawn_slices
from arcoseg.constants import IGNORE_LABEL
from arcoseg.data.plan import Plan


def _drawn(shape=(12, 8, 8), axis=0, slices=(2, 7)) -> np.ndarray:
    labels = np.full(shape, IGNORE_LABEL, np.uint8)
    for value, s in enumerate(slices, start=1):
        index = [slice(None)] * 3
        index[axis] = s
        labels[tuple(index)] = 0
        index[(axis + 1) % 3] = slice(2, 6)
        labels[tuple(index)] = value
    return labels


def test_each_drawn_slice_is_copied_onto_its_undrawn_neighbours_within_half_a_plan_voxel():
    labels = _drawn()
    widened = widen_drawn_slices(labels, axis=0, ratio=2.0)  # plan voxels of 2 image slices
    for s, source in ((1, 2), (3, 2), (6, 7), (8, 7)):
        np.testing.assert_array_equal(widened[s], labels[source])
    for s in (0, 4, 5, 9, 10, 11):
        assert (widened[s] == IGNORE_LABEL).all()
    np.testing.assert_array_equal(widened[[2, 7]], labels[[2, 7]])  # the drawing itself
    # 4 image slices per plan voxel: two on each side; a finer or equal plan: nothing to do
    assert (widen_drawn_slices(labels, 0, 4.0)[[0, 4, 5, 9]] != IGNORE_LABEL).any(axis=(1, 2)).all()
    assert widen_drawn_slices(labels, 0, 1.0) is labels


@pytest.mark.parametrize("axis", [0, 1])
def test_a_coarser_3d_plan_keeps_every_drawn_slice(axis):
    labels = _drawn(shape=(12, 12, 12), axis=axis)
    image = sitk.GetImageFromArray(np.zeros(labels.shape, np.float32))
    item = AnnotatedImage(Path("img.nii.gz"), image, make_annotations(labels, 3, axis=axis))
    plan = Plan(dims=3, target_spacing=(2.0, 2.0, 2.0), normalization="zscore",
                label_values=[0, 1, 2], patch_size=(8, 8, 8))

    def kept(drawing: bool) -> set[int]:
        resampled = on_plan(labels, item, plan, is_label=True, drawing=drawing)
        return {int(v) for v in np.unique(resampled)} - {0, IGNORE_LABEL}

    # slices 2 and 7 at 1 mm on a 2 mm grid: plain nearest-neighbour resampling samples every
    # other image slice and drops one of them; the widened drawing keeps both
    assert kept(drawing=False) != {1, 2}
    assert kept(drawing=True) == {1, 2}
