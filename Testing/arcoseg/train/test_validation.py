"""Validation Dice counts annotated voxels only."""

import math

import numpy as np
import torch

from arcoseg.constants import IGNORE_LABEL
from arcoseg.train.validation import class_dice


def test_dice_per_class_matches_hand_count():
    gt = torch.tensor([[0, 1, 1, 2], [0, 1, 2, 2]])
    pred = torch.tensor([[0, 1, 0, 2], [0, 1, 2, 1]])
    dice = class_dice(pred, gt, 3)
    assert np.allclose(dice, [2 * 2 / (3 + 3), 2 * 2 / (3 + 2)])


def test_unannotated_voxels_are_not_counted():
    gt = torch.tensor([1, 1, IGNORE_LABEL, IGNORE_LABEL])
    pred = torch.tensor([1, 1, 0, 2])
    dice = class_dice(pred, gt, 3)
    assert dice[0] == 1.0 and math.isnan(dice[1])
