"""2.5D input: a 2D model sees each slice with its neighbours as extra channels.

A 2D network segments one slice at a time and so cannot see how a structure continues into the
slices above and below; given the `k` neighbouring slices on each side as extra input channels
(the usual "2.5D" input of slice-wise medical segmentation networks) it can, at the cost of a
wider first convolution only. The neighbours are stacked once, on the preprocessed volume
(`Plan.context_slices`), so training batches, inference and Adapt all read the same channels.
"""

from __future__ import annotations

import numpy as np


def with_context_slices(array: np.ndarray, k: int) -> np.ndarray:
    """(C, z, y, x) -> (C * (2k + 1), z, y, x): channel c * (2k + 1) + j of slice z holds
    channel c of slice z + j - k, 0 (the mean after normalisation) beyond the first and last
    slice. `k` = 0 returns `array` itself. float32 in, float32 out; (2k + 1) times the memory."""
    if k == 0:
        return array
    channels, depth = array.shape[:2]
    out = np.zeros((channels, 2 * k + 1, *array.shape[1:]), np.float32)
    for j in range(2 * k + 1):
        shift = j - k  # out[:, j, z] = array[:, z + shift]
        lo, hi = max(0, -shift), min(depth, depth - shift)
        if lo < hi:  # else every neighbour at this shift lies beyond the volume: zeros
            out[:, j, lo:hi] = array[:, lo + shift:hi + shift]
    return out.reshape(channels * (2 * k + 1), *array.shape[1:])
