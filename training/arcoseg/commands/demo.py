"""`arcoseg demo`: the main job end to end on a built-in synthetic phantom dataset.

Builds a small phantom dataset, trains a 2D model, segments a held-out volume, evaluates it and
writes a PNG overlay — a first run that needs no data and shows every output the engine makes.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any, Callable

import SimpleITK as sitk

from arcoseg.commands.common import add_device_arguments
from arcoseg.data.dataset import load_dataset
from arcoseg.data.synthetic import make_phantom_dataset
from arcoseg.device import resolve_device
from arcoseg.evaluation.evaluate import evaluate, format_summary_table
from arcoseg.evaluation.plots import save_overlay_png
from arcoseg.inference import segment_file
from arcoseg.modelfile import load_model
from arcoseg.progress import Reporter
from arcoseg.train.options import TrainOptions
from arcoseg.train.trainer import train


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `demo`."""
    p = sub.add_parser("demo", help="run the whole pipeline on a built-in synthetic dataset",
                       description="Build a synthetic phantom dataset, train a 2D model, segment "
                                   "a held-out volume, evaluate it and write a PNG overlay. The "
                                   "output folder's model is replaced on every run.")
    p.add_argument("-o", "--out", type=Path, default=Path("demo_output"),
                   help="output folder (default ./demo_output)")
    p.add_argument("--iterations", type=int, default=300)
    add_device_arguments(p)
    return p


def run(args: argparse.Namespace, reporter: Reporter, stop: Callable[[], bool]) -> dict[str, Any]:
    """Phantom data → train → segment → evaluate → overlay PNG."""
    out: Path = args.out
    device = resolve_device(args.device)
    dataset_dir = make_phantom_dataset(out / "dataset", num_cases=8, val_cases=2, seed=0)
    reporter.log(f"Synthetic dataset: {dataset_dir}")
    options = TrainOptions(dims=2, iterations=args.iterations, batch=8, patch=(48, 48),
                           val_every=max(1, args.iterations // 3), log_every=5,
                           checkpoint_every=args.iterations, device=str(device), amp=args.amp,
                           cache_dir=out / "cache")
    model_dir = out / "model"
    shutil.rmtree(model_dir, ignore_errors=True)  # the demo always trains afresh
    training = train(dataset_dir, options, model_dir, reporter, resume=False, should_stop=stop)
    dataset = load_dataset(dataset_dir)
    case = dataset.split_cases("val")[0]
    model, metadata = load_model(model_dir, device=device)
    pred_path = out / "segmentation" / f"{case.id}.nii.gz"
    segment_file(model, metadata, case.images, pred_path, device, amp=args.amp)
    summary = evaluate(pred_path, case.label, dataset.foreground_labels, out / "evaluation", reporter)
    reporter.log(format_summary_table(summary))
    overlay = out / "overlay.png"
    save_overlay_png(sitk.GetArrayFromImage(sitk.ReadImage(str(case.images[0]))),
                     sitk.GetArrayFromImage(sitk.ReadImage(str(pred_path))), overlay,
                     colors=[c["color"] for c in metadata.classes],
                     gt_zyx=sitk.GetArrayFromImage(sitk.ReadImage(str(case.label))),
                     title=f"{case.id}: prediction (top) and ground truth (bottom)")
    return {"model": str(model_dir), "segmentation": str(pred_path), "overlay": str(overlay),
            "evaluation": str(out / "evaluation"), "training": training, "summary": summary}
