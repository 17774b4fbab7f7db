"""The demo pipeline: simulate a clinician drawing a few slices, adapt, segment, evaluate, report.

It runs the product's real `adapt` on any image with full labels (the MNI brain by default, a
synthetic phantom in the tests), scoring the result against the labels the clinician did not draw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import SimpleITK as sitk
import torch

from arcoseg.adapt.annotations import along
from arcoseg.adapt.run import AdaptRequest, adapt
from arcoseg.constants import DEMO_BUDGET, DEMO_ITERATIONS, IGNORE_LABEL
from arcoseg.demo.folder import (ANNOTATIONS_FILE, EVALUATION, IMAGE_FILE, INPUTS, LABELS_FILE,
                                 OVERLAY, REGISTRY, REPORT_NAME, REPORT_TITLE, SEGMENTATION)
from arcoseg.errors import InputError
from arcoseg.evaluation.evaluate import evaluate, format_summary_table
from arcoseg.evaluation.plots import save_overlay_png
from arcoseg.fileutil import write_text_atomic
from arcoseg.io.images import array_to_image, write_image
from arcoseg.model_metadata import default_colors
from arcoseg.progress import Reporter
from arcoseg.train.validation import class_dice



def pick_slices(labels: np.ndarray, axis: int, count: int) -> list[int]:
    """`count` slices spread evenly through the labelled extent along `axis` (as a clinician
    would: through the structure, not at its edges); InputError if it has fewer slices."""
    others = tuple(a for a in range(3) if a != axis)
    present = np.flatnonzero((labels > 0).any(axis=others))
    lo, hi = int(present.min()), int(present.max())
    if count > hi - lo + 1:
        raise InputError(f"--slices {count}: the structures span {hi - lo + 1} slices along "
                         f"axis {axis}. Give --slices {hi - lo + 1} or fewer.")
    inside = [int(round(lo + (hi - lo) * (i + 1) / (count + 1))) for i in range(count)]
    if len(set(inside)) == count:
        return inside
    # too many to fit inside: steps of at least one slice from edge to edge (floor(x + 0.5),
    # not round's ties to even, so that no two fall on one slice)
    return [lo + int((hi - lo) * i / max(count - 1, 1) + 0.5) for i in range(count)]


def simulate_annotations(labels: np.ndarray, axis: int, slices: list[int]) -> np.ndarray:
    """The clinician's drawing: full labels on `slices`, every other voxel unannotated (255)."""
    drawn = np.full_like(labels, IGNORE_LABEL)
    drawn[along(axis, slices)] = labels[along(axis, slices)]
    return drawn


def unannotated_dice(prediction: np.ndarray, labels: np.ndarray, axis: int, slices: list[int],
                     num_classes: int) -> list[float]:
    """Dice per foreground class on the slices nobody drew (what adaptation had to infer)."""
    gt = labels.copy()
    gt[along(axis, slices)] = IGNORE_LABEL
    return [float(d) for d in class_dice(torch.from_numpy(prediction.astype(np.int64)),
                                         torch.from_numpy(gt.astype(np.int64)), num_classes)]


