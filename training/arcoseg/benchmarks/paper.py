"""Reproduce the paper's tables: train every method on one schedule, evaluate, tabulate.

    python -m arcoseg.benchmarks.paper --data ../shared/data/ACDC --setting 3,7 \\
        --methods supervised,mean_teacher,arco-ns,arco-sg,arco-sag,supervised-all \\
        --profile cpu --out results/

Each (labelled setting, method, seed) run trains in its own process (`python -m arcoseg train
... --progress json`, so its peak memory is its own) with the profile's data, schedule and seed;
the trainer selects the checkpoint on `splits.val` only. The saved model is then evaluated on the
val split of --data and on every --eval-data folder. Each run is a folder under --out:

    <dataset>/<profile>-<dims>d-<iterations>it/<labelled-N | all>/<method>/seed-<S>/
        model/                 the model folder (model.safetensors, model.json, training/...)
        eval/<dataset>-<split>/ predictions/, metrics_per_case.csv, summary.json, summary.md
        train.log, train.stderr the training process's JSON events and its error output
        run.json               the run's record, rewritten atomically as the run progresses

A run whose record holds its training result and every requested evaluation is skipped; an
interrupted training resumes from its checkpoint (`arcoseg train --resume`). After every run,
--out/results.json and results.md are rewritten atomically from all run.json under --out, so runs
of several invocations (settings, datasets) share one table. SIGINT/SIGTERM: the running training
saves a checkpoint and stops; run the same command again to continue.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from arcoseg.benchmarks.paper_child import ChildStop, machine_info, run_training_process
from arcoseg.benchmarks.paper_plan import (eval_targets, format_plan, plan_runs,
                                          train_command)
from arcoseg.benchmarks.paper_runs import (RUN_RECORD, EvalTarget, RunSpec, has_checkpoint,
                                          has_evaluation, new_record, read_record, run_status,
                                          write_record)
from arcoseg.benchmarks.profiles import ALL_LABELS, METHODS, PROFILES
from arcoseg.benchmarks.report import format_results
from arcoseg.cli import run_with_signals
from arcoseg.commands.common import HelpFormatter, add_device_arguments, apply_threads
from arcoseg.data.dataset import DatasetInfo, load_dataset
from arcoseg.data.intensity import DEFAULT_JITTER
from arcoseg.device import resolve_device
from arcoseg.errors import EXIT_CANCELLED, ArcosegError, Cancelled
from arcoseg.evaluation.model_eval import ALL_CASES, evaluate_model_on_cases
from arcoseg.fileutil import write_text_atomic
from arcoseg.progress import Reporter, to_jsonable
from arcoseg.ranges import FRACTION, POSITIVE_INT, SEED, ListOf

RESULTS_JSON, RESULTS_MD = "results.json", "results.md"


# ----------------------------------------------------------------------------------- arguments
def _method_list(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise argparse.ArgumentTypeError(f"unknown method(s) {', '.join(unknown) or '(none)'}; "
                                         f"choose from {', '.join(METHODS)}")
    return list(dict.fromkeys(methods))


class _Formatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, the module docstring kept as written."""


