"""Simulated clinician on real validation cases: annotate k slices, adapt, score unseen slices.

For each validation case and each k: the k slices are spread through the labelled extent (as
`arcoseg demo` does); `arcoseg adapt` trains ARCO (and, for comparison, a supervised-only
fine-tune on the same slices) from scratch and, with `--base MODEL`, from a base model. Dice is
measured on the slices nobody annotated, before (the base model) and after, with wall time.

    python training/benchmarks/adapt_benchmark.py --data ../shared/data/ACDC --k 1,2,3 \
        --cases 4 --budget 60 --base results/acdc3/arco-sg/model --out results/adapt_acdc
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

from arcoseg.adapt.run import AdaptRequest, adapt
from arcoseg.data.dataset import load_dataset
from arcoseg.demo.pipeline import pick_slices, simulate_annotations, unannotated_dice
from arcoseg.device import resolve_device
from arcoseg.inference import segment_channels
from arcoseg.io.images import array_to_image, read_image, write_image
from arcoseg.modelfile import load_model
from arcoseg.progress import Reporter


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--k", default="1,2,3", help="annotated slice counts")
    p.add_argument("--cases", type=int, default=4, help="validation cases to use (the first N)")
    p.add_argument("--case-ids", help="comma-separated validation case ids instead of --cases")
    p.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--budget", type=float, default=60.0)
    p.add_argument("--base", type=Path, help="base model folder (2D or 3D) to adapt from")
    p.add_argument("--methods", default="arco,supervised")
    p.add_argument("--jitter", type=float, default=AdaptRequest.jitter,
                   help=f"intensity augmentation strength (default: Adapt's, {AdaptRequest.jitter})")
    p.add_argument("--warmup", type=float,
                   help="supervised-only fraction (default: Adapt's, half from scratch)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=Path("results/adapt_benchmark"))
    return p.parse_args()


def base_dice(base: Path | None, image: sitk.Image, labels: np.ndarray, slices: list[int],
              device: torch.device, num_classes: int) -> float | None:
    """Mean Dice of the base model on the unannotated slices (None without a base)."""
    if base is None:
        return None
    model, meta = load_model(base, device=device)
    pred = segment_channels(model, meta, [image], device).probabilities.argmax(axis=0)
    return float(np.nanmean(unannotated_dice(pred, labels, 0, slices, num_classes)))


def run_one(args: argparse.Namespace, case, k: int, method: str, start: str, work: Path,
            class_names: list[str]) -> dict:
    """One adaptation of one case; returns its row."""
    image = read_image(case.images[0])
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(case.label)))
    slices = pick_slices(labels, 0, k)
    ann = work / f"{case.id}_k{k}.nii.gz"
    write_image(array_to_image(simulate_annotations(labels, 0, slices), image, np.uint8), ann)
    device = resolve_device(args.device)
    before = base_dice(args.base if start == "base" else None, image, labels, slices, device,
                       len(class_names))
    request = AdaptRequest(images=[case.images[0]], annotations=[ann], axis=0,
                           model=str(args.base) if start == "base" else None,
                           classes=None if start == "base" else class_names[1:],
                           name=f"bench-{start}", method=method, budget=args.budget,
                           warmup=args.warmup, jitter=args.jitter,
                           holdout=False, output=work / f"{case.id}_seg.nii.gz",
                           device=args.device, home=work / "registry")
    t0 = time.perf_counter()
    adapt(request, Reporter(quiet=True), lambda: False)
    seconds = time.perf_counter() - t0
    pred = sitk.GetArrayFromImage(sitk.ReadImage(str(work / f"{case.id}_seg.nii.gz")))
    after = unannotated_dice(pred, labels, 0, slices, len(class_names))
    return {"case": case.id, "k": k, "method": method, "start": start, "before": before,
            "after": float(np.nanmean(after)), "after_per_class": after, "seconds": seconds}


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = load_dataset(args.data)
    cases = dataset.split_cases("val")
    cases = ([c for c in cases if c.id in args.case_ids.split(",")] if args.case_ids
             else cases[: args.cases])
    starts = ["scratch"] + (["base"] if args.base else [])
    rows = []
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for k in [int(v) for v in args.k.split(",")]:
            for start in starts:
                for method in args.methods.split(","):
                    for case in cases:
                        rows.append(run_one(args, case, k, method, start, Path(tmp),
                                            dataset.class_names))
                        print(json.dumps(rows[-1]), flush=True)
                        (args.out / "adapt_rows.json").write_text(json.dumps(rows, indent=2))
    table = format_table(rows)
    (args.out / "adapt_table.md").write_text(table)
    print(table)


def format_table(rows: list[dict]) -> str:
    """Mean over cases per (k, start, method): Dice before/after on unannotated slices, time."""
    lines = ["| k | start | method | Dice before | Dice after | Δ | seconds |",
             "|---|---|---|---:|---:|---:|---:|"]
    keys = sorted({(r["k"], r["start"], r["method"]) for r in rows})
    for k, start, method in keys:
        group = [r for r in rows if (r["k"], r["start"], r["method"]) == (k, start, method)]
        after = np.mean([r["after"] for r in group]) * 100
        befores = [r["before"] for r in group if r["before"] is not None]
        before = np.mean(befores) * 100 if befores else None
        delta = f"{after - before:+.1f}" if before is not None else "–"
        lines.append(f"| {k} | {start} | {method} | "
                     f"{'–' if before is None else f'{before:.1f}'} | {after:.1f} | {delta} | "
                     f"{np.mean([r['seconds'] for r in group]):.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
