"""Does bfloat16 inference on the CPU change the segmentation? A model segments the validation
volumes of a dataset twice, in float32 (`--no-amp`) and in bfloat16 (the default on CPUs with
native bf16); prints each volume's mean foreground Dice against the ground truth both ways and
the share of voxels whose label agrees, then the means (seconds of each pass too, one after the
other on the same volume).

    PYTHONPATH=training python training/benchmarks/experiments/cpu_bf16_inference.py \\
        --model MODEL_DIR --data ../shared/data/ACDC --cases 20 --threads 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from arcoseg.data.dataset import load_dataset
from arcoseg.device import cpu_has_native_bf16
from arcoseg.inference import segment_channels
from arcoseg.io.images import read_image
from arcoseg.modelfile import load_model
from arcoseg.ranges import POSITIVE_INT

CPU = torch.device("cpu")


def foreground_dice(prediction: np.ndarray, truth: np.ndarray, values: list[int]) -> float:
    """Mean Dice over the foreground label values (1 where a class is absent from both)."""
    scores = []
    for value in values:
        a, b = prediction == value, truth == value
        total = a.sum() + b.sum()
        scores.append(2.0 * (a & b).sum() / total if total else 1.0)
    return float(np.mean(scores))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--cases", type=POSITIVE_INT, default=20, help="the first N of splits.val")
    parser.add_argument("--threads", type=POSITIVE_INT, default=2)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not cpu_has_native_bf16():
        parser.error("this CPU has no native bfloat16: inference stays float32 here")
    torch.set_num_threads(args.threads)
    model, meta = load_model(args.model)
    values = [c["value"] for c in meta.classes][1:]
    rows = []
    for case in load_dataset(args.data).split_cases("val")[:args.cases]:
        image = read_image(case.images[0])
        truth = sitk.GetArrayFromImage(read_image(case.label))
        labels, seconds = {}, {}
        for name, amp in (("float32", False), ("bfloat16", True)):
            start = time.perf_counter()
            seg = segment_channels(model, meta, [image], CPU, amp=amp, keep_probabilities=False)
            seconds[name] = time.perf_counter() - start
            labels[name] = sitk.GetArrayFromImage(seg.labels)
        row = (foreground_dice(labels["float32"], truth, values),
               foreground_dice(labels["bfloat16"], truth, values),
               float((labels["float32"] == labels["bfloat16"]).mean()),
               seconds["float32"], seconds["bfloat16"])
        rows.append(row)
        print(f"{case.id}: Dice float32 {100 * row[0]:.2f}, bfloat16 {100 * row[1]:.2f}, "
              f"voxels agreeing {100 * row[2]:.3f} %, {row[3]:.1f} s / {row[4]:.1f} s", flush=True)
    r = np.array(rows)
    print(f"\n{len(rows)} volumes: mean Dice float32 {100 * r[:, 0].mean():.2f}, bfloat16 "
          f"{100 * r[:, 1].mean():.2f}; voxels agreeing: min {100 * r[:, 2].min():.3f} %; "
          f"seconds float32 / bfloat16 (median ratio): {np.median(r[:, 3] / r[:, 4]):.2f}")


if __name__ == "__main__":
    main()
