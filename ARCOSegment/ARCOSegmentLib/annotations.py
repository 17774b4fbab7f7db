"""The clinician's drawing as Adapt's input, with numpy only (no Slicer): which slices were
annotated along which axis (the engine's rule: `arcoseg.adapt.annotations`), the partial label
map (class indices on annotated slices, UNANNOTATED elsewhere), slice lists typed by users and
the panel's summary line. Arrays are (K, J, I); array axis 0 is K.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ARCOSegmentLib.conversions import axis_orientation

UNANNOTATED = 255  # voxels nobody annotated (the engine's IGNORE_LABEL): not background


@dataclass
class Annotations:
    """A partial label map for `adapt`: class indices on annotated slices, 255 elsewhere."""

    labels: np.ndarray
    axis: int
    slices: list[int]


def annotated_slices(mask: np.ndarray, axis: int) -> list[int]:
    """Indices of the slices along array axis `axis` that hold any non-zero voxel."""
    others = tuple(a for a in range(mask.ndim) if a != axis)
    return [int(i) for i in np.flatnonzero(np.any(mask, axis=others))]


def detect_axis(mask: np.ndarray) -> int:
    """The axis the annotations were drawn on: a 2D image's one slice, else the one with the
    fewest slices holding labels.

    ValueError when nothing is painted, when two or three axes tie (a small structure on
    adjacent slices), or when the fewest are every slice of a stack of several (14 adjacent
    coronal slices painted on a 12-slice stack touch all 12 axial ones, as painting every
    axial slice would): the engine's rules for maps without whole drawn slices
    (`arcoseg.adapt.annotations.detect_axis`). Guessing would send the other axes' undrawn
    voxels as background."""
    if not np.any(mask):
        raise ValueError("No voxel is annotated. Paint the structures on a few slices first.")
    flat = [axis for axis in range(3) if mask.shape[axis] == 1]
    if len(flat) == 1:  # a 2D image: a one-row line on it is still painted on its slice
        return flat[0]
    counts = [len(annotated_slices(mask, axis)) for axis in range(3)]
    fits = [axis for axis in range(3) if counts[axis] == min(counts)]
    if len(fits) > 1:
        axes = " and ".join("KJI"[a] for a in fits)
        raise ValueError(f"The painted voxels lie on as few slices along {axes} ({min(counts)} "
                         "each), so the axis they were drawn on is unclear. Choose it under "
                         "'Slice axis', or paint more of each slice.")
    best = fits[0]
    if 1 < counts[best] == mask.shape[best]:
        raise ValueError(f"The painted voxels lie on every slice along {'KJI'[best]} "
                         f"({counts[best]}): painted on each of them, or on as many adjacent "
                         "slices along another axis? Choose the axis under 'Slice axis'.")
    return best


def build_annotations(shape: Sequence[int], class_masks: Iterable[tuple[int, np.ndarray]],
                      axis: int | None = None, extra_slices: Iterable[int] = ()) -> Annotations:
    """Combine per-class masks into a partial label map.

    A slice is annotated when any class has voxels on it, or when it is in `extra_slices` (slices
    the user marked as reviewed, e.g. all background). On annotated slices unlabelled voxels are
    background (0); every other voxel is UNANNOTATED. Later classes win where masks overlap.
    """
    masks = [(int(index), np.asarray(mask, bool)) for index, mask in class_masks]
    for index, mask in masks:
        if mask.shape != tuple(shape):
            raise ValueError(f"Annotation mask of class {index} has shape {mask.shape}, "
                             f"expected {tuple(shape)}.")
    union = np.zeros(tuple(shape), bool)
    for _, mask in masks:
        union |= mask
    extra = sorted({int(s) for s in extra_slices})
    if axis is None:
        axis = detect_axis(union) if union.any() or not extra else 0
    if extra and (extra[0] < 0 or extra[-1] >= shape[axis]):
        raise ValueError(f"Slice numbers must be between 0 and {shape[axis] - 1} on axis {axis}.")
    slices = sorted(set(annotated_slices(union, axis)) | set(extra))
    if not slices:
        raise ValueError("No slice is annotated. Paint the structures on a few slices first.")
    labels = np.full(tuple(shape), UNANNOTATED, np.uint8)
    on_slice = [slice(None)] * 3
    on_slice[axis] = slices
    labels[tuple(on_slice)] = 0
    for index, mask in masks:
        labels[mask] = index
    return Annotations(labels, axis, slices)


def parse_slices(text: str) -> list[int]:
    """Slice numbers typed by a user: '12, 17 20-22' → [12, 17, 20, 21, 22]."""
    slices: set[int] = set()
    for token in filter(None, re.split(r"[,\s;]+", text.strip())):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", token)
        if not match:
            raise ValueError(f"'{token}' is not a slice number or range (e.g. 12, 17, 20-22).")
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first:
            raise ValueError(f"Range '{token}' runs backwards; write it as {last}-{first}.")
        slices.update(range(first, last + 1))
    return sorted(slices)


def describe_annotations(axis: int, slices: Sequence[int], ijk_to_ras: np.ndarray) -> str:
    """For the panel, e.g. '2 slices annotated along K (axial): 12, 17'."""
    count = f"{len(slices)} slice{'s' if len(slices) != 1 else ''}"
    plane = f"{'KJI'[axis]} ({axis_orientation(ijk_to_ras, axis)})"
    return f"{count} annotated along {plane}: {', '.join(map(str, slices))}"
