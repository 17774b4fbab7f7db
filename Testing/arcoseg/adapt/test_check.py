"""The held-out check: never activate a model worse than the parent or than copying a slice."""

import numpy as np
import pytest

from arcoseg.adapt.annotations import hold_out, make_annotations
from arcoseg.adapt.check import compare, copy_dice


def test_a_model_worse_than_copying_is_not_activated_and_the_note_says_both_numbers():
    verdict = compare(adapted=0.70, parent=None, copied=0.80, held_slice=5)
    assert verdict["activated"] is False and verdict["copy_dice"] == 0.80
    assert "0.700" in verdict["note"] and "0.800" in verdict["note"]
    assert "copying the nearest drawn slice" in verdict["note"]


def test_a_model_at_least_as_good_as_parent_and_copy_is_activated():
    assert compare(0.81, 0.80, 0.81, 5)["activated"] is True
    assert compare(0.81, 0.90, 0.50, 5)["activated"] is False  # the parent was better


def test_copy_dice_scores_the_nearest_training_slice_on_the_held_out_one():
    labels = np.zeros((7, 6, 6), np.uint8)
    labels[1, :3] = 1  # held-out slice 3 copies slice 1 (tie with 5 goes to the lower one)
    labels[3, :2] = 1
    labels[5, 3:] = 1
    train, held = hold_out(make_annotations(np.where(np.isin(np.arange(7), [1, 3, 5])[:, None, None],
                                                     labels, 255).astype(np.uint8), 2, axis=0))
    assert held.slices == [3] and train.slices == [1, 5]
    assert copy_dice(train, held, 2) == pytest.approx(2 * 12 / (18 + 12))
