"""Simulated clinician on real validation cases: annotate k slices, adapt, score what nobody drew.

For each validation case and each k: the k slices are spread through the labelled extent (as
`arcoseg demo` does). Every table row uses the same cases and the same drawn slices:
- `nearest`, `interpolate`: what Slicer gives without a model (copy the nearest drawn slice;
  "Fill between slices" = ITK morphological contour interpolation, the optional
  `arcoseg[bench]` dependency);
- `arco` (Adapt) and `supervised` (a supervised-only fine-tune), from scratch and, with
  `--base MODEL`, from a base model: "(output as written)" is the segmentation `adapt` wrote
  (the fusion its held-out check chose, every drawn slice as drawn), "(fusion w)" the same
  model fused with the drawing at a fixed weight w by this script (0 = the model alone).
Dice (mean over the foreground classes, in %) on the slices nobody annotated and on the whole
volume, mean ± std over cases, and seconds per case (the whole `adapt` call for the models).

    python training/benchmarks/adapt_benchmark.py --data ../shared/data/ACDC --k 1,2,3 \
        --cases 4 --iterations 300 --budget 600 --out results/adapt_acdc

`--iterations` fixes the schedule (the budget is only an upper bound), so a busy machine
changes the seconds, not the Dice.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from arcoseg.adapt.annotations import Annotations
from arcoseg.adapt.baselines import BASELINES
from arcoseg.adapt.fusion import FusionSettings, fuse
from arcoseg.adapt.prior import PRIOR_MODES, ParentPriorSettings, PriorSettings
from arcoseg.adapt.run import AdaptRequest, adapt
from arcoseg.commands.common import AUTO_THREADS, apply_threads, thread_range
from arcoseg.constants import FUSION_WEIGHT, OPTIMIZERS
from arcoseg.data.dataset import load_dataset
from arcoseg.demo.pipeline import pick_slices, simulate_annotations, unannotated_dice
from arcoseg.device import resolve_device
from arcoseg.inference import segment_channels
from arcoseg.io.images import array_to_image, read_image, write_image
from arcoseg.modelfile import load_model
from arcoseg.progress import Reporter
from arcoseg.ranges import (CONTEXT_SLICES, FRACTION, NONNEG, NONNEG_INT, POSITIVE,
                            POSITIVE_INT, SHARE, UNIT, ListOf)
from arcoseg.train.validation import class_dice


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--k", type=ListOf(POSITIVE_INT), default="1,2,3",
                   help="annotated slice counts")
    p.add_argument("--cases", type=POSITIVE_INT, default=4,
                   help="validation cases to use (the first N)")
    p.add_argument("--case-ids", help="comma-separated validation case ids instead of --cases")
    p.add_argument("--threads", type=thread_range(), default=AUTO_THREADS,
                   help="CPU threads (default: the free cores)")
    p.add_argument("--budget", type=POSITIVE, default=60.0, help="upper bound, seconds")
    p.add_argument("--iterations", type=POSITIVE_INT, default=AdaptRequest.iterations)
    p.add_argument("--base", type=Path, help="base model folder (2D or 3D) to adapt from")
    p.add_argument("--base-only", action="store_true",
                   help="with --base: only the adaptations from the base (no from-scratch rows)")
    p.add_argument("--methods", default="nearest,interpolate,arco,supervised",
                   help="baselines (nearest, interpolate) and Adapt methods (arco, supervised, "
                        "mean_teacher)")
    p.add_argument("--jitter", type=FRACTION, default=AdaptRequest.jitter,
                   help=f"intensity augmentation strength (default: Adapt's, {AdaptRequest.jitter})")
    p.add_argument("--warmup", type=FRACTION,
                   help="supervised-only fraction (default: Adapt's, half from scratch)")
    p.add_argument("--optimizer", choices=OPTIMIZERS,
                   help="adamw or sgd (default: Adapt's, adamw)")
    p.add_argument("--lr", type=POSITIVE, help="initial learning rate (default: the optimiser's)")
    p.add_argument("--prior", choices=PRIOR_MODES, default=PriorSettings.mode,
                   help="propagation prior (adapt.prior)")
    p.add_argument("--prior-strength", type=NONNEG, default=PriorSettings.strength)
    p.add_argument("--prior-scale", type=POSITIVE, default=PriorSettings.scale)
    p.add_argument("--prior-decay", type=SHARE, default=PriorSettings.decay)
    p.add_argument("--parent-prior", type=NONNEG, default=ParentPriorSettings.strength,
                   help="from --base: weight of the base's prediction far from the drawing "
                        "(adapt.parent_prior; 0: off)")
    p.add_argument("--parent-prior-margin", type=NONNEG_INT, default=ParentPriorSettings.margin)
    p.add_argument("--parent-prior-scale", type=POSITIVE, default=ParentPriorSettings.scale)
    p.add_argument("--fusion-weights", type=ListOf(UNIT), default=f"0,{FUSION_WEIGHT}",
                   help="the drawing's weights in Adapt's output (arcoseg.adapt.fusion) to score "
                        "on each adapted model: one row each (0 = the model alone)")
    p.add_argument("--no-early-stop", dest="early_stop", action="store_false")
    p.add_argument("--no-holdout", dest="holdout", action="store_false",
                   help="train on every drawn slice from the start, as `adapt --no-holdout` "
                        "(default: one is held out for the check and joins training at the end, "
                        "as Adapt does by default)")
    p.add_argument("--keep-models", action="store_true",
                   help="keep the adapted models (OUT/work/registry) for later analysis")
    p.add_argument("--context-slices", type=CONTEXT_SLICES, default=0,
                   help="from scratch: neighbouring slices on each side as input channels (2.5D, "
                        "`adapt --context-slices`)")
    p.add_argument("--tag", default="", help="label of this configuration in the table")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-amp", dest="amp", action="store_false",
                   help="float32 throughout (default: Adapt's bfloat16 where the device has it)")
    p.add_argument("--out", type=Path, default=Path("results/adapt_benchmark"))
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options; exit 2 with a message for a value outside its range (arcoseg.ranges)."""
    return build_parser().parse_args(argv)


