"""Adapt's inputs: the images with their drawn slices, read and checked, the plan, and both on
the plan's grid."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from arcoseg.adapt.request import AdaptRequest
from arcoseg.adapt.annotations import Annotations, hold_out, make_annotations, read_annotation_map
from arcoseg.adapt.parent import Parent
from arcoseg.constants import IGNORE_LABEL, INPUT_DIVISOR
from arcoseg.data.orientation import slicing_order, to_slicing_axis
from arcoseg.data.plan import Plan
from arcoseg.data.preprocess import PreprocessedCase, preprocess_image, resample
from arcoseg.errors import InputError
from arcoseg.io.images import array_to_image, read_image


MAX_PATCH = 128


@dataclass
class AnnotatedImage:
    """One image with its partial annotations (class indices, 255 = unannotated)."""

    path: Path
    image: sitk.Image
    annotations: Annotations  # the slices that train from the start
    held_out: Annotations | None = None

    @property
    def drawn_slices(self) -> list[int]:
        """Every slice the user drew, the held-out one included (`rejoin`'s slices, without
        building its label map)."""
        return sorted(self.annotations.slices + (self.held_out.slices if self.held_out else []))


def read_annotated(request: AdaptRequest, parent: Parent) -> list[AnnotatedImage]:
    """Read every image with its annotation map (label map or .seg.nrrd, matched to the parent's
    classes); all maps must share one slice axis."""
    if len(request.images) != len(request.annotations):
        raise InputError(f"{len(request.images)} --image but {len(request.annotations)} "
                         "--annotations: give one annotation label map per image.")
    items = []
    for image_path, label_path in zip(request.images, request.annotations):
        image = read_image(image_path)
        labels = read_annotation_map(label_path, image, str(image_path), parent.class_names,
                                     parent.class_values)
        items.append(AnnotatedImage(image_path, image, make_annotations(
            labels, len(parent.class_names), request.axis, request.slices,
            source=str(label_path))))
    axes = {item.annotations.axis for item in items}
    if len(axes) > 1:
        raise InputError(f"The annotations lie along different axes {sorted(axes)}; annotate "
                         "all images along one axis (or pass --axis).")
    if request.holdout:
        items[0].annotations, items[0].held_out = hold_out(items[0].annotations)
    return items


def make_plan(parent: Parent, items: list[AnnotatedImage], axis: int,
              context_slices: int = 0) -> Plan:
    """The parent's preprocessing (a 2D parent along the annotation axis; a 3D parent sees
    whole patches, so its orientation stays), or a 2D plan fitted to the image, with
    `context_slices` neighbours on each side as input channels (2.5D, `data.context`)."""
    oriented = to_slicing_axis(items[0].image, axis)
    if parent.metadata is not None:
        plan = Plan.from_dict(parent.metadata.plan)
        return replace(plan, slice_axis=axis) if plan.dims == 2 else plan
    spacing_zyx = tuple(reversed(oriented.GetSpacing()))
    size_yx = tuple(reversed(oriented.GetSize()))[1:]
    patch = tuple(min(MAX_PATCH, math.ceil(s / INPUT_DIVISOR) * INPUT_DIVISOR) for s in size_yx)
    return Plan(dims=2, target_spacing=spacing_zyx, normalization="zscore",
                label_values=parent.class_values, patch_size=patch, slice_axis=axis,
                context_slices=context_slices)


def on_plan(array: np.ndarray, item: AnnotatedImage, plan: Plan, is_label: bool,
            drawing: bool = True) -> np.ndarray:
    """A (z, y, x) map on `item`'s grid, oriented and resampled like the image for training
    (labels by nearest neighbour; a `drawing`'s slices, in 3D, first widened to the plan's
    voxel size along the drawn axis, `widen_drawn_slices`, so that none falls between
    samples)."""
    if is_label and drawing and plan.dims == 3:
        axis = item.annotations.axis
        image_mm = tuple(reversed(item.image.GetSpacing()))[axis]
        plan_mm = plan.target_spacing[slicing_order(plan.slice_axis).index(axis)]
        array = widen_drawn_slices(array, axis, plan_mm / image_mm)
    oriented = to_slicing_axis(array_to_image(array, item.image,
                                              np.uint8 if is_label else np.float32),
                               plan.slice_axis)
    resampled = resample(oriented, plan.target_spacing, is_label=is_label,
                         in_plane_only=plan.dims == 2)
    return sitk.GetArrayFromImage(resampled)


def widen_drawn_slices(labels: np.ndarray, axis: int, ratio: float) -> np.ndarray:
    """`labels` (z, y, x; IGNORE_LABEL where nothing was drawn) with each drawn slice copied onto
    the undrawn slices within half a plan voxel of it along `axis` (`ratio`: the plan's spacing
    over the image's along `axis`; nearer drawn slices first). Nearest-neighbour resampling to
    a grid `ratio` times coarser samples every `ratio`-th slice and would drop the drawn slices
    between its samples (every other one at `ratio` 2); widened, each keeps a plan slice, about
    where it was drawn. Returns `labels` itself when the plan is not coarser."""
    reach = math.ceil((ratio - 1) / 2) if ratio > 1 + 1e-3 else 0
    if reach == 0:
        return labels
    widened = np.moveaxis(labels.copy(), axis, 0)
    drawn = np.flatnonzero((widened != IGNORE_LABEL).any(axis=(1, 2)))
    for distance in range(1, reach + 1):
        for s in drawn:
            for n in (s - distance, s + distance):
                if 0 <= n < len(widened) and n not in drawn:
                    free = widened[n] == IGNORE_LABEL
                    widened[n][free] = widened[s][free]
    return np.ascontiguousarray(np.moveaxis(widened, 0, axis))


def preprocess_annotated(item: AnnotatedImage, plan: Plan) -> PreprocessedCase:
    """Orient along the annotation axis, resample and normalise; labels by nearest neighbour."""
    array, _ = preprocess_image([to_slicing_axis(item.image, plan.slice_axis)], plan)
    return PreprocessedCase(item.path.name, array,
                            on_plan(item.annotations.labels, item, plan, is_label=True),
                            tuple(plan.target_spacing))
