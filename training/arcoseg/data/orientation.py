"""Reorienting volumes so that a 2D model can slice along any array axis.

A 2D model always slices along array axis 0. To train or predict along axis 1 (coronal-like) or
2 (sagittal-like), the volume is permuted so that axis comes first; SimpleITK's PermuteAxes keeps
every voxel at its physical position, and the inverse permutation maps results back exactly.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def slicing_order(axis: int) -> tuple[int, int, int]:
    """Array axis order that puts `axis` first and keeps the other two in order."""
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, not {axis}")
    return (axis, *(a for a in range(3) if a != axis))  # type: ignore[return-value]


def to_slicing_axis(image: sitk.Image, axis: int) -> sitk.Image:
    """The same image with array axis `axis` moved first (physical positions unchanged)."""
    if axis == 0:
        return image
    order = slicing_order(axis)
    # SimpleITK indexes (x, y, z): sitk dimension d is array axis 2 - d.
    return sitk.PermuteAxes(image, [2 - order[2 - d] for d in range(3)])


def array_from_slicing_axis(array: np.ndarray, axis: int) -> np.ndarray:
    """Undo `to_slicing_axis` on the last three axes of an array (e.g. labels or probabilities)."""
    if axis == 0:
        return array
    lead = array.ndim - 3
    inverse = np.argsort(slicing_order(axis))
    return np.transpose(array, (*range(lead), *(lead + int(a) for a in inverse)))
