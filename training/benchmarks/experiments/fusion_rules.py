"""Experiment: how should Adapt fuse its model with the drawing: which source, which weight?

Adapt's output fuses the adapted model with the drawing carried to the other slices
(`arcoseg.adapt.fusion`, `FusionSettings.source`): by copying the nearest drawn slice, or by
interpolating between the drawn slices (Slicer's "Fill between slices"; the nearest copy beyond
the outermost drawn slices). Fusion comes after training, so the same adapted model can be
fused both ways: this script reads the models an `adapt_benchmark.py --keep-models` run kept,
segments each case again with its model, and scores every source x weight on the same slices
nobody drew (Dice, mean over the foreground classes, %):

    python training/benchmarks/adapt_benchmark.py --data ../shared/data/LA --k 3 --cases 8 \
        --methods nearest,interpolate,arco --budget 120 --keep-models --out OUT
    python training/benchmarks/experiments/fusion_rules.py --data ../shared/data/LA --run OUT
    python training/benchmarks/experiments/fusion_rules.py --demo DEMO_OUT   # arcoseg demo --out
    python training/benchmarks/experiments/fusion_rules.py --count RUN [RUN ...]  # rows only

Weight 0 is the model alone (the same for both sources). "chosen on the held-out slice" picks,
per case, the source whose propagation of the other drawn slices scores higher on the slice
Adapt holds out for its check (the middle one; the nearest copy on ties and with fewer than two
other slices): a rule the product can apply before it writes the output. The weight rules, from
the held-out check's numbers the run recorded (`heldout`: the checked model alone, its fused
output, the copy): "held-out: alone if better" is Adapt's rule until session 10 (the model
alone where it beats the fused output on the held-out slice, else weight 0.5); "held-out: alone
if the copy < 0.4 x the model", Adapt's rule from scratch: the model alone only where the copy
scores below 0.4 times the model's Dice on the held-out slice (the copy there comes from twice
the distance the output's copies do, so only a large gap says the copy harms), else weight
0.5; "held-out: errors", Adapt's rule from a model: the same, else w = e_model / (e_model +
e_copy) with e = 1 - Dice on the held-out slice, at most 0.5. "nearest W between, model
beyond" fuses with weight W between the outermost drawn slices and writes the model alone
beyond them. Prints a Markdown table (mean ± std
over the cases, and the cases where each beats Fill between slices alone) and writes
OUT/fusion_rules.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # adapt_benchmark's helpers
from adapt_benchmark import score  # noqa: E402

from arcoseg.adapt.annotations import Annotations, hold_out  # noqa: E402
from arcoseg.adapt.baselines import BASELINES, PROPAGATIONS, propagate_labels  # noqa: E402
from arcoseg.adapt.check import slice_dice  # noqa: E402
from arcoseg.adapt.fusion import COPY_SHARE, FusionSettings, checked_fusion, fuse  # noqa: E402
from arcoseg.commands.common import AUTO_THREADS, apply_threads  # noqa: E402
from arcoseg.constants import FUSION_WEIGHT  # noqa: E402
from arcoseg.data.dataset import load_dataset  # noqa: E402
from arcoseg.demo.pipeline import simulate_annotations  # noqa: E402
from arcoseg.device import resolve_device  # noqa: E402
from arcoseg.inference import segment_channels  # noqa: E402
from arcoseg.io.images import read_image  # noqa: E402
from arcoseg.modelfile import load_model  # noqa: E402
from arcoseg.ranges import POSITIVE_INT, UNIT, ListOf  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, help="the dataset the run used")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--run", type=Path, help="an adapt_benchmark.py --keep-models output folder")
    where.add_argument("--demo", type=Path, help="an `arcoseg demo --out DIR` folder instead")
    where.add_argument("--count", type=Path, nargs="+", metavar="RUN",
                       help="only count, from the rows of adapt_benchmark runs (no kept models "
                            "needed), where the old rule wrote the model alone and how it did")
    p.add_argument("--weights", type=ListOf(UNIT), default="0.3,0.5,0.7",
                   help="the drawing's weights to score with each source")
    p.add_argument("--threads", type=POSITIVE_INT, default=AUTO_THREADS)
    return p


def adapted_rows(run: Path) -> list[dict]:
    """One benchmark row per adapted model (the fixed-weight rows repeat the model)."""
    rows = json.loads((run / "adapt_rows.json").read_text())
    seen, out = set(), []
    for row in rows:
        if row.get("model_path") and row["model_path"] not in seen:
            seen.add(row["model_path"])
            out.append(row)
    if not out:
        raise SystemExit(f"{run}: no adapted model in adapt_rows.json; run adapt_benchmark.py "
                         "with --keep-models.")
    return out


def score_case(row: dict, case, weights: list[float], num_classes: int) -> dict[str, float]:
    """Dice on the unannotated slices of every output (see the module doc) for one kept model."""
    image = read_image(case.images[0])
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(case.label)))
    slices = row["slices"]
    device = resolve_device("auto")
    model, meta = load_model(Path(row["model_path"]), device=device)
    probs = segment_channels(model, meta, [image], device).probabilities
    drawing = Annotations(simulate_annotations(labels, 0, slices), 0, slices)
    spacing_zyx = tuple(reversed(image.GetSpacing()))

    @functools.cache
    def fused(weight: float, source: str = "nearest") -> float:
        settings = FusionSettings(weight=weight, source=source)
        output = fuse(probs, drawing, spacing_zyx, settings).argmax(axis=0)
        return score(output, labels, slices, num_classes)["after"]

    @functools.cache
    def between(weight: float) -> float:
        """Fused between the outermost drawn slices, the model alone beyond them."""
        output = fuse(probs, drawing, spacing_zyx, FusionSettings(weight=weight)).argmax(axis=0)
        alone = fuse(probs, drawing, spacing_zyx, FusionSettings(weight=0.0)).argmax(axis=0)
        beyond = (np.arange(labels.shape[0]) < min(slices)) | (np.arange(labels.shape[0])
                                                              > max(slices))
        output[beyond] = alone[beyond]
        return score(output, labels, slices, num_classes)["after"]

    scores = {"model alone": fused(0.0)}
    scores.update({f"{source} {weight:g}": fused(weight, source)
                   for source in PROPAGATIONS for weight in weights})
    scores.update({f"nearest {weight:g} between, model beyond": between(weight)
                   for weight in weights})
    scores.update(weight_rules(row.get("heldout") or {}, fused))
    held = heldout_propagation(drawing, num_classes)
    chosen = max(held, key=lambda source: (held[source] or 0.0, source == "nearest"))
    scores.update({f"chosen on the held-out slice {weight:g}": fused(weight, chosen)
                   for weight in weights})
    return {**scores, **{f"held-out slice: {source}": held[source] for source in held}}


def weight_rules(check: dict, fused: Callable[[float], float]) -> dict[str, float]:
    """The Dice of each weight rule (module doc) from the held-out check's numbers; the last
    two are the product's own (`checked_fusion`, from scratch and from a model)."""
    alone, output, copied = (check.get(k) for k in ("adapted_dice", "output_dice", "copy_dice"))
    out = {}
    if alone is not None and output is not None:
        out["held-out: alone if better"] = fused(0.0 if _old_rule_alone(check) else FUSION_WEIGHT)
    if alone is not None and copied is not None:
        for from_model, name in ((False, f"alone if the copy < {COPY_SHARE:g} x the model"),
                                 (True, "errors")):
            chosen = checked_fusion(FusionSettings(), {**check, "note": ""},
                                    from_model=from_model).weight
            out[f"held-out: {name}"] = fused(chosen)
    return out


