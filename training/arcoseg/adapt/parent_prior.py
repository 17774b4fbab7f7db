"""Parent prior: Adapt from a base keeps the base's prediction on the slices far from the drawing.

Issue 13 item 2 ("the parent model's prediction as a prior when adapting from a base").
Fine-tuned on a few drawn slices of one volume, a base forgets what it knew about the slices far
from them (LA from a base, training/benchmarks/RESULTS.md: the adapted model fell below its own
base on 5 of 8 volumes). The remedy is the idea of Learning without Forgetting (Li & Hoiem,
ECCV 2016, section 3: the old model's responses on the new data are kept as targets for the new
one), made spatial: the parent's class map (its argmax on the plan's grid, computed once before
training) is trained on as extra targets, with weight

    strength * trust * (1 - exp(-max(0, d - margin) / scale))

on a slice `d` slices from the nearest drawn slice (0 on the drawn slices and the `margin`
slices next to them, where the drawing rules; rising towards strength * trust far from every
drawing), where `trust` is the parent's
mean foreground Dice on the drawn slices: a parent the user had to correct everywhere is kept
little. The weight is the same over the whole schedule (forgetting does not stop halfway).
"""

from __future__ import annotations

import numpy as np
import torch

from arcoseg.adapt.baselines import slice_distance
from arcoseg.adapt.check import slice_dice
from arcoseg.adapt.inputs import AnnotatedImage, on_plan
from arcoseg.adapt.prior import (MIN_WEIGHT, ParentPriorSettings, PriorTerm, per_voxel,
                                 weighted_case)
from arcoseg.constants import IGNORE_LABEL
from arcoseg.data.plan import Plan
from arcoseg.data.preprocess import PreprocessedCase
from arcoseg.inference import predict_labels
from arcoseg.networks.model import SegmentationModel


def slice_weights(size: int, slices: list[int], settings: ParentPriorSettings,
                  trust: float) -> np.ndarray:
    """(size,) weight of each slice index: 0 on drawn slices and within `margin` slices of one,
    then rising as strength * trust * (1 - exp(-(d - margin) / scale)) with the distance d
    (slices) to the nearest drawn slice; 0 where that is below MIN_WEIGHT."""
    beyond = np.maximum(0, slice_distance(size, slices) - settings.margin).astype(np.float64)
    weights = settings.strength * trust * (1 - np.exp(-beyond / settings.scale))
    weights[weights < MIN_WEIGHT] = 0.0
    return weights.astype(np.float32)


def parent_case(model: SegmentationModel, item: AnnotatedImage, case: PreprocessedCase,
                plan: Plan, settings: ParentPriorSettings, device: torch.device
                ) -> tuple[PreprocessedCase | None, float | None]:
    """The parent's prior on one image and the trust behind it.

    `case` is `item` on the plan's grid (image (C, z, y, x), drawn labels (z, y, x), the
    held-out slice not among them). The weights count the distance to every slice the user
    drew, the held-out one included: the parent's prediction is never a target there. Returns
    (the case with the weights as an extra last image channel and the parent's class map as
    labels, IGNORE_LABEL on drawn voxels and where the weight is 0; None when no voxel is
    weighted) and the trust (the parent's mean foreground Dice on the drawn slices, 0..1; None
    when the drawing holds no foreground class, and then no prior).
    """
    prediction = predict_labels(model, case.image, plan, device)
    trust = slice_dice(prediction, case.label, len(plan.label_values))
    if not trust:
        return None, trust
    ann = item.annotations  # every drawn slice counts, the held-out one too: never a target
    per_slice = slice_weights(ann.labels.shape[ann.axis], item.drawn_slices, settings, trust)
    weights = on_plan(per_voxel(per_slice, ann.labels.shape, ann.axis), item, plan, False)
    prediction[(weights < MIN_WEIGHT) | (case.label != IGNORE_LABEL)] = IGNORE_LABEL
    if (prediction == IGNORE_LABEL).all():
        return None, trust
    return weighted_case(case, weights, prediction), trust


def parent_term(sampler: object) -> PriorTerm:
    """The parent prior's term: the same weight over the whole schedule."""
    return PriorTerm("parent", sampler, lambda iteration, total: 1.0)
