"""The paper benchmark's runs: what one run is (`RunSpec`, scored on `EvalTarget`s) and its
record, run.json, rewritten atomically as the run progresses (`arcoseg.benchmarks.paper`)."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arcoseg.data.dataset import Case, DatasetInfo
from arcoseg.errors import ArcosegError
from arcoseg.fileutil import write_text_atomic
from arcoseg.progress import to_jsonable
from arcoseg.train.resume import CHECKPOINT_STEM

RUN_RECORD = "run.json"


@dataclass(frozen=True)
class EvalTarget:
    """Cases a trained model is scored on: a split of a dataset folder."""

    dataset: DatasetInfo
    split: str
    cases: list[Case]

    @property
    def key(self) -> str:
        """Name of this evaluation in run records, e.g. 'ACDC:val'."""
        return f"{self.dataset.name}:{self.split}"


@dataclass(frozen=True)
class RunSpec:
    """One planned training run and where it lives."""

    key: str  # the run folder relative to --out
    run_dir: Path
    dataset: str
    profile: str
    labelled: int | None  # None: all training labels
    method: str
    seed: int
    train_args: tuple[str, ...]  # the `arcoseg train` options that define the run

    @property
    def model_dir(self) -> Path:
        """The model folder the training writes."""
        return self.run_dir / "model"


def read_record(spec: RunSpec) -> dict[str, Any] | None:
    """The run's record, or None; ArcosegError if it belongs to a run with other options."""
    path = spec.run_dir / RUN_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ArcosegError(f"Run record {path} is unreadable ({err}). Delete the folder "
                           f"{spec.run_dir} to rerun that run.") from err
    if record.get("train_args") != list(spec.train_args):
        raise ArcosegError(f"{spec.run_dir} holds a run with other training options "
                           f"({shlex.join(record.get('train_args', []))}). Choose another --out "
                           "or delete that folder.")
    return record


def write_record(spec: RunSpec, record: dict[str, Any]) -> None:
    """Rewrite the run's record atomically."""
    write_text_atomic(spec.run_dir / RUN_RECORD,
                      json.dumps(to_jsonable(record), indent=2, allow_nan=False) + "\n")


def new_record(spec: RunSpec, dataset: DatasetInfo, command: str) -> dict[str, Any]:
    """The record of a run that has not trained yet; `command` is the benchmark's."""
    return {"key": spec.key, "benchmark_command": command,
            "dataset": spec.dataset, "dataset_path": str(dataset.root.resolve()),
            "profile": spec.profile, "labelled": spec.labelled, "method": spec.method,
            "seed": spec.seed, "train_args": list(spec.train_args),
            "model": str(spec.model_dir.resolve()), "segments": [], "training": None,
            "evaluations": {}}


def has_checkpoint(spec: RunSpec) -> bool:
    """Whether the run's training left a checkpoint to resume from."""
    return (spec.model_dir / f"{CHECKPOINT_STEM}.json").is_file()


def has_evaluation(record: dict[str, Any], target: EvalTarget) -> bool:
    """Whether the record scores the run on `target` (same key and dataset folder)."""
    entry = record["evaluations"].get(target.key)
    return entry is not None and entry["path"] == str(target.dataset.root.resolve())


def run_status(spec: RunSpec, targets: list[EvalTarget]) -> str:
    """'done', 'evaluate' (trained, evaluations missing), 'resume' or 'train'."""
    record = read_record(spec)
    if record is not None and record["training"] is not None:
        return "done" if all(has_evaluation(record, t) for t in targets) else "evaluate"
    return "resume" if has_checkpoint(spec) else "train"
