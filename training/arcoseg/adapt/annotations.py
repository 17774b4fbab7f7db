"""Which slices a clinician annotated, along which axis, and the partial label map they give."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from arcoseg.constants import IGNORE_LABEL
from arcoseg.errors import InputError
from arcoseg.io.images import read_label
from arcoseg.io.segnrrd import ClassSpec, is_seg_nrrd, read_segmentation


@dataclass
class Annotations:
    """Partial labels of one image: class indices on annotated slices, IGNORE_LABEL elsewhere."""

    labels: np.ndarray  # (z, y, x) uint8
    axis: int  # array axis the annotated slices are perpendicular to
    slices: list[int]  # annotated slice indices along `axis`


def along(axis: int, slices: list[int] | slice) -> tuple:
    """Index selecting `slices` along array `axis` of a (z, y, x) array."""
    index: list = [slice(None)] * 3
    index[axis] = slices
    return tuple(index)


def detect_axis(labels: np.ndarray, source: str = "The annotation label map") -> int:
    """The axis the slices were drawn on: a 2D image's one slice; in a map that marks
    unannotated voxels 255, the one axis whose touched slices are all annotated whole (as the
    Slicer module and the demo write them), if exactly one is; else the axis along which the
    labelled voxels occupy the fewest slices (drawn slices are thin along the axis they were
    drawn on and wide along the other two).

    InputError when no voxel is drawn, when two or three axes tie (e.g. a small structure on
    adjacent slices in a map without 255 marks), or when the fewest are every slice of a stack
    of several (14 adjacent coronal slices drawn on a 12-slice stack touch all 12 axial ones,
    as drawing every axial slice would): any of them could be the drawn one (a marked map
    drawn on two axes is named as such, `check_one_axis`). The Slicer module applies the same
    rules to what was painted (ARCOSegmentLib.annotations.detect_axis)."""
    drawn = _drawn(labels)
    if not drawn.any():
        raise InputError(f"{source} holds no label. Draw at least one slice.")
    flat = [axis for axis in range(3) if labels.shape[axis] == 1]
    if len(flat) == 1:  # a 2D image: a one-row line on it is still drawn on its slice
        return flat[0]
    occupied = [annotated_slices(labels, axis) for axis in range(3)]
    marked = bool((labels == IGNORE_LABEL).any())  # else drawn = foreground: no whole slices
    whole = [axis for axis in range(3)
             if marked and all(drawn[along(axis, [i])].all() for i in occupied[axis])]
    if len(whole) == 1:
        return whole[0]
    fewest = min(len(slices) for slices in occupied)
    fits = [axis for axis in range(3) if len(occupied[axis]) == fewest]
    if len(fits) > 1:
        found = [f"axis {a} (slices {_short(occupied[a])})" for a in fits]
        raise InputError(f"{source}: the drawn voxels lie on as few slices along "
                         f"{', '.join(found[:-1])} and {found[-1]}, so Adapt cannot tell which "
                         f"axis they were drawn on. Give --axis {' or '.join(map(str, fits))}, "
                         "or draw more of each slice.")
    if 1 < fewest == labels.shape[fits[0]]:
        if marked:  # slices drawn along two axes cross every slice: say that instead
            check_one_axis(labels, fits[0], occupied[fits[0]], source, given_axis=False)
        raise InputError(f"{source}: the drawn voxels lie on every slice along axis {fits[0]} "
                         f"({fewest}): drawn on each of them, or on as many adjacent slices "
                         "along another axis? Give --axis"
                         + ("." if marked else ", or mark the undrawn voxels 255."))
    return fits[0]


def annotated_slices(labels: np.ndarray, axis: int) -> list[int]:
    """Slices along `axis` holding any label (explicitly unannotated voxels are 255)."""
    drawn = _drawn(labels)
    others = tuple(a for a in range(3) if a != axis)
    return [int(i) for i in np.flatnonzero(drawn.any(axis=others))]


def _drawn(labels: np.ndarray) -> np.ndarray:
    """Voxels that carry an annotation: any non-255 value if the map marks unannotated voxels
    with 255, else any foreground label (a 0/1…n map cannot tell background from unannotated)."""
    if (labels == IGNORE_LABEL).any():
        return labels != IGNORE_LABEL
    return labels > 0


def read_annotation_map(path: Path, image: sitk.Image, image_name: str,
                        class_names: Sequence[str], class_values: Sequence[int]) -> np.ndarray:
    """(z, y, x) class indices of an annotation file on `image`'s grid: a label map of class
    indices (255 = unannotated), or a Slicer .seg.nrrd whose segments are matched to the classes
    (`class_names`/`class_values`, background first) by name, then by value, its cropped extent
    put back on the image's grid. InputError for a file that does not fit the image or model."""
    if is_seg_nrrd(path):
        classes = [ClassSpec(n, int(v)) for n, v in zip(class_names[1:], class_values[1:])]
        return sitk.GetArrayFromImage(read_segmentation(path, classes, reference=image))
    labels = sitk.GetArrayFromImage(read_label(path, reference=image, partial=True,
                                               reference_name=image_name))
    _check_class_indices(labels, path, class_names, class_values)
    return labels


