"""Annotated slices: which axis, which slices, and what counts as unannotated."""

import numpy as np
import pytest

from arcoseg.adapt.annotations import (annotated_slices, detect_axis, hold_out,
                                       make_annotations)
from arcoseg.constants import IGNORE_LABEL
from arcoseg.errors import InputError


def _blob(shape=(12, 20, 24)):
    z, y, x = np.indices(shape)
    full = ((z - 6) ** 2 / 25 + (y - 10) ** 2 / 49 + (x - 12) ** 2 / 64 <= 1).astype(np.uint8)
    full[full.astype(bool) & (x > 12)] = 2
    return full


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_the_drawn_axis_is_detected(axis):
    full = _blob()
    drawn = np.zeros_like(full)
    index = [slice(None)] * 3
    picks = {0: [4, 7], 1: [8, 12], 2: [9, 14]}[axis]
    index[axis] = picks
    drawn[tuple(index)] = full[tuple(index)]
    assert detect_axis(drawn) == axis
    assert annotated_slices(drawn, axis) == picks


def test_partial_map_marks_every_other_voxel_unannotated():
    full = _blob()
    drawn = np.zeros_like(full)
    drawn[:, :, [9, 14]] = full[:, :, [9, 14]]
    ann = make_annotations(drawn, num_classes=3)
    assert ann.axis == 2 and ann.slices == [9, 14]
    assert (ann.labels[:, :, [9, 14]] == full[:, :, [9, 14]]).all()
    others = np.delete(ann.labels, [9, 14], axis=2)
    assert (others == IGNORE_LABEL).all()


def test_explicit_255_marks_keep_background_only_slices_annotated():
    labels = np.full((6, 8, 8), IGNORE_LABEL, np.uint8)
    labels[2] = 0  # a slice drawn as all background
    labels[4, 2:5, 2:5] = 1
    labels[4][labels[4] == IGNORE_LABEL] = 0
    assert annotated_slices(labels, 0) == [2, 4]


def test_given_slices_override_detection_and_are_checked():
    full = _blob()
    ann = make_annotations(full, 3, axis=0, slices=[3, 5])
    assert ann.slices == [3, 5]
    with pytest.raises(InputError, match="outside"):
        make_annotations(full, 3, axis=0, slices=[40])


def test_label_values_beyond_the_classes_are_refused():
    with pytest.raises(InputError, match="value"):
        make_annotations(_blob() * 2, num_classes=3)


def test_empty_annotations_are_refused():
    with pytest.raises(InputError, match="no label"):
        make_annotations(np.zeros((4, 4, 4), np.uint8), 3)


def test_hold_out_takes_the_middle_slice_out_of_training():
    full = _blob()
    ann = make_annotations(full, 3, axis=0, slices=[3, 6, 9])
    train, test = hold_out(ann)
    assert train.slices == [3, 9] and test.slices == [6]
    assert (train.labels[6] == IGNORE_LABEL).all()
    assert (test.labels[6] == full[6]).all() and (test.labels[3] == IGNORE_LABEL).all()


def test_a_single_slice_has_no_held_out_check():
    ann = make_annotations(_blob(), 3, axis=0, slices=[6])
    train, test = hold_out(ann)
    assert test is None and train.slices == [6]
