"""Evaluate predicted label maps against ground truth: per-case CSV, summary JSON and Markdown.

Outputs of `evaluate` in `out_dir`:
- `metrics_per_case.csv`: one row per case per class (case, class, dice, jaccard, hd95_vox, ...).
- `summary.json`: mean ± std over cases per class and metric, plus the "mean" over classes.
- `summary.md`: the same as a Markdown table (Dice and Jaccard in %).
NaN (a class absent from both prediction and ground truth) is left out of every mean.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import SimpleITK as sitk

from arcoseg.constants import IGNORE_NAME
from arcoseg.errors import Cancelled, InputError
from arcoseg.evaluation.metrics import METRICS, case_metrics
from arcoseg.fileutil import write_text_atomic
from arcoseg.io.image_files import READABLE_SUFFIXES
from arcoseg.io.images import image_spacing_zyx, read_label
from arcoseg.io.inputs import list_images
from arcoseg.io.names import case_id, unique_case_ids
from arcoseg.io.outputs import check_output_file, check_output_folder
from arcoseg.io.segnrrd import SUFFIX as SEG_NRRD
from arcoseg.io.segnrrd import ClassSpec, is_seg_nrrd, read_segmentation
from arcoseg.progress import Reporter

StopCheck = Callable[[], bool]  # true once the run should stop (Ctrl-C, a serve cancel)

CSV_NAME, SUMMARY_JSON, SUMMARY_MD = "metrics_per_case.csv", "summary.json", "summary.md"
# the summary table's last row; not "mean", which a class may be called (two rows "mean")
MEAN_ROW = "all classes (mean)"

Row = dict[str, Any]


def _cases_in(folder: Path) -> dict[str, Path]:
    """{case id: file} for the image files in `folder`; InputError if two files share an id."""
    segmentations = sorted(p for p in folder.iterdir() if p.is_file() and is_seg_nrrd(p))
    return unique_case_ids(sorted([*list_images(folder), *segmentations]), "Files")


def pair_files(pred: Path, gt: Path, reporter: Reporter | None = None
               ) -> list[tuple[str, Path, Path]]:
    """(case id, prediction file, ground-truth file) for two files or two folders.

    Folders are matched by case id (see `case_id`); predictions without ground truth are not
    scored (`reporter` is told which, and when PRED is GT itself: every score a perfect 1.0).
    Raises InputError for missing paths, a file paired with a folder, or missing predictions.
    """
    pred, gt = Path(pred), Path(gt)
    for path, what in ((pred, "Prediction"), (gt, "Ground-truth")):
        if not path.exists():
            raise InputError(f"{what} path {path} does not exist. Check the path.")
    if os.path.samefile(pred, gt) and reporter is not None:
        kind = "folder" if gt.is_dir() else "file"
        reporter.log(f"Warning: the predictions and the ground truth are the same {kind} "
                     f"({gt}): every case scores a perfect 1.0 against itself.")
    if pred.is_file() and gt.is_file():
        return [(case_id(gt), pred, gt)]
    if not (pred.is_dir() and gt.is_dir()):
        raise InputError(f"Give two files or two folders to compare, got {pred} and {gt}.")
    preds, gts = _cases_in(pred), _cases_in(gt)
    if not gts:
        suffixes = ", ".join((*READABLE_SUFFIXES, SEG_NRRD))
        raise InputError(f"No label files ({suffixes}) in ground-truth folder {gt}. "
                         "Check the path.")
    missing = sorted(set(gts) - set(preds))
    if len(missing) == len(gts):
        raise InputError(f"No prediction in {pred} matches a ground-truth case in {gt} "
                         f"(e.g. '{missing[0]}'). Predictions must be named like the ground truth.")
    if missing:
        raise InputError(f"{len(missing)} ground-truth case(s) in {gt} have no prediction in "
                         f"{pred}: {', '.join(missing)}. Segment them first or remove them from "
                         "the ground-truth folder.")
    unscored = sorted(set(preds) - set(gts))
    if unscored and reporter is not None:
        reporter.log(f"{len(unscored)} prediction(s) in {pred} have no ground truth in {gt} and "
                     f"are not scored: {', '.join(unscored)}.")
    return [(cid, preds[cid], gts[cid]) for cid in gts]


def _infer_classes(gt_paths: Iterable[Path]) -> dict[str, int]:
    """Classes named "1", "2", … from the foreground values found in the ground-truth files."""
    found: set[int] = set()
    for path in gt_paths:
        if is_seg_nrrd(path):
            raise InputError(f"{path} is a Slicer segmentation: give the classes with --labels "
                             "(a model folder, a dataset.json or 'name=value,…') so that its "
                             "segments can be matched to the prediction's label values.")
        found.update(np.unique(sitk.GetArrayFromImage(read_label(path))).tolist())
    values = sorted(found - {0})
    if not values:
        raise InputError("The ground-truth label maps contain no foreground class. "
                         "Check that the right folder was given.")
    return {str(v): v for v in values}


def evaluate_pairs(pairs: list[tuple[str, Path, Path]], classes: dict[str, int] | None,
                   reporter: Reporter | None = None, should_stop: StopCheck = lambda: False
                   ) -> list[Row]:
    """Metrics rows (case, class, *METRICS) for each (case id, prediction, ground truth) pair.

    `classes` maps names to label values; None infers them from the ground-truth files. A
    class named 'ignore' (nnU-Net's partial labels) is not scored: its ground-truth voxels are
    left out of every class's metrics. Prediction and ground truth must be on the same grid
    and hold only background (0) and the classes' values (InputError naming the file and the
    values otherwise). Cancelled (before the next case) once `should_stop()` is true.
    """
    source = ("the evaluated classes (with background 0)" if classes is not None
              else "the values found in the ground truth")
    classes = dict(_infer_classes(gt for _, _, gt in pairs) if classes is None else classes)
    ignore = classes.get(IGNORE_NAME)  # read like a class (a .seg.nrrd's 'ignore' segment too)
    scored = {name: value for name, value in classes.items() if name != IGNORE_NAME}
    named = dict(allowed_values={0, *classes.values()}, labels_source=source,
                 remedy="Voxels of an unknown value would be left out of every metric; list "
                        "every class with --labels name=value,… or fix the label map.")
    rows: list[Row] = []
    for i, (cid, pred_path, gt_path) in enumerate(pairs, start=1):
        if should_stop():
            raise Cancelled(f"Evaluation cancelled after {i - 1} of {len(pairs)} cases; no "
                            "metrics file was written.")
        pred_image, gt_image = read_pair(pred_path, gt_path, classes, **named)
        pred, gt = sitk.GetArrayViewFromImage(pred_image), sitk.GetArrayViewFromImage(gt_image)
        if ignore is not None:  # unannotated: neither side counts there (as nnU-Net scores)
            kept = gt != ignore
            pred, gt = np.where(kept, pred, 0), np.where(kept, gt, 0)
        per_class = case_metrics(pred, gt, scored, image_spacing_zyx(gt_image),
                                 gt_image.GetDirection())
        rows.extend({"case": cid, "class": name, **values} for name, values in per_class.items())
        if reporter is not None:
            reporter.progress(i, len(pairs), "Evaluating", case=cid)
    return rows


def read_pair(pred: Path, gt: Path, classes: dict[str, int],
              **label_checks: Any) -> tuple[sitk.Image, sitk.Image]:
    """(prediction, ground truth) as label maps of class values on one grid. A Slicer .seg.nrrd
    (either side) has its segments matched to `classes` by name, then by value, and is put on
    the other file's grid (a label map's, or, both .seg.nrrd, the ground truth's). Label map
    files are read with `read_label(..., **label_checks)`."""
    if is_seg_nrrd(gt) and not is_seg_nrrd(pred):
        pred_image = read_label(pred, **label_checks)
        return pred_image, _read_segmentation_values(gt, classes, pred_image)
    gt_image = (_read_segmentation_values(gt, classes, None) if is_seg_nrrd(gt)
                else read_label(gt, **label_checks))
    if is_seg_nrrd(pred):
        return _read_segmentation_values(pred, classes, gt_image), gt_image
    return read_label(pred, reference=gt_image, reference_name=str(gt), **label_checks), gt_image


def _read_segmentation_values(path: Path, classes: dict[str, int],
                              reference: sitk.Image | None) -> sitk.Image:
    """A .seg.nrrd as a label map of the classes' values."""
    specs = [ClassSpec(name, value) for name, value in classes.items()]
    positions = read_segmentation(path, specs, reference)
    lookup = np.array([0, *classes.values()], np.uint8)
    values = sitk.GetImageFromArray(lookup[sitk.GetArrayViewFromImage(positions)])
    values.CopyInformation(positions)
    return values