def _check_class_indices(labels: np.ndarray, path: Path, class_names: Sequence[str],
                         class_values: Sequence[int]) -> None:
    """InputError, with each class's index and label value, when a model's label values are not
    its class indices (a dataset with gaps: 0, 2, 5) and the annotation map holds a value that
    is no class index: it was drawn with the label values (e.g. an edited `segment` output),
    which annotation maps do not use (the Slicer module writes indices; a .seg.nrrd is matched
    by segment name)."""
    if list(class_values) == list(range(len(class_values))):
        return
    values = set(np.unique(labels).tolist()) - {IGNORE_LABEL}
    bad = sorted(v for v in values if v >= len(class_names))
    if bad:
        pairs = ", ".join(f"{name} = {i} (label value {value})" for i, (name, value)
                          in enumerate(zip(class_names, class_values)) if i)
        raise InputError(f"{path} holds value(s) {bad}, which are no class index of this model. "
                         "Annotation label maps hold class indices, not the model's label "
                         f"values: {pairs}; 0 = background, {IGNORE_LABEL} = unannotated. "
                         "Relabel the map to the indices, or draw a .seg.nrrd (its segments are "
                         "matched by name).")


def make_annotations(labels: np.ndarray, num_classes: int, axis: int | None = None,
                     slices: list[int] | None = None, source: str = "annotations") -> Annotations:
    """Build the partial label map: keep the annotated slices, mark every other voxel 255.

    `num_classes` counts background; values must be 0…num_classes-1 (or 255).
    """
    values = set(np.unique(labels).tolist()) - {IGNORE_LABEL}
    bad = sorted(v for v in values if v >= num_classes)
    if bad:
        raise InputError(f"{source} holds label value(s) {bad}, but the model has classes "
                         f"1…{num_classes - 1} (0 = background). Relabel or choose another model.")
    given_axis = axis is not None
    axis = detect_axis(labels, source) if axis is None else axis
    if axis not in (0, 1, 2):
        raise InputError(f"--axis must be 0, 1 or 2 (array axes z, y, x), not {axis}.")
    given_slices = slices is not None
    slices = annotated_slices(labels, axis) if slices is None else sorted(set(slices))
    size = labels.shape[axis]
    outside = [s for s in slices if not 0 <= s < size]
    if outside:
        raise InputError(f"Slice(s) {outside} are outside {source} (axis {axis} has {size} slices).")
    if given_slices and (labels == IGNORE_LABEL).any():
        undrawn = [s for s in slices if (labels[along(axis, [s])] == IGNORE_LABEL).all()]
        if undrawn:
            raise InputError(f"--slices {undrawn} of {source} hold no annotation (every voxel "
                             f"{IGNORE_LABEL}, unannotated); the annotated slices along axis "
                             f"{axis} are {annotated_slices(labels, axis)}. Give --slices from "
                             "those, or leave --slices out.")
    if not slices:
        raise InputError(f"No annotated slice found in {source}.")
    check_one_axis(labels, axis, slices, source, given_axis)
    partial = np.full_like(labels, IGNORE_LABEL, dtype=np.uint8)
    partial[along(axis, slices)] = labels[along(axis, slices)]
    if not ((partial > 0) & (partial != IGNORE_LABEL)).any():
        raise InputError(f"{source} holds only background (0) on its annotated slices {slices} "
                         f"along axis {axis}: no class is drawn, so there is nothing to learn "
                         "from. Draw at least one structure on a slice, or give this image "
                         "with --unlabelled instead.")
    return Annotations(partial, axis, slices)


