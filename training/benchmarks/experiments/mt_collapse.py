"""Experiment: why mean teacher / ARCO collapse towards background on ACDC (3 patients, CPU).

One variant per run, 1 000 iterations, validation Dice of the shipped network every 200:
    python training/benchmarks/experiments/mt_collapse.py VARIANT [--data DIR] [--out DIR]
VARIANT: spec (as specified), mask (only pixels with teacher confidence >= 0.97 contribute to
the pseudo-label loss), ramp (ramp-up over 40 %), warmup (no unlabelled term for the first
300 iterations, then a 200-iteration ramp-up), sup4 (supervised with the semi-supervised runs'
labelled batch of 4). Variants patch the method's functions in this process only.
"""

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

import arcoseg.arco.step as step
from arcoseg.progress import Reporter
from arcoseg.train.options import TrainOptions
from arcoseg.train.trainer import train


def confident_only(logits, pseudo, confidence, valid, threshold=0.97):
    ce = F.cross_entropy(logits.float(), pseudo.long(), reduction="none")
    return (ce * ((confidence >= threshold) & valid)).sum() / valid.sum().clamp(min=1)


_RAMPUP = step.sigmoid_rampup


def delayed_rampup(iteration, length, start=300):
    return 0.0 if iteration < start else _RAMPUP(iteration - start, 200)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("variant", choices=("spec", "mask", "ramp", "warmup", "sup4"))
    p.add_argument("--data", type=Path, default=Path("../shared/data/ACDC"))
    p.add_argument("--out", type=Path, default=Path("results/mt_collapse"))
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.variant == "mask":
        step.unsupervised_loss = confident_only
    if args.variant == "warmup":
        step.sigmoid_rampup = delayed_rampup
    options = TrainOptions(dims=2, method="supervised" if args.variant == "sup4" else "arco",
                           sampler="sg", labelled=3, iterations=1000, batch=4, patch=(128, 128),
                           spacing=(1.0, 2.0, 2.0), device="cpu", val_every=200,
                           checkpoint_every=10**6, rampup=400 if args.variant == "ramp" else None)
    result = train(args.data, options, args.out / args.variant, Reporter(quiet=True))
    print(json.dumps(result["validation"]))


if __name__ == "__main__":
    main()
