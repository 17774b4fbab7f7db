"""An input image on a model's grid, from its header alone: its size there, and the refusal of
images whose spacing is so far from the model's that segmenting them cannot work.

Nothing else bounds it: `preprocess_image` resamples to the plan's spacing whatever the ratio,
so a header in the wrong unit (NIfTI's xyzt_units saying metres for millimetres) turned a 6 KB
file into a grid needing gigabytes (the kernel's OOM kill, no message), and a spacing 100 times
finer than the model's into a 1 x 1 image segmented as all background, exit 0.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from arcoseg.data.orientation import slicing_order
from arcoseg.data.plan import Plan
from arcoseg.errors import InputError
from arcoseg.io.geometry import Grid, read_grid

# largest factor between an image's spacing and the model's along a resampled axis: units
# errors are 1000x; an Adapt child of a 2D model slicing along another axis may resample
# thick MR slices (10-12 mm) to the parent's in-plane spacing (0.3-0.5 mm): 20-40x
MAX_SPACING_RATIO = 64.0
# bytes per model-grid voxel of `segment` besides the input channels (float32 each) and the
# class probabilities (float16 each): a rough bound for the memory check
_WORK_BYTES = 16


def model_grid_size(grid: Grid, plan: Plan) -> tuple[int, int, int]:
    """(z, y, x) size of an image on `grid` once `preprocess_image` has put it on the plan's
    grid: its slicing axis first, then resampled (in-plane only for a 2D plan)."""
    size, spacing = _on_slicing_axis(grid, plan)
    target = np.asarray(plan.target_spacing, float)
    if plan.dims == 2:
        target[0] = spacing[0]
    return tuple(int(s) for s in np.maximum(np.round(size * spacing / target), 1))  # type: ignore[return-value]


def check_model_grid(grid: Grid, plan: Plan, channels: int, classes: int, source: str) -> None:
    """InputError unless an image on `grid` (from file `source`) can be segmented on the plan's
    grid: along every resampled axis its spacing within MAX_SPACING_RATIO of the model's, and
    the model grid small enough for this machine's memory."""
    spacing = _on_slicing_axis(grid, plan)[1]
    target = np.asarray(plan.target_spacing, float)
    axes = (1, 2) if plan.dims == 2 else (0, 1, 2)
    ratios = [spacing[a] / target[a] for a in axes]
    if max(ratios) > MAX_SPACING_RATIO or min(ratios) < 1 / MAX_SPACING_RATIO:
        raise InputError(
            f"{source} has a voxel spacing of {_mm(spacing[list(axes)])} mm where the model "
            f"works at {_mm(target[list(axes)])} mm: more than {MAX_SPACING_RATIO:g} times "
            "apart, so the model would see the anatomy at a size it never learnt. Check the "
            "image's header (a spacing in the wrong unit, e.g. NIfTI's units field), or use a "
            "model trained at a spacing near the image's.")
    size = model_grid_size(grid, plan)
    needed = math.prod(size) * (4 * channels + 2 * classes + _WORK_BYTES)
    memory = _physical_memory()
    if memory is not None and needed > memory:
        raise InputError(
            f"{source} on the model's grid ({'x'.join(map(str, size))} "
            f"voxels at {_mm(target[list(axes)])} mm) would need about {needed / 2**30:.1f} GiB "
            f"of memory, more than this machine's {memory / 2**30:.1f} GiB. Check the image's "
            "spacing, or crop it.")


def check_model_grids(images: Iterable[Path], plan: Plan, channels: int, classes: int) -> None:
    """`check_model_grid` for every image file from its header (a DICOM folder, whose grid
    shows only when read, is not checked)."""
    for path in images:
        grid = read_grid(path)
        if grid is not None:
            check_model_grid(grid, plan, channels, classes, str(path))


def _on_slicing_axis(grid: Grid, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    """(size, spacing) in (z, y, x) order with the plan's slicing axis first; a 2D grid as
    `read_image` makes it 3D (one slice of 1 mm)."""
    size, spacing = list(grid.size), list(grid.spacing)
    if len(size) == 2:
        size, spacing = size + [1], spacing + [1.0]
    order = list(slicing_order(plan.slice_axis))
    return (np.asarray(size[::-1], float)[order], np.asarray(spacing[::-1], float)[order])


def _physical_memory() -> int | None:
    """This machine's memory in bytes, where the system says (not on Windows)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _mm(values: np.ndarray) -> str:
    return " x ".join(f"{v:.3g}" for v in values)