def mean_dice(prediction: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Mean foreground Dice of two (z, y, x) class maps over the whole volume."""
    dice = class_dice(torch.from_numpy(prediction.astype(np.int64)),
                      torch.from_numpy(labels.astype(np.int64)), num_classes)
    return float(np.nanmean(dice))


def score(prediction: np.ndarray, labels: np.ndarray, slices: list[int],
          num_classes: int) -> dict:
    """Dice on the unannotated slices (mean and per class) and on the whole volume."""
    unseen = unannotated_dice(prediction, labels, 0, slices, num_classes)
    return {"after": float(np.nanmean(unseen)), "after_per_class": unseen,
            "whole": mean_dice(prediction, labels, num_classes)}


def base_dice(base: Path | None, image: sitk.Image, labels: np.ndarray, slices: list[int],
              device: torch.device, num_classes: int) -> float | None:
    """Mean Dice of the base model on the unannotated slices (None without a base)."""
    if base is None:
        return None
    model, meta = load_model(base, device=device)
    pred = segment_channels(model, meta, [image], device).probabilities.argmax(axis=0)
    return float(np.nanmean(unannotated_dice(pred, labels, 0, slices, num_classes)))


def run_baseline(name: str, labels: np.ndarray, slices: list[int], num_classes: int) -> dict:
    """One free baseline on one case."""
    t0 = time.perf_counter()
    filled = BASELINES[name](simulate_annotations(labels, 0, slices), 0, slices)
    return {"method": name, "start": "none", "before": None, "seconds": time.perf_counter() - t0,
            **score(filled, labels, slices, num_classes)}


def run_adapt(args: argparse.Namespace, case, image: sitk.Image, labels: np.ndarray,
              slices: list[int], method: str, start: str, work: Path,
              class_names: list[str]) -> list[dict]:
    """One adaptation of one case, scored with each of `--fusion-weights` (one row each)."""
    drawn = simulate_annotations(labels, 0, slices)
    ann = work / f"{case.id}_k{len(slices)}.nii.gz"
    write_image(array_to_image(drawn, image, np.uint8), ann)
    device = resolve_device(args.device)
    before = base_dice(args.base if start == "base" else None, image, labels, slices, device,
                       len(class_names))
    prior = PriorSettings(mode=args.prior, strength=args.prior_strength, scale=args.prior_scale,
                          decay=args.prior_decay)
    request = AdaptRequest(images=[case.images[0]], annotations=[ann], axis=0,
                           model=str(args.base) if start == "base" else None,
                           classes=None if start == "base" else class_names[1:],
                           name=f"bench-{start}", method=method, budget=args.budget,
                           context_slices=0 if start == "base" else args.context_slices,
                           iterations=args.iterations, warmup=args.warmup, jitter=args.jitter,
                           optimizer=args.optimizer, lr=args.lr,
                           prior=prior, parent_prior=ParentPriorSettings(
                               args.parent_prior, args.parent_prior_margin,
                               args.parent_prior_scale),
                           early_stop=args.early_stop, holdout=args.holdout,
                           device=args.device, amp=args.amp, home=work / "registry",
                           output=work / f"{case.id}_k{len(slices)}_{start}_{method}.nii.gz")
    t0 = time.perf_counter()
    result = adapt(request, Reporter(quiet=True), lambda: False)
    seconds = time.perf_counter() - t0
    model, meta = load_model(Path(result["model"]["path"]), device=device)
    probs = segment_channels(model, meta, [image], device, amp=args.amp).probabilities
    spacing_zyx = tuple(reversed(image.GetSpacing()))
    common = {"method": method, "start": start, "before": before, "seconds": seconds,
              "iterations": result["iterations"], "suggested": result["suggested_slices"],
              "joined_at": result["heldout"].get("joined_training_at"),
              "heldout": {k: result["heldout"].get(k) for k in ("adapted_dice", "output_dice",
                                                                "copy_dice", "parent_dice")},
              "model_path": result["model"]["path"]}
    # what Adapt wrote: its fusion weight as the held-out check chose it, every drawn slice
    written = sitk.GetArrayFromImage(read_image(request.output))
    rows = [{**common, "written": True,
             **score(written, labels, slices, len(class_names))}]
    for weight in args.fusion_weights:
        fused = fuse(probs, Annotations(drawn, 0, slices), spacing_zyx,
                     FusionSettings(weight=weight))
        rows.append({**common, "fusion": weight,
                     **score(fused.argmax(axis=0), labels, slices, len(class_names))})
    return rows


def main() -> None:
    args = parse_args()
    apply_threads(args.threads)
    dataset = load_dataset(args.data)
    cases = dataset.split_cases("val")
    cases = ([c for c in cases if c.id in args.case_ids.split(",")] if args.case_ids
             else cases[: args.cases])
    starts = ([] if args.base and args.base_only else ["scratch"]) + (["base"] if args.base
                                                                       else [])
    methods = args.methods.split(",")
    rows: list[dict] = []
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) if not args.keep_models else args.out / "work"
        for k in args.k:
            for case in cases:
                image = read_image(case.images[0])
                labels = sitk.GetArrayFromImage(sitk.ReadImage(str(case.label)))
                slices = pick_slices(labels, 0, k)
                for method in methods:
                    if method in BASELINES:
                        found = [run_baseline(method, labels, slices, len(dataset.class_names))]
                    else:
                        found = [row for start in starts for row in run_adapt(
                            args, case, image, labels, slices, method, start, work,
                            dataset.class_names)]
                    for row in found:
                        rows.append({"case": case.id, "k": k, "slices": slices, "tag": args.tag,
                                     **row})
                        print(json.dumps(rows[-1]), flush=True)
                (args.out / "adapt_rows.json").write_text(json.dumps(rows, indent=2))
    table = format_table(rows)
    (args.out / "adapt_table.md").write_text(table)
    print(table)


def _pm(values: list[float]) -> str:
    return f"{np.mean(values) * 100:.1f} ± {np.std(values) * 100:.1f}"


def _label(row: dict) -> str:
    """A table row's method: the method, the fusion weight of Adapt's output, the tag."""
    label = row["method"] + (f" (fusion {row['fusion']:g})" if "fusion" in row else "")
    label += " (output as written)" if row.get("written") else ""
    return label + (f" {row['tag']}" if row.get("tag") and row["start"] != "none" else "")


def format_table(rows: list[dict]) -> str:
    """Per (k, start, method): Dice on unannotated slices and whole volume (mean ± std over
    cases, %), the base model's Dice before, seconds per case."""
    lines = ["| k | start | method | cases | Dice unannotated | Dice whole volume | Dice before "
             "| seconds |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for k, start, label in sorted({(r["k"], r["start"], _label(r)) for r in rows}):
        group = [r for r in rows if (r["k"], r["start"], _label(r)) == (k, start, label)]
        befores = [r["before"] for r in group if r["before"] is not None]
        lines.append(f"| {k} | {start} | {label} | {len(group)} | "
                     f"{_pm([r['after'] for r in group])} | {_pm([r['whole'] for r in group])} | "
                     f"{_pm(befores) if befores else '–'} | "
                     f"{np.mean([r['seconds'] for r in group]):.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
