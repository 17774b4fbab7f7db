"""Preprocessing by a plan (`data.plan`: target spacing, normalisation): resampling,
normalisation, the preprocessed case (the cache of preprocessed cases: `data.cache`).

Training and inference share `preprocess_image`, so a model sees the same intensities and
spacing at both times. The plan is stored in the model file (`Plan.to_dict`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from arcoseg.constants import IGNORE_LABEL
from arcoseg.data.context import with_context_slices
from arcoseg.data.dataset import Case, DatasetInfo
from arcoseg.data.plan import Plan
from arcoseg.errors import InputError
from arcoseg.io.geometry import Grid, GridLike, check_same_geometry, grid_difference
from arcoseg.io.images import image_spacing_zyx, read_image, read_label, read_spacing_zyx
from arcoseg.progress import Reporter

SPACING_ATOL = 1e-3
_CT_SAMPLES_PER_CASE = 100_000  # foreground intensities kept per case for the CT statistics


@dataclass
class PreprocessedCase:
    """A case on the plan's grid: image (C, z, y, x) float32, label (z, y, x) uint8 classes."""

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    spacing_zyx: tuple[float, float, float]


def make_plan(dataset: DatasetInfo, dims: int, patch_size: Sequence[int],
              spacing: Sequence[float] | None = None, context_slices: int = 0,
              reporter: Reporter | None = None) -> Plan:
    """Plan from the train split: median spacing (unless given), the normalisation and the
    2.5D context (`context_slices`, 2D only).

    CT (a channel named 'CT'): clip to the 0.5/99.5 percentiles of the foreground intensities of
    the training cases and standardise with the clipped foreground's mean/std (nnU-Net's rule).
    """
    cases = dataset.split_cases("train")
    if spacing is None:
        spacings = [read_spacing_zyx(c.images[0]) for c in cases]
        spacing = tuple(float(s) for s in np.median(np.asarray(spacings), axis=0))
    plan = Plan(dims=dims, target_spacing=tuple(float(s) for s in spacing),  # type: ignore
                normalization="ct" if dataset.is_ct else "zscore",
                label_values=dataset.class_values, patch_size=tuple(int(p) for p in patch_size),
                context_slices=context_slices)
    if dataset.is_ct:
        foreground = [v for v, c in dataset.label_mapping().items() if c not in (0, IGNORE_LABEL)]
        plan.ct_clip, plan.ct_mean, plan.ct_std = _ct_statistics(cases, foreground, reporter)
    plan.validate()
    return plan


def _ct_statistics(cases: list[Case], foreground: list[int], reporter: Reporter | None
                   ) -> tuple[tuple[float, float], float, float]:
    rng = np.random.default_rng(0)
    samples = []
    for i, case in enumerate(cases, start=1):
        images = [read_image(p) for p in case.images]
        mask = None
        if case.label is not None:
            label = sitk.GetArrayFromImage(read_label(case.label, images[0],
                                                      reference_name=str(case.images[0])))
            mask = np.isin(label, foreground)
        for image in images:
            values = sitk.GetArrayFromImage(image)
            values = values[mask] if mask is not None else values.ravel()
            if values.size > _CT_SAMPLES_PER_CASE:
                values = rng.choice(values, _CT_SAMPLES_PER_CASE, replace=False)
            samples.append(values.astype(np.float64))
        if reporter is not None:
            reporter.progress(i, len(cases), "CT intensity statistics")
    voxels = np.concatenate(samples)
    if voxels.size == 0:
        raise InputError("The training cases contain no foreground voxels; CT intensity "
                         "statistics need labelled foreground. Check the label maps.")
    low, high = np.percentile(voxels, [0.5, 99.5])
    clipped = np.clip(voxels, low, high)
    return (float(low), float(high)), float(clipped.mean()), float(max(clipped.std(), 1e-8))


def normalize(array: np.ndarray, plan: Plan) -> np.ndarray:
    """Normalise a (C, z, y, x) array: z-score per channel, or CT clip + dataset mean/std.
    Returns a new float32 array (`array` is not changed)."""
    return normalize_in_place(np.array(array, dtype=np.float32), plan)


def normalize_in_place(array: np.ndarray, plan: Plan) -> np.ndarray:
    """`normalize` for a float32 (C, z, y, x) array the caller owns: no full-size temporary
    (segment's peak memory, training/benchmarks/segment_memory.py). Returns `array`."""
    # numpy rather than MONAI's NormalizeIntensity: that returns a MetaTensor and is ~4x slower.
    if plan.normalization == "ct":
        low, high = plan.ct_clip  # type: ignore[misc]
        np.clip(array, low, high, out=array)
        array -= np.float32(plan.ct_mean)
        array /= np.float32(max(plan.ct_std, 1e-8))  # type: ignore[type-var]
        return array
    for channel in array:
        mean, std = _mean_std(channel)
        channel -= mean
        channel /= max(std, np.float32(1e-8))
    return array