def run_demo(image: sitk.Image, labels: sitk.Image, class_names: list[str], out: Path,
             reporter: Reporter, stop: Callable[[], bool], *, slices: int = 3, axis: int = 0,
             budget: float = DEMO_BUDGET, iterations: int = DEMO_ITERATIONS,
             device: str = "auto",
             notice: str = "") -> dict[str, Any]:
    """Annotate `slices` slices, adapt from scratch, segment, evaluate, write overlay + report."""
    label_array = sitk.GetArrayFromImage(labels)
    chosen = pick_slices(label_array, axis, slices)
    inputs = out / INPUTS
    write_image(image, inputs / IMAGE_FILE)
    write_image(labels, inputs / LABELS_FILE)
    write_image(array_to_image(simulate_annotations(label_array, axis, chosen), labels, np.uint8),
                inputs / ANNOTATIONS_FILE)
    reporter.log(f"Simulated clinician: annotated slices {chosen} along axis {axis}")
    request = AdaptRequest(images=[inputs / IMAGE_FILE],
                           annotations=[inputs / ANNOTATIONS_FILE], classes=class_names[1:],
                           name="demo", axis=axis, budget=budget, iterations=iterations,
                           output=out / SEGMENTATION, device=device, home=out / REGISTRY)
    result = adapt(request, reporter, stop)
    prediction = sitk.GetArrayFromImage(sitk.ReadImage(str(out / SEGMENTATION)))
    classes = {n: v for v, n in enumerate(class_names) if v}
    summary = evaluate(out / SEGMENTATION, inputs / LABELS_FILE, classes, out / EVALUATION)
    unseen = unannotated_dice(prediction, label_array, axis, chosen, len(class_names))
    overlay_slices = sorted({*result["suggested_slices"][:2], chosen[0]})
    save_overlay_png(_axis_first(sitk.GetArrayFromImage(image), axis),
                     _axis_first(prediction, axis), out / OVERLAY,
                     colors=default_colors(len(class_names)),
                     gt_zyx=_axis_first(label_array, axis), slices=overlay_slices,
                     title="adapted model (top) vs full labels (bottom)")
    report = _report(class_names, chosen, axis, result, summary, unseen, notice)
    write_text_atomic(out / REPORT_NAME, report)
    reporter.log(report)
    return {"report": str(out / REPORT_NAME), "overlay": str(out / OVERLAY),
            "segmentation": str(out / SEGMENTATION), "annotated_slices": chosen,
            "dice_unannotated": dict(zip(class_names[1:], unseen)),
            "suggested_slices": result["suggested_slices"], "heldout": result["heldout"],
            "iterations": result["iterations"], "seconds": result["seconds"],
            "model": result["model"]["ref"] if "ref" in result["model"] else result["model"]}


def _axis_first(array: np.ndarray, axis: int) -> np.ndarray:
    return np.moveaxis(array, axis, 0)


def _report(class_names: list[str], chosen: list[int], axis: int, result: dict[str, Any],
            summary: dict[str, Any], unseen: list[float], notice: str) -> str:
    held = result["heldout"]
    joined = held.get("joined_training_at")
    lines = [REPORT_TITLE, "",
             f"- Annotated slices (axis {axis}): {chosen} — one held out for the check "
             f"(slice {held['slice']}"
             + (f", trained on from iteration {joined}, after the check's snapshot" if joined
                else "") + "), the rest used for training; every other slice unlabelled.",
             f"- Training: {result['iterations']} iterations in {result['seconds']} s "
             "(ARCO, stratified group sampling).",
             f"- Held-out slice Dice of the adapted model: {_pct(held['adapted_dice'])}; "
             f"of the model fused with the drawing: {_pct(held.get('output_dice'))}; "
             f"copying the nearest annotated slice onto it: {_pct(held.get('copy_dice'))}"
             f"{'' if held['activated'] else ' (model saved, not activated)'}; "
             f"the segmentation written: {_written(held)}.",
             "- Dice on the slices nobody annotated: " + ", ".join(
                 f"{n} {_pct(d)}" for n, d in zip(class_names[1:], unseen)) + ".",
             f"- Next slices to annotate: {result['suggested_slices']}.", "",
             "## Whole volume against the full labels", "", format_summary_table(summary)]
    if notice:
        lines += ["", "## Data notice", "", notice]
    return "\n".join(lines) + "\n"


def _pct(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.1f} %"


def _written(held: dict) -> str:
    """Which segmentation Adapt wrote, from its held-out check (`adapt.fusion.checked_fusion`)."""
    weight = held.get("fusion_weight")
    if weight is None:
        return "n/a"
    return ("the model alone (the copy is far worse than the model here)" if weight == 0
            else f"the model fused with the drawing (weight {weight:g})")
