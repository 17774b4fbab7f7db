"""The held-out check: is the adapted model better than what the user had before?

One annotated slice is held out of training. The adapted model is scored on it against the two
things the user already has: the parent model (when adapting from one) and copying the nearest
drawn slice (always: Slicer gives it for free). A model worse than either is saved but not
activated: the registry's model is what `segment` uses later, alone, on images without a drawing.
Adapt's own output, the model fused with the drawing (`adapt.fusion`), is scored beside them.

Trained with the parent prior (`adapt.parent_prior`), the adapted model is activated unless it
scores more than PARENT_MARGIN Dice below the parent on the held-out slice: the prior keeps the
parent's prediction on the slices far from the drawing, so a small loss on one slice (a single
slice's Dice is noisy) does not say the model is worse. On 24 LA and ACDC validation volumes
adapted from a base with the prior, every adapted model beat its base on the slices nobody
drew (by 0.1 to 53 points), while 5 of them scored 0.001 to 0.021 below the base on the
held-out slice and were kept inactive by the strict rule (benchmarks/RESULTS.md, "From a
model: the copy's weight from the held-out errors, and the activation margin"). Without the prior (session 11) a model 0.005 below
its base on the held-out slice was 28 points below it on the undrawn slices: there the rule
stays strict.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from arcoseg.adapt.annotations import Annotations
from arcoseg.adapt.baselines import nearest_copy
from arcoseg.inference import Segmentation
from arcoseg.train.validation import class_dice

PARENT_MARGIN = 0.03  # Dice on the held-out slice the adapted model may lose to its parent


def slice_dice(prediction: np.ndarray, labels: np.ndarray, num_classes: int) -> float | None:
    """Mean foreground Dice of a (z, y, x) class map against the drawn `labels` (z, y, x,
    IGNORE_LABEL where nothing was drawn; e.g. the held-out slice), over the foreground classes
    present in `labels` (MONAI's ignore_empty: a class absent from the drawing is not scored,
    whatever the prediction); None when `labels` holds no foreground class."""
    dice = class_dice(torch.from_numpy(prediction.astype(np.int64)),
                      torch.from_numpy(labels.astype(np.int64)), num_classes)
    return float(np.nanmean(dice)) if np.isfinite(dice).any() else None


def copy_dice(train: Annotations, held_out: Annotations, num_classes: int) -> float | None:
    """Dice on the held-out slice of copying the nearest training slice onto it."""
    copied = nearest_copy(train.labels, train.axis, train.slices)
    return slice_dice(copied, held_out.labels, num_classes)


def compare(adapted: float | None, parent: float | None, copied: float | None,
            held_slice: int, output: float | None = None, parent_margin: float = 0.0
            ) -> dict[str, Any]:
    """The check's verdict: activated unless the adapted model scores below the nearest-slice
    copy, or more than `parent_margin` below the parent; `note` says why in words (with
    `output`, the fused output's Dice)."""
    rivals = {"the parent model": parent, "copying the nearest drawn slice": copied}
    margins = {"the parent model": parent_margin, "copying the nearest drawn slice": 0.0}
    beaten_by = [name for name, score in rivals.items()
                 if score is not None and adapted is not None and adapted < score - margins[name]]
    shown = ", ".join(f"{name} {score:.3f}" for name, score in rivals.items() if score is not None)
    if output is not None:
        shown += f"; Adapt's output, model and drawing fused, {output:.3f}"
    if beaten_by:
        note = (f"the adapted model scores {adapted:.3f} Dice on held-out slice {held_slice}, "
                f"below {' and '.join(beaten_by)} ({shown}): saved, not activated. Annotate "
                "more slices, or give a longer --budget / more --iterations")
    elif adapted is None:
        note = f"held-out slice {held_slice} holds no class: nothing to compare"
    else:
        note = f"adapted {adapted:.3f} Dice on held-out slice {held_slice} ({shown})"
        if parent is not None and adapted < parent:
            note += (f"; within {parent_margin:g} of the parent, whose prediction the parent "
                     "prior kept far from the drawing: activated")
    return {"slice": held_slice, "parent_dice": parent, "copy_dice": copied,
            "adapted_dice": adapted, "output_dice": output, "activated": not beaten_by,
            "note": note}


def heldout_check(adapted: Segmentation, parent: Segmentation | None, train: Annotations,
                  held_out: Annotations | None, output: Segmentation | None = None,
                  parent_margin: float = 0.0) -> dict[str, Any]:
    """Adapted model vs parent vs nearest-slice copy on the held-out slice, and Adapt's fused
    `output` beside them (segmentations on the annotated image's grid); `parent_margin`: see
    `compare` (PARENT_MARGIN when Adapt trained with the parent prior, else 0)."""
    if held_out is None:
        return {"slice": None, "parent_dice": None, "copy_dice": None, "adapted_dice": None,
                "output_dice": None, "activated": True,
                "note": "single annotated slice: no held-out check"}
    classes = adapted.probabilities.shape[0]

    def score(seg: Segmentation) -> float | None:
        return slice_dice(seg.probabilities.argmax(axis=0), held_out.labels, classes)

    return compare(score(adapted), score(parent) if parent is not None else None,
                   copy_dice(train, held_out, classes), held_out.slices[0],
                   score(output) if output is not None else None, parent_margin)