def _stats(values: Iterable[float]) -> dict[str, float | int | None]:
    """NaN-aware mean and (population) std; None when no finite value is left."""
    kept = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if kept.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(kept.mean()), "std": float(kept.std()), "n": int(kept.size)}


def summarize(rows: list[Row]) -> dict[str, Any]:
    """Mean ± std over cases per class and metric, and over the per-case means across classes.

    Returns {"n_cases", "classes": {class: {metric: {"mean", "std", "n"}}},
    "mean": {metric: {...}}}; "n" counts the cases that scored (NaN excluded). JSON-ready: a
    statistic with no value is None.
    """
    class_names = list(dict.fromkeys(row["class"] for row in rows))
    case_ids = list(dict.fromkeys(row["case"] for row in rows))
    per_class = {name: {m: _stats(r[m] for r in rows if r["class"] == name) for m in METRICS}
                 for name in class_names}

    def case_mean(cid: str, metric: str) -> float:
        values = [r[metric] for r in rows if r["case"] == cid and not math.isnan(r[metric])]
        return float(np.mean(values)) if values else math.nan

    mean = {m: _stats(case_mean(cid, m) for cid in case_ids) for m in METRICS}
    return {"n_cases": len(case_ids), "classes": per_class, "mean": mean}


def write_csv(rows: list[Row], path: str | os.PathLike) -> None:
    """Write the per-case rows as CSV (atomic); NaN is written as 'nan'."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["case", "class", *METRICS], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


# (metric, column title, scale, decimals) of the Markdown table.
_COLUMNS = (("dice", "Dice %", 100.0, 1), ("jaccard", "Jaccard %", 100.0, 1),
            ("hd95_vox", "HD95 vox", 1.0, 2), ("asd_vox", "ASD vox", 1.0, 2),
            ("hd95_mm", "HD95 mm", 1.0, 2), ("asd_mm", "ASD mm", 1.0, 2))


def _cell(stats: dict[str, Any], scale: float, decimals: int) -> str:
    if stats["mean"] is None:
        return "–"
    return f"{stats['mean'] * scale:.{decimals}f} ± {stats['std'] * scale:.{decimals}f}"


def format_summary_table(summary: dict[str, Any]) -> str:
    """Markdown table: one row per class plus MEAN_ROW, cells "mean ± std" over cases."""
    lines = ["| class | " + " | ".join(title for _, title, _, _ in _COLUMNS) + " |",
             "|---" + "|---:" * len(_COLUMNS) + "|"]
    named = [*summary["classes"].items(), (MEAN_ROW, summary["mean"])]
    for name, stats in named:
        cells = [_cell(stats[metric], scale, dec) for metric, _, scale, dec in _COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_summary(summary: dict[str, Any], path_json: str | os.PathLike,
                  path_md: str | os.PathLike) -> None:
    """Write the summary as JSON and as a Markdown table (both atomic)."""
    write_text_atomic(path_json, json.dumps(summary, indent=2, allow_nan=False) + "\n")
    write_text_atomic(path_md, f"Cases: {summary['n_cases']}\n\n" + format_summary_table(summary))


def check_outputs(out_dir: Path) -> None:
    """OutputError unless the metrics files can be written into `out_dir` (before any work)."""
    check_output_folder(Path(out_dir))
    for name in (CSV_NAME, SUMMARY_JSON, SUMMARY_MD):
        check_output_file(Path(out_dir) / name)


def evaluate(pred: Path, gt: Path, classes: dict[str, int] | None, out_dir: Path,
             reporter: Reporter | None = None, should_stop: StopCheck = lambda: False
             ) -> dict[str, Any]:
    """Evaluate a prediction file/folder against ground truth; write CSV + summary to `out_dir`."""
    return evaluate_to_folder(pair_files(pred, gt, reporter), classes, out_dir, reporter,
                              should_stop)


def evaluate_to_folder(pairs: list[tuple[str, Path, Path]], classes: dict[str, int] | None,
                       out_dir: Path, reporter: Reporter | None = None,
                       should_stop: StopCheck = lambda: False) -> dict[str, Any]:
    """Evaluate (case id, prediction, ground truth) pairs; write CSV + summary to `out_dir`."""
    check_outputs(out_dir)
    rows = evaluate_pairs(pairs, classes, reporter, should_stop)
    summary = summarize(rows)
    out_dir = Path(out_dir)
    write_csv(rows, out_dir / CSV_NAME)
    write_summary(summary, out_dir / SUMMARY_JSON, out_dir / SUMMARY_MD)
    return summary