def _old_rule_alone(check: dict) -> bool:
    """The rule Adapt used until 2026-12-01: the model alone where it beat its fused output on
    the held-out slice."""
    return check["output_dice"] < check["adapted_dice"]


def heldout_propagation(drawing: Annotations, num_classes: int) -> dict[str, float | None]:
    """Dice of each propagation of the training slices on Adapt's held-out slice (the middle
    drawn slice, `annotations.hold_out`); interpolation needs two training slices."""
    train, held_out = hold_out(drawing)
    if held_out is None:
        return {"nearest": None}
    sources = PROPAGATIONS if len(train.slices) > 1 else ("nearest",)
    return {source: slice_dice(propagate_labels(train.labels, train.axis, train.slices, source),
                               held_out.labels, num_classes) for source in sources}


def main() -> None:
    args = build_parser().parse_args()
    apply_threads(args.threads)
    if args.count:
        print(count_old_rule(args.count))
        return
    results = demo_results(args) if args.demo else run_results(args)
    out = args.demo or args.run
    (out / "fusion_rules.json").write_text(json.dumps(results, indent=2))
    print(format_table(results))


def run_results(args: argparse.Namespace) -> list[dict]:
    """Every kept model of an adapt_benchmark run, scored (one JSON line each as it goes)."""
    if args.data is None:
        raise SystemExit("--run needs --data (the dataset the run used).")
    dataset = load_dataset(args.data)
    cases = {c.id: c for c in dataset.split_cases("val")}
    baselines = {(r["case"], r["k"], r["method"]): r["after"]
                 for r in json.loads((args.run / "adapt_rows.json").read_text())
                 if r["method"] in PROPAGATIONS}
    results = []
    for row in adapted_rows(args.run):
        scores = score_case(row, cases[row["case"]], args.weights, len(dataset.class_names))
        for method in PROPAGATIONS:
            scores[f"{method} alone"] = baselines.get((row["case"], row["k"], method), np.nan)
        results.append({"case": row["case"], "k": row["k"], "scores": scores})
        print(json.dumps(results[-1]), flush=True)
    return results


