"""The paper benchmark's plan (`benchmarks.paper`): the (setting, method, seed) runs asked for,
each run's `arcoseg train` options and command line, the evaluation targets, and the dry run's
listing."""

from __future__ import annotations

import argparse
import shlex
import sys

from arcoseg.benchmarks.paper_runs import EvalTarget, RunSpec
from arcoseg.benchmarks.profiles import (ALL_LABELS, METHODS, DatasetSettings, get_profile,
                                         settings_for)
from arcoseg.data.dataset import DatasetInfo, load_dataset
from arcoseg.data.intensity import DEFAULT_JITTER
from arcoseg.evaluation.model_eval import ALL_CASES, split_cases


def train_arguments(settings: DatasetSettings, method: str, labelled: int | None, seed: int,
                    iterations: int, jitter: float = DEFAULT_JITTER) -> tuple[str, ...]:
    """The `arcoseg train` options of one run (data, schedule, seed, method)."""
    base, sampler = METHODS[method]
    semi = base != "supervised"
    args = ["--dims", str(settings.dims), "--method", base]
    args += ["--sampler", sampler] if sampler else []
    args += ["--labelled", str(labelled)] if labelled is not None else []
    args += ["--iterations", str(iterations),
             "--batch", str(settings.batch if semi else settings.supervised_batch)]
    args += ["--unlabelled-batch", str(settings.unlabelled_batch)] if semi else []
    args += ["--patch", *map(str, settings.patch)]
    args += ["--spacing", *map(str, settings.spacing)] if settings.spacing else []
    # always explicit, so that runs trained before intensity augmentation became the default
    # are refused as "other options" instead of being taken for these runs
    args += ["--jitter", str(jitter)]
    args += ["--seed", str(seed), "--val-every", str(settings.val_every),
             "--checkpoint-every", str(settings.checkpoint_every)]
    return tuple(args)


def plan_runs(args: argparse.Namespace, dataset: DatasetInfo) -> list[RunSpec]:
    """Every (setting, method, seed) run asked for, settings first, in the order given."""
    profile = get_profile(args.profile)
    settings = settings_for(profile, dataset, args.dims)
    iterations = args.iterations or settings.iterations
    for n in args.settings:
        dataset.labelled_cases(n)  # InputError now rather than in every training process
    group = f"{profile.name}-{settings.dims}d-{iterations}it"
    group += "" if args.jitter == DEFAULT_JITTER else f"-jitter{args.jitter:g}"
    pairs = [(n, m) for n in args.settings for m in args.methods if m != ALL_LABELS]
    pairs += [(None, ALL_LABELS)] if ALL_LABELS in args.methods else []
    specs = []
    for labelled, method in pairs:
        for seed in args.seeds:
            key = "/".join((dataset.name, group, "all" if labelled is None else
                            f"labelled-{labelled}", method, f"seed-{seed}"))
            specs.append(RunSpec(key, args.out / key, dataset.name, profile.name, labelled,
                                 method, seed, train_arguments(settings, method, labelled, seed,
                                                               iterations, args.jitter)))
    return specs


def eval_targets(args: argparse.Namespace, dataset: DatasetInfo) -> list[EvalTarget]:
    """The val split of --data, then each --eval-data folder with its split."""
    splits = args.eval_split or [ALL_CASES]
    targets = [EvalTarget(dataset, "val", split_cases(dataset, "val"))]
    for i, folder in enumerate(args.eval_data):
        other = load_dataset(folder)
        split = splits[i] if len(splits) > 1 else splits[0]
        targets.append(EvalTarget(other, split, split_cases(other, split)))
    return targets


def train_command(spec: RunSpec, dataset: DatasetInfo, args: argparse.Namespace,
                  resume: bool) -> list[str]:
    """The training process's command line."""
    runtime = ["--device", args.device, *([] if args.amp else ["--no-amp"]),
               *(["--threads", str(args.threads)] if args.threads else []),
               *(["--cache-dir", str(args.cache_dir)] if args.cache_dir else []),
               "--progress", "json", *(["--resume"] if resume else [])]
    launcher = [sys.executable]
    if args.nproc_per_node > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone",
                     "--nproc-per-node", str(args.nproc_per_node)]
    return [*launcher, "-m", "arcoseg", "train", str(dataset.root.resolve()),
            "--out", str(spec.model_dir.resolve()), *spec.train_args, *runtime]


def format_plan(specs: list[RunSpec], statuses: dict[str, str], dataset: DatasetInfo,
                targets: list[EvalTarget], args: argparse.Namespace) -> str:
    """The dry run's listing: each run's status, training command and evaluations."""
    lines = []
    for spec in specs:
        status = statuses[spec.key]
        lines.append(f"[{status}] {spec.key}")
        if status in ("train", "resume"):
            lines.append("  " + shlex.join(train_command(spec, dataset, args,
                                                               status == "resume")))
        if status != "done":
            lines.append("  then evaluate on " + ", ".join(
                f"{t.key} ({len(t.cases)} cases)" for t in targets))
    return "\n".join(lines)
