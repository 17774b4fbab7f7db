"""The adapted model and the drawing, fused: what Adapt writes for the slices nobody drew.

A model adapted on a few drawn slices knows what the anatomy looks like (intensity, edges) but
not reliably where it is on slices far from the drawing; copying the nearest drawn slice (what
Slicer gives for free) knows where it was a few millimetres away but not how it changed. Adapt
combines the two per voxel by log-linear pooling (the logarithmic opinion pool, Genest & Zidek,
Statistical Science 1986; a product of experts, Hinton, Neural Computation 2002):

    log q(c | v) = (1 - w) log p_model(c | v) + w log p_copy(c | v) + const,

where `p_copy` is a soft version of the nearest drawn slice's labels (or, with `source`
'interpolate', of Fill between slices, see below): each class mask blurred in
plane by a Gaussian whose sigma grows with the distance d (mm, along the drawn axis) to that
slice, `sigma = sigma_mm + slope * d`, then mixed with a uniform floor that grows with d,
`floor(d) = 1 - (1 - floor) * exp(-d / reach_mm)`: far from the drawing the copy says little and
the model decides. On the drawn slices themselves the output is the drawing. The copy can also
be "Fill between slices" between the drawn slices (`FusionSettings.source`); it scored no
better on ACDC and LA (RESULTS.md), so the nearest copy is the default.

Measured on ACDC validation volumes against the copy alone and the model alone
(training/benchmarks/RESULTS.md, "Adapt fused with the drawing"). The weight w Adapt uses comes
from its held-out check (`checked_fusion`): the model alone where the copy misleads, and from a
model a lower w where the model beats the copy on the held-out slice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Iterator

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter

from arcoseg.adapt.annotations import Annotations, along
from arcoseg.adapt.baselines import (PROPAGATIONS, check_interpolation, propagate_labels,
                                     slice_distance)
from arcoseg.constants import FUSION_WEIGHT, IGNORE_LABEL
from arcoseg.errors import ArcosegError, check_choice
from arcoseg.inference import Segmentation
from arcoseg.io.images import array_to_image
from arcoseg.ranges import NONNEG, POSITIVE, UNIT, Range

TINY = 1e-6  # probabilities are clipped here before the logarithm
COPY_SHARE = 0.4  # the model alone where the copy scores below this share of it (checked_fusion)


@dataclass(frozen=True)
class FusionSettings:
    """How much the copied drawing counts beside the model (see the module docstring)."""

    weight: float = FUSION_WEIGHT  # w: 0 = the model alone, 1 = the copy alone
    sigma_mm: float = 1.0  # in-plane blur of the copy next to a drawn slice
    slope: float = 0.1  # extra blur (mm) per mm of distance to the drawn slice
    floor: float = 0.01  # uniform share of the copy next to a drawn slice
    reach_mm: float | None = None  # distance over which the copy fades to uniform (None: never)
    # how the drawing reaches the other slices (`baselines.propagate_labels`): 'nearest' copies
    # the nearest drawn slice; 'interpolate' fills between the drawn slices as Slicer's "Fill
    # between slices" does (the optional itk-morphologicalcontourinterpolation wheel)
    source: str = "nearest"

    def __post_init__(self) -> None:
        check_choice(self.source, PROPAGATIONS, "fusion source")
        if self.source == "interpolate":
            check_interpolation()
        UNIT.check(self.weight, "fusion weight")
        NONNEG.check(self.sigma_mm, "fusion sigma_mm")
        NONNEG.check(self.slope, "fusion slope")
        Range(float, 0, 1, low_open=True).check(self.floor, "fusion floor")
        if self.reach_mm is not None:
            POSITIVE.check(self.reach_mm, "fusion reach_mm")


def copy_probabilities(annotations: Annotations, num_classes: int,
                       spacing_zyx: tuple[float, float, float],
                       settings: FusionSettings) -> np.ndarray:
    """The soft copy of the drawing (by `settings.source`), (K, z, y, x) float32 summing to 1
    over K.

    annotations: class indices on the drawn slices (IGNORE_LABEL elsewhere, and inside a drawn
    slice where nothing was drawn: those voxels count as no class, i.e. uniform);
    spacing_zyx: voxel size in mm in the array's axis order.
    """
    out = np.empty((num_classes, *annotations.labels.shape), np.float32)
    for index, prior in _copy_by_distance(annotations, num_classes, spacing_zyx, settings):
        out[index] = prior
    return out


def _copy_by_distance(annotations: Annotations, num_classes: int,
                      spacing_zyx: tuple[float, float, float], settings: FusionSettings
                      ) -> Iterator[tuple[tuple, np.ndarray]]:
    """The soft copy a few slices at a time: (index into (K, z, y, x), (K, ...) float32) for
    each group of slices at one distance from the drawing (one blur per group), so a large
    volume never needs the whole (K, z, y, x) prior at once."""
    axis, slices = annotations.axis, annotations.slices
    propagated = propagate_labels(annotations.labels, axis, slices, settings.source)
    distance_mm = slice_distance(propagated.shape[axis], slices) * spacing_zyx[axis]
    for d in np.unique(distance_mm):
        group = [int(i) for i in np.flatnonzero(distance_mm == d)]
        copied = np.take(propagated, group, axis=axis)
        sigma = _sigma_voxels(axis, settings.sigma_mm + settings.slope * d, spacing_zyx)
        fade = 1.0 if settings.reach_mm is None else math.exp(-d / settings.reach_mm)
        floor = 1 - (1 - settings.floor) * fade
        prior = np.empty((num_classes, *copied.shape), np.float32)
        for c in range(num_classes):
            mask = gaussian_filter((copied == c).astype(np.float32), sigma, mode="nearest")
            mask[copied == IGNORE_LABEL] = 1.0 / num_classes
            prior[c] = (1 - floor) * mask + floor / num_classes
        yield (slice(None), *along(axis, group)), prior / prior.sum(axis=0, keepdims=True)


def _sigma_voxels(axis: int, sigma_mm: float, spacing_zyx: tuple[float, float, float]
                  ) -> list[float]:
    """Gaussian sigma per array axis in voxels: `sigma_mm` in plane, 0 along `axis`."""
    return [0.0 if a == axis else sigma_mm / s for a, s in enumerate(spacing_zyx)]


def fuse(probabilities: np.ndarray, annotations: Annotations,
         spacing_zyx: tuple[float, float, float], settings: FusionSettings) -> np.ndarray:
    """Fused class probabilities, (K, z, y, x) float16, with the drawing on the drawn slices.

    probabilities: the model's (K, z, y, x) on the annotated image's grid, (z, y, x) axis order.
    Works a few slices at a time (float32 only for those). Raises ArcosegError when the shapes
    disagree.
    """
    if probabilities.shape[1:] != annotations.labels.shape:
        raise ArcosegError(f"Model probabilities {probabilities.shape[1:]} and annotations "
                           f"{annotations.labels.shape} are on different grids.")
    num_classes = probabilities.shape[0]
    fused = np.empty(probabilities.shape, np.float16)
    for index, prior in _copy_by_distance(annotations, num_classes, spacing_zyx, settings):
        model = np.clip(probabilities[index], TINY, 1, dtype=np.float32)
        log_q = (1 - settings.weight) * np.log(model) + settings.weight * np.log(prior)
        log_q -= log_q.max(axis=0, keepdims=True)
        q = np.exp(log_q)
        fused[index] = q / q.sum(axis=0, keepdims=True)
    drawn = annotations.labels != IGNORE_LABEL  # the drawing wins where it exists
    for c in range(num_classes):
        fused[c][drawn] = annotations.labels[drawn] == c
    return fused


def checked_fusion(settings: FusionSettings, check: dict[str, Any], *,
                   from_model: bool = False) -> FusionSettings:
    """`settings` with the drawing's weight the held-out check (`adapt.check`) allows, and
    `check["fusion_weight"]` and its note saying which weight was used:
    - weight 0 (the model alone) where the nearest-slice copy (`check["copy_dice"]`, whatever
      `settings.source`) scores below COPY_SHARE times the adapted model's Dice on the held-out
      slice: the drawing's copy misleads on this anatomy;
    - adapting from a model (`from_model`): w = e_model / (e_model + e_copy), at most
      `settings.weight`, with e = 1 - Dice on the held-out slice (inverse-error weighting of
      the two opinions): a model that keeps its parent's knowledge far from the drawing (the
      parent prior) needs the copy less, by as much as it beats the copy there;
    - from scratch: `settings` as given.

    Why not simply "the model alone where it beats the fused output on the held-out slice", the
    rule until 2026-12-01: the held-out slice is the middle drawn slice, so its copy comes from a
    whole gap between drawn slices away, while the output's copies come from at most half a
    gap: the comparison undervalues the copy. On 60 ACDC and LA validation volumes that rule
    chose the model alone on 28, and on 23 of them the fixed fusion scored higher on the slices
    nobody drew (by 3.7 points on average there; benchmarks/RESULTS.md, "Which fusion Adapt
    writes"), while the copy was never below COPY_SHARE times the model. Only a copy far worse
    than the model says the drawing misleads on this anatomy (the brain demo: copy 0.26, model
    0.91, where fusion lowered the output by 3.6 points). The same bias is why the error
    weighting is not used from scratch: there it scored 0.5 to 1.5 points below the fixed
    weight on those volumes, while from a base with the parent prior it scored higher
    (RESULTS.md, "From a model: the copy's weight from the held-out errors").
    """
    copied, alone = check.get("copy_dice"), check.get("adapted_dice")
    if copied is not None and alone is not None:
        if copied < COPY_SHARE * alone:
            settings = replace(settings, weight=0.0)
            check["note"] += (f"; copying the nearest drawn slice scores below {COPY_SHARE:g} x "
                              "the model on the held-out slice, so the segmentation is the model "
                              "alone (drawn slices as drawn)")
        elif from_model:
            errors = 1.0 - alone, 1.0 - copied
            weight = min(settings.weight, errors[0] / max(TINY, sum(errors)))
            settings = replace(settings, weight=weight)
            check["note"] += (f"; the drawing's copy is fused with weight {weight:.2f}, by the "
                              "errors of the model and the copy on the held-out slice")
    check["fusion_weight"] = settings.weight
    return settings


def fused_segmentation(segmentation: Segmentation, annotations: Annotations, image: sitk.Image,
                       class_values: list[int], settings: FusionSettings) -> Segmentation:
    """`segmentation` (the adapted model on `image`, probabilities kept) fused with the drawing:
    labels with the classes' `class_values`, float16 probabilities, on `image`'s grid."""
    if segmentation.probabilities is None:
        raise ArcosegError("Fusion needs the model's probabilities (keep_probabilities=True).")
    spacing_zyx = tuple(reversed(image.GetSpacing()))
    fused = fuse(segmentation.probabilities, annotations, spacing_zyx, settings)
    labels = np.asarray(class_values, np.uint8)[fused.argmax(axis=0)]
    return Segmentation(array_to_image(labels, image, np.uint8), fused)
