"""Per-case segmentation metrics: Dice, Jaccard, HD95 and ASD (MONAI), in voxels and in mm.

Conventions (docs/BENCHMARK.md):
- A class present in one of prediction / ground truth but empty in the other scores Dice 0,
  Jaccard 0 and distances equal to the image diagonal — the largest possible distance, never 0
  (which would reward empty outputs) and never inf/NaN.
- A class absent from both scores NaN for every metric: there is nothing to measure, and NaN is
  excluded from every mean (`arcoseg.evaluation.evaluate.summarize`).
- HD95 is MONAI's symmetric 95th-percentile Hausdorff distance (the larger of the two directed
  95th percentiles of surface-voxel distances); ASD is MONAI's symmetric average surface distance.
- An axis one voxel long is left out: a single-slice or 2D label map is scored in its plane (its
  contours; as a 3D volume, every voxel of a one-slice mask is on its surface).
- A sheared grid (non-orthogonal direction, e.g. CT gantry tilt): MONAI places voxels by their
  per-axis spacing only, so the mm distances are measured between MONAI's surface voxels placed
  at their physical positions instead (`_physical_distances`).
"""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Sequence

import numpy as np
import torch
from monai.metrics import (
    compute_average_surface_distance,
    compute_dice,
    compute_hausdorff_distance,
    compute_iou,
)
from monai.metrics.utils import get_mask_edges

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


def _distances(pred: torch.Tensor, gt: torch.Tensor, spacing: tuple[float, ...],
               axes: np.ndarray | None = None) -> tuple[float, float]:
    """HD95 and symmetric ASD of two non-empty (1, 1, *spatial) masks; `spacing` follows the
    tensor axes. `axes` (3, n): the physical step (mm) of each tensor axis when they are not
    orthogonal, else None."""
    if axes is not None:
        return _physical_distances(pred, gt, axes)
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


def _physical_distances(pred: torch.Tensor, gt: torch.Tensor,
                        axes: np.ndarray) -> tuple[float, float]:
    """MONAI's HD95 and symmetric ASD (same surface voxels, same percentile and mean) with the
    voxels at their physical positions (index @ axes.T): MONAI's distance transform takes one
    spacing per axis and cannot place the voxels of a sheared grid."""
    from scipy.spatial import cKDTree

    edges = get_mask_edges(pred[0, 0], gt[0, 0], always_return_as_numpy=True)
    points = [np.argwhere(e) @ axes.T for e in edges]  # mm
    to_gt = cKDTree(points[1]).query(points[0])[0]
    to_pred = cKDTree(points[0]).query(points[1])[0]
    hd95 = max(np.percentile(to_gt, 95), np.percentile(to_pred, 95))
    return float(hd95), float(np.concatenate([to_gt, to_pred]).mean())


def _class_metrics(pred: torch.Tensor, gt: torch.Tensor, spacing: tuple[float, ...],
                   axes: np.ndarray | None) -> dict[str, float]:
    """All metrics of one class from its (1, 1, *spatial) masks, with the empty-class rules."""
    in_pred, in_gt = bool(pred.any()), bool(gt.any())
    if not (in_pred or in_gt):
        return dict.fromkeys(METRICS, math.nan)
    # ignore_empty=False: an empty gt with a non-empty prediction scores 0, not NaN.
    result = {"dice": float(compute_dice(pred, gt, include_background=True, ignore_empty=False)),
              "jaccard": float(compute_iou(pred, gt, include_background=True, ignore_empty=False))}
    size = np.asarray(pred.shape[2:], dtype=float)  # voxels per axis
    for unit, unit_spacing, unit_axes in (("vox", (1.0,) * len(size), None),
                                          ("mm", spacing, axes)):
        if in_pred and in_gt:
            hd95, asd = _distances(pred, gt, unit_spacing, unit_axes)
        else:  # MONAI gives inf/NaN here: use the largest possible distance, the diagonal
            hd95 = asd = _diagonal(size, unit_spacing, unit_axes)
        result[f"hd95_{unit}"], result[f"asd_{unit}"] = hd95, asd
    return result


def _diagonal(size: np.ndarray, spacing: tuple[float, ...], axes: np.ndarray | None) -> float:
    """The longest diagonal of a grid of `size` voxels per axis: its steps are `spacing` along
    orthogonal axes, else the columns of `axes` (a sheared grid's diagonals differ in length)."""
    steps = np.diag(spacing) if axes is None else axes
    return max(float(np.linalg.norm(steps @ (size * np.asarray(signs))))
               for signs in itertools.product((1, -1), repeat=len(size)))


def _plane_axes(shape: tuple[int, ...]) -> list[int]:
    """The array axes to score along: all but those one voxel long, at least two."""
    longer = [a for a, n in enumerate(shape) if n > 1]
    return longer if len(longer) >= 2 else list(range(len(shape)))[-2:]


def _physical_axes(spacing_zyx: tuple[float, float, float],
                   direction: Sequence[float] | None) -> np.ndarray | None:
    """(3, 3): column a is the physical step (mm) of array axis a (z, y, x), for a direction
    (ITK's row-major 3x3, columns along x, y, z) that is not orthogonal; else None."""
    if direction is None:
        return None
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    if np.allclose(d.T @ d, np.eye(3), atol=1e-6):
        return None
    return (d * np.asarray(spacing_zyx[::-1], dtype=float))[:, ::-1]


def case_metrics(pred: np.ndarray, gt: np.ndarray, classes: dict[str, int],
                 spacing_zyx: tuple[float, float, float],
                 direction: Sequence[float] | None = None) -> dict[str, dict[str, float]]:
    """Metrics of one case: {class name: {metric: value}} for every foreground class in `classes`.

    `pred` and `gt` are (z, y, x) integer label maps on the same grid; `classes` maps class names
    to label values; `spacing_zyx` is the voxel spacing in mm; `direction` the grid's direction
    (ITK's 9 numbers; None: orthogonal). Label values not in `classes` (e.g. 255, unannotated)
    are ignored. An axis one voxel long is left out (module docstring).
    """
    _validate(pred, gt, classes, spacing_zyx)
    plane = _plane_axes(pred.shape)
    shape = tuple(pred.shape[a] for a in plane)
    spacing = tuple(float(spacing_zyx[a]) for a in plane)
    axes = _physical_axes(spacing_zyx, direction)
    axes = axes[:, plane] if axes is not None else None
    return {name: _class_metrics(_mask(pred, value).reshape(1, 1, *shape),
                                 _mask(gt, value).reshape(1, 1, *shape), spacing, axes)
            for name, value in classes.items()}
