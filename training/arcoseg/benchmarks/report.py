"""The benchmark's Markdown report: one paper-style table per dataset, schedule and evaluation.

Rows are methods grouped by labelled setting (runs of several seeds are merged: mean ± std over
seeds); columns are our metrics (mean over cases of the mean over foreground classes), the
per-class Dice, the paper's Dice / ASD for the same setting, and the training costs.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any, Callable

from arcoseg.benchmarks.profiles import (ALL_LABELS, METHODS, OTHER_PUBLISHED, PAPER_NOTES,
                                         PAPER_SOURCE, paper_result)

Record = dict[str, Any]

# (column title, value of one run's evaluation entry, decimals)
_METRICS: tuple[tuple[str, Callable[[dict], float | None], int], ...] = (
    ("Dice %", lambda e: _pct(e["summary"]["mean"]["dice"]["mean"]), 1),
    ("Jaccard %", lambda e: _pct(e["summary"]["mean"]["jaccard"]["mean"]), 1),
    ("HD95 vox", lambda e: e["summary"]["mean"]["hd95_vox"]["mean"], 2),
    ("ASD vox", lambda e: e["summary"]["mean"]["asd_vox"]["mean"], 2),
)
# (column title, value of one run record, decimals)
_COSTS: tuple[tuple[str, Callable[[Record], float | None], int], ...] = (
    ("s/it", lambda r: r["training"]["seconds_per_iteration"], 3),
    ("train min", lambda r: r["training"]["seconds"] / 60, 1),
    ("wall min", lambda r: r["wall_seconds"] / 60, 1),
    ("peak MB", lambda r: r["peak_rss_mb"], 0),
)


def _pct(value: float | None) -> float | None:
    return None if value is None else 100 * value


def format_cell(values: list[float | None], decimals: int) -> str:
    """One value, or 'mean ± std' over several (seeds); '–' when none is known."""
    kept = [v for v in values if v is not None]
    if not kept:
        return "–"
    if len(kept) == 1:
        return f"{kept[0]:.{decimals}f}"
    return f"{statistics.fmean(kept):.{decimals}f} ± {statistics.pstdev(kept):.{decimals}f}"


def _setting_name(labelled: int | None) -> str:
    return "all" if labelled is None else str(labelled)


def _group_key(record: Record) -> tuple[str, str]:
    """(dataset, schedule) of a run, the schedule being the run folder's second part."""
    return record["dataset"], record["key"].split("/")[1]


def format_results(results: dict[str, Any]) -> str:
    """The whole report: header, then a table per (dataset, schedule, evaluation)."""
    lines = ["# ARCOSegment paper benchmark", "",
             f"Generated {results['generated']} by `{results['command']}`.", "",
             "Ours: mean over cases of the mean over foreground classes (Dice, Jaccard in %; "
             "HD95 and ASD in voxels — mm values, std over cases and per-class values of every "
             "metric are in results.json and each run's eval/*/summary.md). s/it: training step "
             "time; train min: the steps only; wall min: the whole training process (data "
             "preparation and validation included); peak MB: its peak resident memory. Several "
             "seeds: mean ± std over seeds.", "",
             f"Paper: {PAPER_SOURCE}", ""]
    finished = [r for r in results["runs"] if r.get("training") is not None]
    if finished:
        lines += [format_provenance(finished), ""]
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for record in finished:
        groups[_group_key(record)].append(record)
    for (dataset, schedule), records in sorted(groups.items()):
        evaluations = sorted({key for r in records for key in r["evaluations"]})
        for eval_key in evaluations:
            lines += format_table(dataset, schedule, eval_key,
                                  [r for r in records if eval_key in r["evaluations"]])
    unfinished = [r["key"] for r in results["runs"] if r.get("training") is None]
    if unfinished:
        lines += ["Not finished (rerun the command to continue): " + ", ".join(unfinished), ""]
    return "\n".join(lines)


def format_provenance(records: list[Record]) -> str:
    """When, where and by which commands the finished runs were trained."""
    dates = sorted(r["trained"] for r in records)
    machines = sorted({f"{m['cpu']} ({m['cpu_count']} cores, {m['torch_threads']} torch threads), "
                       f"device {m['device']}, torch {m['torch']}, host {m['host']}"
                       for m in (r["machine"] for r in records)})
    commands = sorted({r["benchmark_command"] for r in records})
    return (f"Runs trained {dates[0]} – {dates[-1]} on: " + "; ".join(machines) + ". Commands: "
            + "; ".join(f"`{c}`" for c in commands) + ".")


def format_table(dataset: str, schedule: str, eval_key: str, records: list[Record]) -> list[str]:
    """One table: rows (labelled setting, method), seeds merged; then rankings and notes."""
    rows: dict[tuple[int | None, str], list[Record]] = defaultdict(list)
    for record in records:
        rows[(record["labelled"], record["method"])].append(record)
    order = list(METHODS)
    keys = sorted(rows, key=lambda k: (k[0] is not None, k[0] or 0, order.index(k[1])))
    first = records[0]["evaluations"][eval_key]
    classes = list(first["summary"]["classes"])
    ref_key = dataset.upper()
    header = ["labelled", "method", *(t for t, _, _ in _METRICS),
              *(f"{c} Dice %" for c in classes), "paper Dice % / ASD vox",
              *(t for t, _, _ in _COSTS), "seeds", "model"]
    lines = [f"## {dataset} — {schedule} — evaluated on {eval_key} ({first['n_cases']} cases)",
             "", "| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 3)
             + "---|"]
    means: dict[int | None, list[tuple[float, str]]] = defaultdict(list)
    for labelled, method in keys:
        runs = rows[(labelled, method)]
        entries = [r["evaluations"][eval_key] for r in runs]
        cells = [format_cell([get(e) for e in entries], dec) for _, get, dec in _METRICS]
        cells += [format_cell([_pct(e["summary"]["classes"][c]["dice"]["mean"])
                               for e in entries], 1) for c in classes]
        paper = paper_result(ref_key, method, labelled)
        cells.append(f"{paper[0]} / {paper[1]}" if paper else "–")
        cells += [format_cell([get(r) for r in runs], dec) for _, get, dec in _COSTS]
        cells += [str(len(runs)), f"`{runs[0]['key']}/model`"]
        lines.append(f"| {_setting_name(labelled)} | {method} | " + " | ".join(cells) + " |")
        dice = [_pct(e["summary"]["mean"]["dice"]["mean"]) for e in entries]
        if method != ALL_LABELS and all(d is not None for d in dice):
            means[labelled].append((statistics.fmean(dice), method))  # type: ignore[arg-type]
    lines.append("")
    for labelled, ranked in sorted(means.items(), key=lambda kv: kv[0] or 0):
        ranked.sort(reverse=True)
        lines.append(f"- Ranking by Dice, {labelled} labelled: "
                     + " > ".join(f"{m} ({d:.1f})" for d, m in ranked) + ".")
        others = OTHER_PUBLISHED.get(ref_key, {}).get(labelled)  # type: ignore[arg-type]
        if others:
            lines.append(f"- Other published Dice % at {labelled} labelled (paper's test split): "
                         + ", ".join(f"{name} {value}" for name, value in others.items()) + ".")
    if ref_key in PAPER_NOTES:
        lines.append(f"- {PAPER_NOTES[ref_key]}")
    return lines + [""]
