"""Do bfloat16 and large windows change the segmentation on the CPU? A model segments the
validation volumes of a dataset once per variant; prints each volume's mean foreground Dice
against the ground truth per variant, the share of voxels whose label agrees with the first
variant, and the seconds of each pass (one after the other on the same volume), then the means.

Variants (`--variants`, comma-separated; the first is the reference):
- float32: `amp=False` (`arcoseg segment --no-amp`);
- bfloat16: the default on CPUs with native bf16;
- float32-large, bfloat16-large (3D models; tried, not adopted): instead of sliding the training
  patch, windows as large as one batch of patches (8): each side a multiple of 16 and at least
  the patch's, the window that covers the volume with the fewest computed voxels (windows x
  window voxels, MONAI's scan at overlap 0.25), as many at once as fit in the 8 patches.

    PYTHONPATH=training python training/benchmarks/experiments/cpu_inference_variants.py \\
        --model MODEL_DIR --data ../shared/data/ACDC --cases 20 --threads 2 \\
        [--variants float32,bfloat16]
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from pathlib import Path
from unittest import mock

import numpy as np
import SimpleITK as sitk
import torch

from arcoseg import inference
from arcoseg.data.dataset import load_dataset
from arcoseg.device import cpu_has_native_bf16
from arcoseg.inference import segment_channels
from arcoseg.io.images import read_image
from arcoseg.modelfile import load_model
from arcoseg.ranges import POSITIVE_INT

CPU = torch.device("cpu")
VARIANTS = {"float32": (False, False), "bfloat16": (True, False),  # name: (amp, large windows)
            "float32-large": (False, True), "bfloat16-large": (True, True)}
OVERLAP, PATCHES = 0.25, 8  # inference's overlap and default batch


def large_window(size: tuple[int, ...], patch: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    """The window of at most PATCHES patches' voxels covering `size` with the fewest computed
    voxels (ties: the smaller), and how many fit in PATCHES patches at once."""
    def sides(length: int, side: int) -> list[int]:
        return [side] + list(range(math.ceil((side + 1) / 16) * 16,
                                   max(side, math.ceil(length / 16) * 16) + 1, 16))

    budget = PATCHES * math.prod(patch)
    fitting = [w for w in itertools.product(*map(sides, size, patch))
               if math.prod(w) <= budget]
    window = min(fitting, key=lambda w: (inference._window_count(size, w, OVERLAP)
                                         * math.prod(w), math.prod(w)))
    return window, budget // math.prod(window)


def large_windows(window_function):
    """`inference._window` sliding `large_window`s over a 3D volume instead of the patch."""
    def sliding(net, batch, plan, sw_batch, overlap):
        if batch.ndim != 5:
            return window_function(net, batch, plan, sw_batch, overlap)
        window, fitting = large_window(tuple(batch.shape[2:]), tuple(plan.patch_size))
        return window_function(net, batch, mock.Mock(patch_size=window), fitting, overlap)
    return sliding


def foreground_dice(prediction: np.ndarray, truth: np.ndarray, values: list[int]) -> float:
    """Mean Dice over the foreground label values (1 where a class is absent from both)."""
    scores = []
    for value in values:
        a, b = prediction == value, truth == value
        total = a.sum() + b.sum()
        scores.append(2.0 * (a & b).sum() / total if total else 1.0)
    return float(np.mean(scores))


def variant_list(text: str) -> list[str]:
    names = text.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or len(names) < 2:
        raise argparse.ArgumentTypeError(f"need two or more of {', '.join(VARIANTS)}; "
                                         f"got {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--cases", type=POSITIVE_INT, default=20, help="the first N of splits.val")
    parser.add_argument("--threads", type=POSITIVE_INT, default=2)
    parser.add_argument("--variants", type=variant_list, default=["float32", "bfloat16"])
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if any(VARIANTS[v][0] for v in args.variants) and not cpu_has_native_bf16():
        parser.error("this CPU has no native bfloat16: inference stays float32 here")
    torch.set_num_threads(args.threads)
    model, meta = load_model(args.model)
    values = [c["value"] for c in meta.classes][1:]
    dice, agree, seconds = [], [], []
    for case in load_dataset(args.data).split_cases("val")[:args.cases]:
        image = read_image(case.images[0])
        truth = sitk.GetArrayFromImage(read_image(case.label))
        labels = []
        for name in args.variants:
            amp, large = VARIANTS[name]
            window = large_windows(inference._window) if large else inference._window
            start = time.perf_counter()
            with mock.patch.object(inference, "_window", window):
                seg = segment_channels(model, meta, [image], CPU, amp=amp,
                                       keep_probabilities=False)
            seconds.append(time.perf_counter() - start)
            labels.append(sitk.GetArrayFromImage(seg.labels))
        dice.extend(foreground_dice(lab, truth, values) for lab in labels)
        agree.extend(float((lab == labels[0]).mean()) for lab in labels)
        print(f"{case.id}: " + "; ".join(
            f"{name} Dice {100 * dice[-len(labels) + i]:.2f}, agreeing "
            f"{100 * agree[-len(labels) + i]:.3f} %, {seconds[-len(labels) + i]:.2f} s"
            for i, name in enumerate(args.variants)), flush=True)
    n = len(args.variants)
    d, a, s = (np.array(x).reshape(-1, n) for x in (dice, agree, seconds))
    print(f"\n{len(d)} volumes, against {args.variants[0]}:")
    for i, name in enumerate(args.variants):
        print(f"  {name}: mean Dice {100 * d[:, i].mean():.2f}; voxels agreeing: min "
              f"{100 * a[:, i].min():.3f} %; seconds: median ratio {args.variants[0]} / "
              f"{name} {np.median(s[:, 0] / s[:, i]):.2f}")


if __name__ == "__main__":
    main()
