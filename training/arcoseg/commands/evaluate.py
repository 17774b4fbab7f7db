"""`arcoseg evaluate`: Dice, Jaccard, HD95, ASD of predictions (or of a model on a dataset split)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

from arcoseg.commands.common import HelpFormatter, add_device_arguments, existing_path
from arcoseg.constants import IGNORE_LABEL
from arcoseg.errors import ArcosegError, InputError
from arcoseg.fileutil import expand_user
from arcoseg.io.outputs import output_path
from arcoseg.progress import Reporter


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `evaluate`."""
    p = sub.add_parser(
        "evaluate", help="score predictions against ground truth",
        description="Score label maps: `arcoseg evaluate PRED GT` (files or folders, matched by "
                    "case name), or a model on a dataset split: `arcoseg evaluate --model M "
                    "--dataset D [--split val]`. Writes metrics_per_case.csv, summary.json and "
                    "summary.md (mean ± std per class) to --out.", formatter_class=HelpFormatter)
    p.add_argument("pred", type=existing_path, nargs="?", help="prediction file or folder")
    p.add_argument("gt", type=existing_path, nargs="?", help="ground-truth file or folder")
    p.add_argument("--labels", help="class names: a dataset.json, a model folder, or "
                                    "'name=value,…' (default: the values found in GT)")
    p.add_argument("--model", help="model (registry name or folder) to evaluate on --dataset")
    p.add_argument("--dataset", type=existing_path, help="dataset folder (with --model)")
    p.add_argument("--split", default="val",
                   help="dataset split to evaluate ('all' = every case)")
    p.add_argument("-o", "--out", type=output_path, default=Path("evaluation"), help="output folder")
    add_device_arguments(p)
    return p


_NOT_LABELS = ("--labels '{spec}' is neither a dataset.json, a model (folder or registered name), "
               "nor 'name=value,…' (e.g. RV=1,Myo=2,LV=3).")


def parse_labels(spec: str | None) -> dict[str, int] | None:
    """Class name → label value from a dataset.json, a model (folder or registry name), or
    'name=value,…'; InputError for anything else or for names/values a label map cannot hold."""
    from arcoseg.data.dataset import evaluated_labels, load_dataset  # heavy: only when run
    from arcoseg.modelfile import load_metadata
    from arcoseg.registry import Registry, RegistryError

    if spec is None:
        return None
    path = expand_user(spec)
    if "=" not in spec and not path.exists() and not path.suffix and len(path.parts) == 1:
        try:  # a registered model's name
            path = Registry().resolve(spec)
        except RegistryError as err:
            raise InputError(f"{_NOT_LABELS.format(spec=spec)} ({err})") from err
    if path.is_dir() and (path / "model.json").exists():
        return {c["name"]: c["value"] for c in load_metadata(path).classes if c["value"] != 0}
    if path.is_file() and path.name == "dataset.json":  # its images need not be beside it
        return evaluated_labels(path)
    if path.is_dir():
        return load_dataset(path).evaluated_labels
    return _name_value_pairs(spec)


def _name_value_pairs(spec: str) -> dict[str, int]:
    """'RV=1,Myo=2' → {'RV': 1, 'Myo': 2}: names a model could hold (modelfile's rule),
    distinct values 1..254."""
    from arcoseg.errors import ModelFileError
    from arcoseg.model_metadata import check_class_names

    try:
        pairs = [(name.strip(), int(value)) for name, value in
                 (item.split("=") for item in spec.split(","))]
    except ValueError as err:
        raise InputError(_NOT_LABELS.format(spec=spec)) from err
    values = [value for _, value in pairs]
    if len(set(values)) != len(values) or not all(0 < v < IGNORE_LABEL for v in values):
        raise InputError(f"--labels '{spec}': each class needs its own label value from 1 to "
                         f"{IGNORE_LABEL - 1} (0 is the background).")
    try:
        check_class_names([name for name, _ in pairs])
    except ModelFileError as err:
        raise InputError(f"--labels '{spec}': {err}") from err
    return dict(pairs)


def run(args: argparse.Namespace, reporter: Reporter, stop: Callable[[], bool]) -> dict[str, Any]:
    """Evaluate files/folders, or segment a dataset split with a model and evaluate that."""
    from arcoseg.evaluation.evaluate import evaluate, format_summary_table  # only when run

    if args.model is not None:
        return _evaluate_model(args, reporter, stop)
    if args.pred is None or args.gt is None:
        raise ArcosegError("Give PRED and GT, or --model and --dataset.")
    summary = evaluate(args.pred, args.gt, parse_labels(args.labels), args.out, reporter,
                       stop)
    reporter.log(format_summary_table(summary))
    return {"summary": summary, "out": str(args.out)}


def _evaluate_model(args: argparse.Namespace, reporter: Reporter,
                    stop: Callable[[], bool]) -> dict[str, Any]:
    from arcoseg.data.dataset import load_dataset  # torch, MONAI: only when run
    from arcoseg.device import resolve_device
    from arcoseg.evaluation.evaluate import format_summary_table
    from arcoseg.evaluation.model_eval import evaluate_model_on_cases, split_cases
    from arcoseg.registry import Registry

    if args.dataset is None:
        raise ArcosegError("--model needs --dataset (the dataset folder to evaluate on).")
    dataset = load_dataset(args.dataset)
    cases = split_cases(dataset, args.split)
    summary = evaluate_model_on_cases(Registry().resolve(args.model), dataset, cases, args.out,
                                      resolve_device(args.device), reporter, amp=args.amp,
                                      should_stop=stop)
    reporter.log(format_summary_table(summary))
    return {"summary": summary, "out": str(args.out), "split": args.split, "cases": len(cases)}
