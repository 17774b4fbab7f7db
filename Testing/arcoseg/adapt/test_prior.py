"""The propagation prior: drawn labels carried to neighbour slices with fading weights."""

import numpy as np
import pytest
import torch

from arcoseg.adapt.prior import (PriorSettings, propagate, schedule_factor, slice_weights,
                                 weighted_cross_entropy)
from arcoseg.errors import ArcosegError


def test_weights_fall_with_the_distance_to_a_drawn_slice_and_are_zero_on_drawn_ones():
    w = slice_weights(12, [3, 8], PriorSettings(strength=1.0, scale=2.0))
    assert w[3] == w[8] == 0
    assert w[2] == w[4] == w[7] == w[9] == pytest.approx(1.0)
    assert w[1] == pytest.approx(np.exp(-0.5)) and w[0] == pytest.approx(np.exp(-1.0))
    assert w[11] < w[10] < w[9]
    far = slice_weights(40, [0], PriorSettings(scale=2.0))
    assert far[-1] == 0  # below MIN_WEIGHT: left out


def test_the_schedule_fades_the_prior_out_over_its_decay_fraction():
    assert schedule_factor(0, 100, 0.5) == 1.0
    assert schedule_factor(25, 100, 0.5) == pytest.approx(0.5)
    assert schedule_factor(50, 100, 0.5) == schedule_factor(90, 100, 0.5) == 0.0


def test_propagate_copies_labels_and_leaves_drawn_and_far_slices_unannotated():
    labels = np.zeros((6, 4, 4), np.uint8)
    labels[1] = 1
    labels[4, :2] = 2
    drawn = np.full_like(labels, 255)
    drawn[[1, 4]] = labels[[1, 4]]
    prior, weights = propagate(drawn, 0, [1, 4],
                               PriorSettings(mode="nearest", scale=1.0, strength=0.5))
    assert (prior[[1, 4]] == 255).all() and (weights[[1, 4]] == 0).all()
    assert (prior[0] == 1).all() and (prior[2] == 1).all() and (prior[3] == labels[4]).all()
    assert weights[0, 0, 0] == weights[2, 3, 3] == pytest.approx(0.5)


def test_weighted_cross_entropy_ignores_unannotated_voxels_and_scales_with_the_weight():
    logits = torch.zeros(1, 2, 2, 2)
    labels = torch.tensor([[[0, 1], [255, 1]]])
    full = weighted_cross_entropy(logits, labels, torch.ones(1, 2, 2))
    half = weighted_cross_entropy(logits, labels, torch.full((1, 2, 2), 0.5))
    assert full == pytest.approx(3 * np.log(2) / 4) and half == pytest.approx(full / 2)


def test_settings_out_of_range_are_refused():
    with pytest.raises(ArcosegError):
        PriorSettings(mode="copy")
    with pytest.raises(ArcosegError):
        PriorSettings(decay=0)