def check_one_axis(labels: np.ndarray, axis: int, slices: list[int], source: str,
                   given_axis: bool) -> None:
    """InputError when 2 or more of `slices` along `axis` are only cuts through slices drawn
    along another axis: every drawn voxel in them is a 1-voxel-thin line across that other axis.

    Such slices come from drawings on two axes (the other axis's slices cross every slice along
    `axis`), or from an --axis that is not the one drawn on; taking them for annotated slices
    would make every undrawn voxel on them background.
    """
    drawn = _drawn(labels)
    for other in (a for a in range(3) if a != axis):
        cuts = [i for i in slices if _thin_across(drawn[along(axis, [i])], other)]
        if len(cuts) < 2:
            continue
        cut_voxels = np.zeros_like(drawn)
        cut_voxels[along(axis, cuts)] = drawn[along(axis, cuts)]
        crossing = annotated_slices(np.where(cut_voxels, 1, 0), other)
        off_crossing = drawn.copy()
        off_crossing[along(other, crossing)] = False
        others = tuple(a for a in range(3) if a != axis)
        drawn_here = [i for i in slices if off_crossing[along(axis, [i])].any(axis=others)[0]]
        cuts = [i for i in slices if i not in drawn_here]  # also the tips of the crossing
        if not drawn_here:
            what = f"--axis {axis} does not fit {source}" if given_axis else str(source)
            raise InputError(f"{what}: its slices along axis {axis} only cut through slices "
                             f"drawn along axis {other} (slices {_short(crossing)}). Use --axis "
                             f"{other}{', or leave --axis out' if given_axis else ''}.")
        raise InputError(f"{source} holds slices drawn along two axes: along axis {axis} "
                         f"slice(s) {_short(drawn_here)}, and along axis {other} slice(s) "
                         f"{_short(crossing)} (which cross slices {_short(cuts)} of axis "
                         f"{axis}). Draw every slice along one axis (e.g. all axial) and try "
                         "again.")


def _thin_across(drawn: np.ndarray, axis: int) -> bool:
    """Whether `drawn` (a (z, y, x) mask, one slice thick along another axis) holds 2 or more
    voxels, each without a drawn neighbour along `axis`: lines 1 voxel thin across `axis`."""
    if drawn.sum() < 2:
        return False
    padded = np.pad(drawn, [(1, 1) if a == axis else (0, 0) for a in range(3)])
    before = padded[along(axis, slice(0, -2))]
    after = padded[along(axis, slice(2, None))]
    return not (drawn & (before | after)).any()


def _short(values: list[int], limit: int = 12) -> str:
    """'3, 5, 7' (at most `limit` values, then '… (N in all)')."""
    text = ", ".join(str(v) for v in values[:limit])
    return text if len(values) <= limit else f"{text}, … ({len(values)} in all)"


def hold_out(annotations: Annotations) -> tuple[Annotations, Annotations | None]:
    """Split off one annotated slice for the held-out check: the middle one of those that hold
    a foreground class (a slice drawn all background could not score the model: Dice skips
    classes absent from the drawing).

    Returns (training annotations, held-out annotations), or (all, None) with a single slice.
    """
    if len(annotations.slices) < 2:
        return annotations, None
    middle = len(annotations.slices) // 2
    labels = annotations.labels
    scorable = [i for i, s in enumerate(annotations.slices)
                if np.isin(labels[along(annotations.axis, [s])], (0, IGNORE_LABEL),
                           invert=True).any()]
    held = annotations.slices[min(scorable or [middle], key=lambda i: (abs(i - middle), i))]
    keep = [s for s in annotations.slices if s != held]
    index = along(annotations.axis, [held])
    train = annotations.labels.copy()
    train[index] = IGNORE_LABEL
    test = np.full_like(annotations.labels, IGNORE_LABEL)
    test[index] = annotations.labels[index]
    return (Annotations(train, annotations.axis, keep),
            Annotations(test, annotations.axis, [held]))


def rejoin(train: Annotations, held_out: Annotations | None) -> Annotations:
    """Every drawn slice again: `train` with the `held_out` slice put back (`hold_out`'s
    inverse; `train` itself when nothing was held out)."""
    if held_out is None:
        return train
    labels = np.where(held_out.labels != IGNORE_LABEL, held_out.labels, train.labels)
    return Annotations(labels.astype(train.labels.dtype), train.axis,
                       sorted(train.slices + held_out.slices))