def demo_results(args: argparse.Namespace) -> list[dict]:
    """An `arcoseg demo --out DIR` run scored the same way: its inputs, its adapted model and
    the held-out check its model.json keeps."""
    inputs = args.demo / "inputs"
    versions = sorted((args.demo / "registry" / "models" / "demo" / "versions").iterdir(),
                      key=lambda p: int(p.name[1:]))
    meta = json.loads((versions[-1] / "model.json").read_text())
    slices = meta["provenance"]["images"][0]["annotated_slices"]
    case = SimpleNamespace(images=[inputs / "image.nii.gz"], label=inputs / "full_labels.nii.gz")
    row = {"slices": slices, "model_path": str(versions[-1]),
           "heldout": meta["provenance"]["held_out"]}
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(case.label)))
    num_classes = int(labels.max()) + 1
    scores = score_case(row, case, args.weights, num_classes)
    drawing = simulate_annotations(labels, 0, slices)
    for method in PROPAGATIONS:  # the free baselines, as adapt_benchmark.py scores them
        filled = BASELINES[method](drawing, 0, slices)
        scores[f"{method} alone"] = score(filled, labels, slices, num_classes)["after"]
    return [{"case": "demo", "k": len(slices), "scores": scores}]


def count_old_rule(runs: list[Path]) -> str:
    """Over the Adapt rows of `runs` that keep the held-out check's numbers: how often the old
    rule wrote the model alone, how often weight 0.5 then scored higher on the slices nobody
    drew (and by how much), and the lowest copy / model ratio on the held-out slice."""
    volumes = {}
    for run in runs:
        for row in json.loads((run / "adapt_rows.json").read_text()):
            check = row.get("heldout") or {}
            if row["method"] == "arco" and "fusion" in row and check.get("output_dice") is not None:
                volume = volumes.setdefault((str(run), row["case"], row["k"]), {"check": check})
                volume[row["fusion"]] = row["after"]
    alone = [v for v in volumes.values() if _old_rule_alone(v["check"])]
    gains = [v[FUSION_WEIGHT] - v[0.0] for v in alone]
    ratio = min(v["check"]["copy_dice"] / max(1e-9, v["check"]["adapted_dice"])
                for v in volumes.values())
    return (f"{len(volumes)} volumes; the old rule wrote the model alone on {len(alone)}; "
            f"weight {FUSION_WEIGHT:g} scored higher on {sum(g > 0 for g in gains)} of them "
            f"(mean {np.mean(gains) * 100:+.1f} points there); lowest copy / model ratio on "
            f"the held-out slice {ratio:.2f} (the new rule's threshold: {COPY_SHARE:g})")


def format_table(results: list[dict]) -> str:
    """Per k: mean ± std (%) of each output over the cases that have it, and the cases above
    Fill between slices."""
    lines = ["| k | output | cases | Dice unannotated | cases above Fill between slices |",
             "|---:|---|---:|---:|---:|"]
    for k in sorted({r["k"] for r in results}):
        group = [r["scores"] for r in results if r["k"] == k]
        names = list(dict.fromkeys(name for scores in group for name in scores))
        fill = np.array([scores["interpolate alone"] for scores in group], dtype=float)
        for name in names:
            values = np.array([scores.get(name, np.nan) for scores in group], dtype=float)
            have = ~np.isnan(values)
            lines.append(f"| {k} | {name} | {int(have.sum())} | "
                         f"{np.nanmean(values) * 100:.1f} ± {np.nanstd(values) * 100:.1f} | "
                         f"{int((values[have] > fill[have]).sum())} of {int(have.sum())} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