def _mean_std(values: np.ndarray, chunk: int = 1 << 20) -> tuple[np.float32, np.float32]:
    """Mean and standard deviation of a float32 array, accumulated in float64 a chunk at a
    time (np.std's float64 deviations would cost 8 bytes per voxel)."""
    flat = values.reshape(-1)
    mean = flat.mean(dtype=np.float64)
    squares = sum(float(np.square(flat[i:i + chunk] - mean).sum())
                  for i in range(0, flat.size, chunk))
    return np.float32(mean), np.float32(np.sqrt(squares / max(flat.size, 1)))


def resample(image: sitk.Image, spacing_zyx: Sequence[float], is_label: bool = False,
             in_plane_only: bool = False) -> sitk.Image:
    """Resample to `spacing_zyx` keeping the physical extent (linear; nearest for labels).

    `in_plane_only` keeps the z spacing (2D models). Returns `image` itself when the spacing
    already matches within 1e-3 mm. The new size is the extent over the new spacing, rounded:
    a grid point beyond the outermost voxel centres takes the nearest voxel's value (SimpleITK's
    nearest-neighbour extrapolation; its default, 0, is not a neutral intensity or label).
    """
    old = np.asarray(image.GetSpacing(), dtype=float)
    new = np.asarray(list(reversed(spacing_zyx)), dtype=float)
    if in_plane_only:
        new[2] = old[2]
    if np.allclose(old, new, rtol=0, atol=SPACING_ATOL):
        return image
    size = np.asarray(image.GetSize())
    new_size = np.maximum(np.round(size * old / new), 1).astype(int)
    # Same first edge: the first voxel centre moves by half the difference of the voxel sizes.
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    origin = np.asarray(image.GetOrigin()) + direction @ ((new - old) / 2)
    interpolator = sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear
    return sitk.Resample(image, [int(s) for s in new_size], sitk.Transform(), interpolator,
                         origin.tolist(), new.tolist(), image.GetDirection(), 0.0,
                         image.GetPixelID(), useNearestNeighborExtrapolator=True)


def resample_to_reference(image: sitk.Image, reference: GridLike,
                          interpolator: int = sitk.sitkLinear) -> sitk.Image:
    """Resample `image` onto the grid of `reference` (an image or a Grid; e.g. a prediction
    back to the input). Points beyond `image`'s outermost voxel centres take the nearest
    voxel's value: the model grid (`resample`) may end up to half a voxel short of the input's
    last voxel centres, whose class probabilities would otherwise all be 0 (labels forced to
    background, entropy 0)."""
    if grid_difference(reference, image) is None:
        return image
    grid = Grid.of(reference)
    return sitk.Resample(image, grid.size, sitk.Transform(), interpolator, grid.origin,
                         grid.spacing, grid.direction, 0.0, image.GetPixelID(),
                         useNearestNeighborExtrapolator=True)


def preprocess_image(channels: list[sitk.Image], plan: Plan,
                     names: Sequence[str] | None = None) -> tuple[np.ndarray, Grid]:
    """Resample and normalise the channels of one image.

    Returns the (C, z, y, x) float32 array (C * (2k + 1) channels with the plan's k context
    slices, `data.context`) and its grid (the plan's spacing) to map predictions back with
    `resample_to_reference`. One full-size array: each channel is resampled, copied in and
    released before the next.
    """
    names = list(names) if names is not None else [f"channel {i}" for i in range(len(channels))]
    for image, name in zip(channels[1:], names[1:]):
        check_same_geometry(channels[0], image, names[0], name)
    array, grid = None, None
    for c, channel in enumerate(channels):
        resampled = resample(channel, plan.target_spacing, in_plane_only=plan.dims == 2)
        if array is None:
            grid = Grid.of(resampled)
            array = np.empty((len(channels), *reversed(grid.size)), np.float32)
        array[c] = sitk.GetArrayViewFromImage(resampled)
        del resampled
    array = normalize_in_place(array, plan)  # type: ignore[arg-type]
    return with_context_slices(array, plan.context_slices), grid  # type: ignore[return-value]


def preprocess_case(case: Case, plan: Plan, dataset: DatasetInfo) -> PreprocessedCase:
    """Read, validate, resample and normalise one case; labels become contiguous classes."""
    names = [str(p) for p in case.images]
    channels = [read_image(p) for p in case.images]
    array, grid = preprocess_image(channels, plan, names)
    label = None
    if case.label is not None:
        mapping = dataset.label_mapping()
        label_img = read_label(case.label, channels[0], mapping.keys(), reference_name=names[0])
        label_img = resample_to_reference(label_img, grid, sitk.sitkNearestNeighbor)
        lut = np.full(256, IGNORE_LABEL, dtype=np.uint8)
        lut[list(mapping)] = list(mapping.values())
        label = lut[sitk.GetArrayViewFromImage(label_img)]
    return PreprocessedCase(case.id, array, label, image_spacing_zyx(grid))