def build_parser() -> argparse.ArgumentParser:
    """Arguments of the benchmark."""
    p = argparse.ArgumentParser(prog="python -m arcoseg.benchmarks.paper", description=__doc__,
                                formatter_class=_Formatter)
    p.add_argument("--data", type=Path, required=True, help="dataset folder (nnU-Net v2 or MSD)")
    p.add_argument("--setting", dest="settings", type=ListOf(POSITIVE_INT), default=[],
                   help="labelled counts, comma-separated: the first N ids of labelled_order "
                        "(e.g. 3,7 ACDC patients; 4,8 LA cases)")
    p.add_argument("--methods", type=_method_list, default=list(METHODS),
                   help=f"comma-separated, from {', '.join(METHODS)} ({ALL_LABELS}: supervised "
                        "on all training labels, the upper bound)")
    p.add_argument("--profile", choices=PROFILES, default="cpu",
                   help="; ".join(f"{p.name}: {p.description}" for p in PROFILES.values()))
    p.add_argument("--out", type=Path, default=Path("results"), help="results folder")
    p.add_argument("--seeds", type=ListOf(SEED), default=[0], help="comma-separated seeds")
    p.add_argument("--iterations", type=POSITIVE_INT,
                   help="override the profile's iteration count")
    p.add_argument("--jitter", type=FRACTION, default=DEFAULT_JITTER,
                   help="intensity augmentation strength of every method (arcoseg train "
                        "--jitter; 0 = the tables before it existed)")
    p.add_argument("--dims", type=int, choices=(2, 3),
                   help="override the model dimension (default: ACDC 2, LA 3, other datasets "
                        "2 if their median spacing is more than 3x anisotropic, else 3)")
    p.add_argument("--eval-data", type=Path, action="append", default=[],
                   help="another dataset folder to score every model on (repeatable), e.g. "
                        "held-out test cases")
    p.add_argument("--eval-split", action="append", default=[],
                   help=f"split of each --eval-data (one for all, or one per --eval-data; "
                        f"default '{ALL_CASES}' = every case)")
    p.add_argument("--cache-dir", type=Path, help="preprocessing cache (default: the trainer's)")
    p.add_argument("--dry-run", action="store_true", help="print the planned runs and commands")
    p.add_argument("--progress", choices=("text", "json", "none"), default="text",
                   help="text: progress bars; json: JSON lines for programs; none: results only")
    p.add_argument("--nproc-per-node", type=POSITIVE_INT, default=1,
                   help="train each run data-parallel on this many GPUs (or CPU processes) of "
                        "this machine: the trainings run under torchrun --standalone; the "
                        "global batch stays the profile's (1: no torchrun)")
    add_device_arguments(p)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the arguments (ArgumentParser.error, exit 2, on bad ones)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)  # for the records
    if not args.settings and any(m != ALL_LABELS for m in args.methods):
        parser.error(f"--setting is required unless --methods is only {ALL_LABELS}")
    if args.eval_split and not args.eval_data:
        parser.error("--eval-split goes with --eval-data (the val split of --data is always "
                     "evaluated)")
    if len(args.eval_split) not in (0, 1, len(args.eval_data)):
        parser.error("give one --eval-split for all --eval-data, or one per --eval-data")
    return args


# --------------------------------------------------------------------------------------- running
def train_run(spec: RunSpec, record: dict[str, Any], dataset: DatasetInfo,
              args: argparse.Namespace, reporter: Reporter, stop: ChildStop) -> None:
    """Train (or resume) one run to the end; its result and costs go into `record`."""
    resume = has_checkpoint(spec)
    if not resume and spec.model_dir.exists():
        shutil.rmtree(spec.model_dir)  # stopped before its first checkpoint: start over
        record["segments"] = []
    command = train_command(spec, dataset, args, resume)
    reporter.log(f"{'Resuming' if resume else 'Training'} {spec.key}")
    started = _now()
    outcome = run_training_process(command, spec, reporter, stop)
    record["command"] = shlex.join(command)
    record["segments"].append({"started": started, "resumed": resume,
                               "exit_code": outcome.exit_code,
                               "wall_seconds": outcome.wall_seconds,
                               "peak_rss_mb": outcome.peak_rss_mb})
    peaks = [s["peak_rss_mb"] for s in record["segments"] if s["peak_rss_mb"] is not None]
    record["wall_seconds"] = round(sum(s["wall_seconds"] for s in record["segments"]), 2)
    record["peak_rss_mb"] = max(peaks) if peaks else None
    if outcome.exit_code == 0 and outcome.result is not None:
        record["training"] = outcome.result
        record["options"] = json.loads((spec.model_dir / "training" / "options.json").read_text())
        record["machine"] = machine_info(resolve_device(args.device))
        record["trained"] = _now()
    write_record(spec, record)
    if outcome.exit_code == EXIT_CANCELLED:
        raise Cancelled(f"Stopped during {spec.key}; its checkpoint is saved. Run the same "
                        "command again to continue.")
    if record["training"] is None:
        raise ArcosegError(f"Training {spec.key} failed (exit code {outcome.exit_code}): "
                           f"{outcome.error or 'no result'}. Details: "
                           f"{spec.run_dir / 'train.stderr'}.")


