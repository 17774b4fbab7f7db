"""Score a saved model on dataset cases: segment each case, then Dice/Jaccard/HD95/ASD.

One copy of the loop shared by `arcoseg evaluate --model` and the benchmarks. Outputs in
`out_dir`: `predictions/<case><ending>` (the dataset's label values and file ending, .nii.gz
where ARCOSegment cannot write it, e.g. .png), `metrics_per_case.csv`, `summary.json`, `summary.md`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import torch

from arcoseg.data.dataset import Case, DatasetInfo
from arcoseg.data.model_grid import check_model_grids
from arcoseg.errors import Cancelled
from arcoseg.evaluation.evaluate import check_outputs, evaluate_to_folder
from arcoseg.inference import segment_file
from arcoseg.io.images import output_suffix_like
from arcoseg.io.outputs import check_output_folder
from arcoseg.model_metadata import ModelMetadata
from arcoseg.modelfile import check_classes, load_model, segmentation_plan
from arcoseg.progress import Reporter

ALL_CASES = "all"  # split name meaning every case of the dataset (e.g. a held-out test folder)


def split_cases(dataset: DatasetInfo, split: str) -> list[Case]:
    """The cases of `split`, or every case of the dataset for split 'all'."""
    return list(dataset.cases) if split == ALL_CASES else dataset.split_cases(split)


def evaluate_model_on_cases(model_dir: Path, dataset: DatasetInfo, cases: list[Case],
                            out_dir: Path, device: torch.device, reporter: Reporter,
                            amp: bool = True,
                            should_stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """Segment `cases` of `dataset` with the model in `model_dir`; return the metrics summary.

    The model's classes must be the dataset's (same names and order) and its model.json must
    hold a plan, else ModelFileError; the predictions hold the dataset's label values (matched
    by class name, where the model's differ).
    """
    model, metadata = load_model(model_dir, device=device)
    plan = segmentation_plan(metadata, model_dir)  # a plan-less model.json named before work
    check_classes(metadata, dataset.class_names, f"dataset {dataset.root}")
    check_model_grids((case.images[0] for case in cases), plan, metadata.network["in_channels"],
                      len(metadata.classes))
    metadata = _with_dataset_values(metadata, dataset, reporter)
    check_outputs(out_dir)
    check_output_folder(Path(out_dir) / "predictions")
    ending = output_suffix_like(dataset.file_ending)
    pairs = []
    for i, case in enumerate(cases):
        if should_stop():
            raise Cancelled(f"Evaluation cancelled after {i} of {len(cases)} cases.")
        pred = Path(out_dir) / "predictions" / f"{case.id}{ending}"
        segment_file(model, metadata, case.images, pred, device, amp=amp)
        pairs.append((case.id, pred, case.label))
        reporter.progress(i + 1, len(cases), f"segmented {case.id}")
    return evaluate_to_folder(pairs, dataset.evaluated_labels, out_dir, reporter, should_stop)


def _with_dataset_values(metadata: ModelMetadata, dataset: DatasetInfo,
                         reporter: Reporter) -> ModelMetadata:
    """`metadata` whose classes write the dataset's label values (matched by name): a model
    trained on the same structures coded otherwise (class2 = 2 there, 5 here) would otherwise
    be scored against the wrong structures, or refused after segmenting every case."""
    values = dict(zip(dataset.class_names, dataset.class_values))
    if [c["value"] for c in metadata.classes] == [values[c["name"]] for c in metadata.classes]:
        return metadata
    reporter.log("The model's label values " + ", ".join(
        f"{c['name']}={c['value']}" for c in metadata.classes[1:]) + " are written as the "
        f"dataset's ({', '.join(f'{n}={v}' for n, v in list(values.items())[1:])}); the "
        "classes are matched by name.")
    classes = [{**c, "value": values[c["name"]]} for c in metadata.classes]
    plan = {**metadata.plan, "label_values": [c["value"] for c in classes]}
    return dataclasses.replace(metadata, classes=classes, plan=plan)
