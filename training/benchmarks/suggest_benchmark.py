"""Do the suggested slices help? A simulated clinician goes from k = 2 to 3 to 4 annotated slices.

Start: the 2 slices the adapt benchmark draws (spread through the labelled extent). Then:
- `even`: the clinician re-spreads 3 and 4 slices evenly through the labelled extent
  (`demo.pipeline.pick_slices`; knows the structure's extent, as the benchmark's drawing does);
- `random`: adds random slices inside the labelled extent (mean over `--draws` draws);
- `uncertainty`, `distance`: adds the first, then the second slice that the adapted k = 2 model
  suggests under that rule (`adapt.suggest`; Adapt shows several suggestions at once).
Each slice set is scored by filling the volume without a model (nearest-slice copy and
interpolation), so every strategy is judged on the same footing without retraining: Dice (%)
on the whole volume (drawn slices exact) at k = 2, 3, 4 and the gain per added slice.

    python training/benchmarks/suggest_benchmark.py --data ../shared/data/ACDC \
        --rows results/adapt_k2/adapt_rows.json     # an adapt_benchmark run with --keep-models
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from arcoseg.adapt.baselines import BASELINES
from arcoseg.adapt.suggest import SUGGEST_RULES, suggest_slices
from arcoseg.commands.common import AUTO_THREADS, apply_threads, thread_range
from arcoseg.data.dataset import load_dataset
from arcoseg.demo.pipeline import pick_slices, simulate_annotations
from arcoseg.device import resolve_device
from arcoseg.inference import segment_channels
from arcoseg.io.images import read_image
from arcoseg.modelfile import load_model
from arcoseg.ranges import POSITIVE_INT, SEED
from adapt_benchmark import mean_dice  # same folder: run as a script


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--rows", type=Path, required=True, help="adapt_rows.json with model_path")
    p.add_argument("--draws", type=POSITIVE_INT, default=5, help="random clinicians per case")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--threads", type=thread_range(), default=AUTO_THREADS)
    p.add_argument("--out", type=Path, default=Path("results/suggest_benchmark"))
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def strategies(labels: np.ndarray, start: list[int], probabilities: np.ndarray,
               rng: np.random.Generator, draws: int) -> dict[str, list[list[list[int]]]]:
    """Per strategy, one or more paths [slices at k=2, at k=3, at k=4]."""
    present = np.flatnonzero((labels > 0).any(axis=(1, 2)))
    extent = list(range(int(present.min()), int(present.max()) + 1))
    paths: dict[str, list[list[list[int]]]] = {
        "even": [[start, pick_slices(labels, 0, 3), pick_slices(labels, 0, 4)]]}
    paths["random"] = []
    for _ in range(draws):
        free = [s for s in extent if s not in start]
        extra = [int(s) for s in rng.choice(free, size=2, replace=False)]
        paths["random"].append([start, start + extra[:1], start + extra])
    for rule in SUGGEST_RULES:
        picks = [p["slice"] for p in suggest_slices(probabilities, 0, start, k=2, rule=rule)]
        picks += [s for s in extent if s not in start and s not in picks][: 2 - len(picks)]
        paths[rule] = [[start, start + picks[:1], start + picks[:2]]]
    return paths


def main() -> None:
    args = parse_args()
    apply_threads(args.threads)
    dataset = load_dataset(args.data)
    cases = {c.id: c for c in dataset.split_cases("val")}
    device = resolve_device("cpu")
    rng = np.random.default_rng(args.seed)
    num_classes = len(dataset.class_names)
    rows = []
    for source in json.loads(args.rows.read_text()):
        if source["k"] != 2 or "model_path" not in source:
            continue
        case = cases[source["case"]]
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(case.label)))
        model, meta = load_model(Path(source["model_path"]), device=device)
        probabilities = segment_channels(model, meta, [read_image(case.images[0])],
                                         device).probabilities
        for name, paths in strategies(labels, source["slices"], probabilities, rng,
                                      args.draws).items():
            for filler in BASELINES:
                dice = [[mean_dice(BASELINES[filler](simulate_annotations(labels, 0, s), 0, s),
                                   labels, num_classes) for s in path] for path in paths]
                rows.append({"case": case.id, "strategy": name, "filler": filler,
                             "model": source.get("tag", ""), "paths": paths,
                             "dice": np.mean(dice, axis=0).tolist()})
                print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "suggest_rows.json").write_text(json.dumps(rows, indent=2))
    table = format_table(rows)
    (args.out / "suggest_table.md").write_text(table)
    print(table)


def format_table(rows: list[dict]) -> str:
    """Mean over the k = 2 models (cases × configurations) per (filler, strategy): whole-volume
    Dice at k = 2, 3, 4 and the gain per added slice."""
    lines = ["| filler | strategy | models | Dice k=2 | k=3 | k=4 | gain per added slice |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for filler in BASELINES:
        for name in ("even", "random", *SUGGEST_RULES):
            group = np.array([r["dice"] for r in rows
                              if r["filler"] == filler and r["strategy"] == name]) * 100
            if group.size:
                mean = group.mean(axis=0)
                lines.append(f"| {filler} | {name} | {len(group)} | {mean[0]:.1f} | "
                             f"{mean[1]:.1f} | {mean[2]:.1f} | {(mean[2] - mean[0]) / 2:+.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
