"""Per-case segmentation metrics: Dice, Jaccard, HD95 and ASD (MONAI), in voxels and in mm.

Conventions (docs/BENCHMARK.md):
- A class present in one of prediction / ground truth but empty in the other scores Dice 0,
  Jaccard 0 and distances equal to the image diagonal — the largest possible distance, never 0
  (which would reward empty outputs) and never inf/NaN.
- A class absent from both scores NaN for every metric: there is nothing to measure, and NaN is
  excluded from every mean (`arcoseg.evaluation.evaluate.summarize`).
- HD95 is MONAI's symmetric 95th-percentile Hausdorff distance (the larger of the two directed
  95th percentiles of surface-voxel distances); ASD is MONAI's symmetric average surface distance.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from monai.metrics import (
    compute_average_surface_distance,
    compute_dice,
    compute_hausdorff_distance,
    compute_iou,
)

from arcoseg.errors import InputError

METRICS = ("dice", "jaccard", "hd95_vox", "asd_vox", "hd95_mm", "asd_mm")


def _validate(pred: np.ndarray, gt: np.ndarray, classes: dict[str, int],
              spacing_zyx: tuple[float, float, float]) -> None:
    if pred.shape != gt.shape:
        raise InputError(f"Prediction shape {pred.shape} differs from ground-truth shape "
                         f"{gt.shape} (z, y, x). Compare a prediction with the ground truth "
                         "of the same case, on the same grid.")
    if pred.ndim != 3:
        raise InputError(f"Label maps must be 3D (z, y, x) arrays, got {pred.ndim} dimensions.")
    if len(spacing_zyx) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing_zyx):
        raise InputError(f"Spacing {tuple(spacing_zyx)} must be three positive numbers (z, y, x).")
    if not classes or 0 in classes.values():
        raise InputError(f"Classes {classes} must name at least one foreground label value "
                         "(0 is background and is not scored).")


def _mask(labels: np.ndarray, value: int) -> torch.Tensor:
    """(1, 1, z, y, x) float mask of one label value: MONAI's batch-first one-hot layout. One class
    at a time keeps memory at two masks however many classes there are."""
    return torch.from_numpy(labels == value)[None, None].float()


def _distances(pred: torch.Tensor, gt: torch.Tensor,
               spacing: tuple[float, float, float]) -> tuple[float, float]:
    """HD95 and symmetric ASD of two non-empty masks; spacing follows the tensor axes (z, y, x)."""
    spacing_list = [float(s) for s in spacing]  # MONAI rejects mixed int/float sequences
    with warnings.catch_warnings():
        # MONAI 1.5+ warns about a deprecated argument it passes to itself; nothing to act on.
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy",
                                category=FutureWarning)
        hd95 = compute_hausdorff_distance(pred, gt, include_background=True, percentile=95,
                                          spacing=spacing_list)
        asd = compute_average_surface_distance(pred, gt, include_background=True, symmetric=True,
                                               spacing=spacing_list)
    return float(hd95), float(asd)


def _class_metrics(pred: torch.Tensor, gt: torch.Tensor,
                   spacing_zyx: tuple[float, float, float]) -> dict[str, float]:
    """All metrics of one class from its (1, 1, z, y, x) masks, with the empty-class rules."""
    in_pred, in_gt = bool(pred.any()), bool(gt.any())
    if not (in_pred or in_gt):
        return dict.fromkeys(METRICS, math.nan)
    # ignore_empty=False: an empty gt with a non-empty prediction scores 0, not NaN.
    result = {"dice": float(compute_dice(pred, gt, include_background=True, ignore_empty=False)),
              "jaccard": float(compute_iou(pred, gt, include_background=True, ignore_empty=False))}
    shape = np.asarray(pred.shape[2:], dtype=float)
    for unit, spacing in (("vox", (1.0, 1.0, 1.0)), ("mm", spacing_zyx)):
        if in_pred and in_gt:
            hd95, asd = _distances(pred, gt, spacing)
        else:  # MONAI gives inf/NaN here: use the largest possible distance, the diagonal
            hd95 = asd = float(np.sqrt(np.sum((shape * np.asarray(spacing)) ** 2)))
        result[f"hd95_{unit}"], result[f"asd_{unit}"] = hd95, asd
    return result


def case_metrics(pred: np.ndarray, gt: np.ndarray, classes: dict[str, int],
                 spacing_zyx: tuple[float, float, float]) -> dict[str, dict[str, float]]:
    """Metrics of one case: {class name: {metric: value}} for every foreground class in `classes`.

    `pred` and `gt` are (z, y, x) integer label maps on the same grid; `classes` maps class names
    to label values; `spacing_zyx` is the voxel spacing in mm. Label values not in `classes`
    (e.g. 255, unannotated) are ignored.
    """
    _validate(pred, gt, classes, spacing_zyx)
    return {name: _class_metrics(_mask(pred, value), _mask(gt, value), spacing_zyx)
            for name, value in classes.items()}
