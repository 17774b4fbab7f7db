"""The free baselines: copy the nearest drawn slice, and Slicer's "Fill between slices"."""

import importlib.util

import numpy as np
import pytest

from arcoseg.adapt.baselines import (check_interpolation, interpolate, nearest_copy,
                                     nearest_slices, propagate_labels, slice_distance)
from arcoseg.adapt.fusion import FusionSettings
from arcoseg.adapt.prior import PriorSettings
from arcoseg.errors import ArcosegError


def growing_square(size: int = 9) -> np.ndarray:
    """(size, 24, 24): class 1 is a square whose half-width grows by 1 voxel per slice."""
    labels = np.zeros((size, 24, 24), np.uint8)
    for z in range(size):
        r = 2 + z
        labels[z, 12 - r:12 + r, 12 - r:12 + r] = 1
    return labels


def drawn(labels: np.ndarray, axis: int, slices: list[int]) -> np.ndarray:
    out = np.full_like(labels, 255)
    index = [slice(None)] * 3
    index[axis] = slices
    out[tuple(index)] = labels[tuple(index)]
    return out


def test_slice_distance_and_the_slice_each_index_copies_from():
    assert slice_distance(8, [2, 5]).tolist() == [2, 1, 0, 1, 1, 0, 1, 2]
    assert nearest_slices(8, [5, 2]).tolist() == [2, 2, 2, 2, 5, 5, 5, 5]  # tie → lower


@pytest.mark.parametrize("axis", [0, 2])
def test_nearest_copy_fills_every_slice_from_the_closest_drawn_one(axis):
    labels = np.moveaxis(growing_square(), 0, axis)
    filled = nearest_copy(drawn(labels, axis, [1, 6]), axis, [1, 6])
    for z, source in enumerate([1, 1, 1, 1, 6, 6, 6, 6, 6]):
        assert (np.take(filled, z, axis) == np.take(labels, source, axis)).all()


def test_interpolation_grows_the_shape_between_drawn_slices_and_does_not_extrapolate():
    labels = growing_square()
    filled = interpolate(drawn(labels, 0, [2, 6]), 0, [2, 6])
    areas = [int((filled[z] == 1).sum()) for z in range(9)]
    assert areas[2] == (labels[2] == 1).sum() and areas[6] == (labels[6] == 1).sum()
    assert areas[2] < areas[3] < areas[4] < areas[5] < areas[6]  # between the drawn sizes
    assert areas[0] == areas[1] == areas[7] == areas[8] == 0  # like Slicer: no extrapolation
    middle = filled[4] == 1
    assert middle[12, 12] and not middle[0, 0]  # centred where the drawn squares are


@pytest.mark.parametrize("axis", [0, 2])
def test_propagation_interpolates_between_the_drawn_slices_and_copies_beyond_them(axis):
    labels = np.moveaxis(growing_square(), 0, axis)
    sketch = drawn(labels, axis, [2, 6])
    filled = propagate_labels(sketch, axis, [2, 6], "interpolate")
    assert filled.dtype == np.uint8
    areas = [int((np.take(filled, z, axis) == 1).sum()) for z in range(9)]
    assert areas[0] == areas[1] == areas[2] == (labels == 1).take(2, axis).sum()  # copied
    assert areas[6] == areas[7] == areas[8] == (labels == 1).take(6, axis).sum()
    assert areas[2] < areas[3] < areas[4] < areas[5] < areas[6]  # grown between them
    nearest = propagate_labels(sketch, axis, [2, 6], "nearest")
    assert (nearest == nearest_copy(sketch, axis, [2, 6])).all()


def test_propagation_keeps_unannotated_voxels_of_a_drawn_slice_unknown():
    labels = growing_square()
    sketch = drawn(labels, 0, [2, 6])
    sketch[2, :3, :3] = 255  # a corner of slice 2 left unannotated
    filled = propagate_labels(sketch, 0, [2, 6], "interpolate")
    assert (filled[:5, :3, :3] == 255).all()  # slice 2 and where it is the nearest drawn slice
    assert (filled[5:, :3, :3] == 0).all()  # nearer slice 6 said background
    assert (filled[2, 3:, 3:] == sketch[2, 3:, 3:]).all()


def test_one_drawn_slice_is_copied_even_by_the_interpolating_propagation():
    labels = growing_square()
    sketch = drawn(labels, 0, [4])
    assert (propagate_labels(sketch, 0, [4], "interpolate") == nearest_copy(sketch, 0, [4])).all()


def test_an_unknown_propagation_is_refused_with_the_choices():
    with pytest.raises(ArcosegError, match="nearest, interpolate"):
        propagate_labels(np.zeros((3, 4, 4), np.uint8), 0, [1], "none")


def test_a_missing_interpolation_package_is_named_before_any_work(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ArcosegError, match="itk-morphologicalcontourinterpolation"):
        check_interpolation()
    with pytest.raises(ArcosegError, match="itk-morphologicalcontourinterpolation"):
        FusionSettings(source="interpolate")
    with pytest.raises(ArcosegError, match="itk-morphologicalcontourinterpolation"):
        PriorSettings(mode="interpolate")
