"""What a Slicer user gets without a model: copy the nearest drawn slice, or "Fill between slices".

Both take the clinician's drawing — a (z, y, x) label map with class indices on the drawn slices
along `axis` — and fill the slices nobody drew. They are the baselines Adapt must beat
(training/benchmarks/adapt_benchmark.py) and the propagation prior Adapt trains with
(`arcoseg.adapt.prior`).
"""

from __future__ import annotations

import importlib.util

import numpy as np

from arcoseg.adapt.annotations import along
from arcoseg.constants import IGNORE_LABEL
from arcoseg.errors import ArcosegError, check_choice

INTERPOLATION_PACKAGE = "itk-morphologicalcontourinterpolation"
_MISSING_INTERPOLATION = (f"Interpolation needs the optional package {INTERPOLATION_PACKAGE}: "
                          f"pip install 'arcoseg[bench]' (or {INTERPOLATION_PACKAGE}).")


def slice_distance(size: int, slices: list[int]) -> np.ndarray:
    """(size,) distance of every slice index to the nearest of `slices` (0 on drawn slices)."""
    if not slices:
        raise ArcosegError("No drawn slice to measure distances from.")
    index = np.arange(size)[:, None]
    return np.abs(index - np.asarray(sorted(slices))[None, :]).min(axis=1)


def nearest_slices(size: int, slices: list[int]) -> np.ndarray:
    """(size,) the drawn slice each slice index copies from; ties go to the lower drawn slice."""
    drawn = np.asarray(sorted(slices))
    return drawn[np.abs(np.arange(size)[:, None] - drawn[None, :]).argmin(axis=1)]


def nearest_copy(drawn: np.ndarray, axis: int, slices: list[int]) -> np.ndarray:
    """Every slice along `axis` takes the labels of the nearest drawn slice.

    drawn: (z, y, x) labels (only the `slices` along `axis` are read); returns a (z, y, x) copy
    of its dtype with every slice filled.
    """
    source = nearest_slices(drawn.shape[axis], slices)
    return np.take(drawn, source, axis=axis)


def interpolate(drawn: np.ndarray, axis: int, slices: list[int]) -> np.ndarray:
    """Morphological contour interpolation between the drawn slices (Slicer's "Fill between
    slices": ITK's MorphologicalContourInterpolator, Albu et al. 2008, Zukić et al. 2016).

    Like Slicer, each class is interpolated on its own between the drawn slices that hold it
    (later classes win where two overlap) and nothing
    is extrapolated beyond the outermost ones (those slices stay background). drawn: (z, y, x)
    labels; returns (z, y, x) uint8. Raises ArcosegError when the optional
    `itk-morphologicalcontourinterpolation` wheel is missing.
    """
    try:
        import itk
    except ImportError as err:
        raise ArcosegError(_MISSING_INTERPOLATION) from err
    itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(1)  # see _interpolate_class
    source = np.zeros(drawn.shape, np.uint8)
    source[along(axis, slices)] = drawn[along(axis, slices)]
    source[source == IGNORE_LABEL] = 0  # an unannotated mark inside a drawn slice is no class
    filled = np.zeros_like(source)
    for value in np.unique(source[source > 0]):
        filled[_interpolate_class(itk, source == value, axis)] = value
    filled[along(axis, slices)] = source[along(axis, slices)]
    return filled


def _interpolate_class(itk, mask: np.ndarray, axis: int) -> np.ndarray:
    """One class as a binary mask, as Slicer fills each segment on its own: with every label of
    a map at once, ITK's filter leaves a class enclosed by another (the LV blood pool inside the
    myocardium) empty between the drawn slices. One ITK thread: with its thread pool beside
    torch's, processes sometimes crashed on exit (heap corruption)."""
    image = itk.image_from_array(np.ascontiguousarray(mask.astype(np.uint8)))
    result = itk.morphological_contour_interpolator(image, axis=2 - axis)  # ITK axes: x, y, z
    return itk.array_from_image(result) > 0


BASELINES = {"nearest": nearest_copy, "interpolate": interpolate}
PROPAGATIONS = tuple(BASELINES)  # how the drawing is carried to the other slices


def propagate_labels(drawn: np.ndarray, axis: int, slices: list[int], mode: str) -> np.ndarray:
    """Every slice along `axis` filled from the drawing, (z, y, x) uint8: `mode` 'nearest'
    copies the nearest drawn slice; 'interpolate' fills between the outermost drawn slices by
    `interpolate` and copies the nearest drawn slice beyond them (where Slicer leaves nothing;
    with one drawn slice, the copy everywhere). Voxels left unannotated (IGNORE_LABEL) inside
    a drawn slice stay IGNORE_LABEL on it and wherever it is the nearest drawn slice: nobody
    said what they are. Raises ArcosegError for an unknown mode, or as `interpolate` does."""
    check_choice(mode, PROPAGATIONS, "propagation")
    labels = nearest_copy(drawn, axis, slices).astype(np.uint8)
    if mode == "interpolate" and len(set(slices)) > 1:
        inside = along(axis, list(range(min(slices), max(slices) + 1)))
        filled = interpolate(drawn, axis, slices)[inside]
        labels[inside] = np.where(labels[inside] == IGNORE_LABEL, IGNORE_LABEL, filled)
    return labels


def check_interpolation() -> None:
    """Raise ArcosegError (with the install command) when `interpolate`'s optional package is
    missing, before any long work that would need it."""
    if importlib.util.find_spec("itk") is None:
        raise ArcosegError(_MISSING_INTERPOLATION)
