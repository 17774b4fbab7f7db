"""The held-out check: never activate a model worse than the parent or than copying a slice."""

import numpy as np
import pytest

from arcoseg.adapt.annotations import hold_out, make_annotations
from arcoseg.adapt.check import PARENT_MARGIN, compare, copy_dice


def test_a_model_worse_than_copying_is_not_activated_and_the_note_says_both_numbers():
    verdict = compare(adapted=0.70, parent=None, copied=0.80, held_slice=5)
    assert verdict["activated"] is False and verdict["copy_dice"] == 0.80
    assert "0.700" in verdict["note"] and "0.800" in verdict["note"]
    assert "copying the nearest drawn slice" in verdict["note"]


def test_a_model_at_least_as_good_as_parent_and_copy_is_activated():
    assert compare(0.81, 0.80, 0.81, 5)["activated"] is True
    assert compare(0.81, 0.90, 0.50, 5)["activated"] is False  # the parent was better


@pytest.mark.parametrize("adapted,parent,copied,activated", [
    (0.880, 0.900, 0.5, True),  # 0.02 below the parent: within the margin
    (0.869, 0.900, 0.5, False),  # more than 0.03 below the parent
    (0.880, 0.900, 0.89, False),  # the margin is the parent's only: below the copy
    (0.950, 0.900, 0.5, True)])
def test_with_the_parent_prior_a_small_loss_to_the_parent_on_one_slice_still_activates(
        adapted, parent, copied, activated):
    verdict = compare(adapted, parent, copied, 5, parent_margin=PARENT_MARGIN)
    assert PARENT_MARGIN == 0.03 and verdict["activated"] is activated
    assert ("within 0.03 of the parent" in verdict["note"]) == (activated and adapted < parent)
    assert compare(adapted, parent, copied, 5)["activated"] is (adapted >= max(parent, copied))


def test_copy_dice_scores_the_nearest_training_slice_on_the_held_out_one():
    labels = np.zeros((7, 6, 6), np.uint8)
    labels[1, :3] = 1  # held-out slice 3 copies slice 1 (tie with 5 goes to the lower one)
    labels[3, :2] = 1
    labels[5, 3:] = 1
    train, held = hold_out(make_annotations(np.where(np.isin(np.arange(7), [1, 3, 5])[:, None, None],
                                                     labels, 255).astype(np.uint8), 2, axis=0))
    assert held.slices == [3] and train.slices == [1, 5]
    assert copy_dice(train, held, 2) == pytest.approx(2 * 12 / (18 + 12))