def evaluate_run(spec: RunSpec, target: EvalTarget, args: argparse.Namespace,
                 reporter: Reporter, stop: Callable[[], bool]) -> dict[str, Any]:
    """Score the run's model on one target; the record entry (summary, timing, folder)."""
    folder = spec.run_dir / "eval" / f"{target.dataset.name}-{target.split}"
    reporter.log(f"Evaluating {spec.key} on {target.key} ({len(target.cases)} cases)")
    start = time.perf_counter()
    summary = evaluate_model_on_cases(spec.model_dir, target.dataset, target.cases, folder,
                                      resolve_device(args.device), reporter, amp=args.amp,
                                      should_stop=stop)
    seconds = time.perf_counter() - start
    return {"dataset": target.dataset.name, "path": str(target.dataset.root.resolve()),
            "split": target.split, "n_cases": len(target.cases),
            "folder": str(folder.resolve()), "seconds": round(seconds, 2),
            "seconds_per_case": round(seconds / len(target.cases), 3), "summary": summary}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_results(out: Path, command: str) -> dict[str, Any]:
    """Rewrite results.json and results.md from every run record under `out`."""
    records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(out.rglob(RUN_RECORD))]
    results = {"generated": _now(), "command": command, "runs": records}
    write_text_atomic(out / RESULTS_JSON, json.dumps(to_jsonable(results), indent=2) + "\n")
    write_text_atomic(out / RESULTS_MD, format_results(results))
    return results


# ------------------------------------------------------------------------------------------ main
def run(args: argparse.Namespace, reporter: Reporter, stop: ChildStop) -> dict[str, Any]:
    """Plan, then train and evaluate every run not done yet; write the results after each."""
    apply_threads(args.threads)
    dataset = load_dataset(args.data)
    specs = plan_runs(args, dataset)
    targets = eval_targets(args, dataset)
    statuses = {spec.key: run_status(spec, targets) for spec in specs}
    if args.dry_run:
        print(format_plan(specs, statuses, dataset, targets, args))
        return {"planned": len(specs), "to_run": sum(s != "done" for s in statuses.values())}
    command = shlex.join(["python", "-m", "arcoseg.benchmarks.paper", *args.argv])
    pending = [spec for spec in specs if statuses[spec.key] != "done"]
    for spec in pending:
        if stop():
            raise Cancelled("Stopped before the next run; run the same command to continue.")
        try:
            complete_run(spec, dataset, targets, args, command, reporter, stop)
        finally:
            write_results(args.out, command)
    if not pending:
        write_results(args.out, command)
    return {"results": str(args.out / RESULTS_JSON), "table": str(args.out / RESULTS_MD),
            "runs": len(specs), "ran": len(pending), "skipped": len(specs) - len(pending)}


def complete_run(spec: RunSpec, dataset: DatasetInfo, targets: list[EvalTarget],
                 args: argparse.Namespace, command: str, reporter: Reporter,
                 stop: ChildStop) -> None:
    """Train the run if needed, then add every missing evaluation to its record."""
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    record = read_record(spec) or new_record(spec, dataset, command)
    if record["training"] is None:
        train_run(spec, record, dataset, args, reporter, stop)
    for target in targets:
        if not has_evaluation(record, target):
            record["evaluations"][target.key] = evaluate_run(spec, target, args, reporter, stop)
            write_record(spec, record)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit code 0 ok, 2 bad input, 3 stopped, 1 bug (as `arcoseg`)."""
    args = parse_args(argv)
    args.handler = run
    return run_with_signals(args, ChildStop())


if __name__ == "__main__":
    raise SystemExit(main())
