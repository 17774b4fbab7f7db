"""Experiment: why mean teacher / ARCO collapse towards background on ACDC (3 patients, CPU).

One variant per run, 1 000 iterations, validation Dice of the shipped network every 200:
    python training/benchmarks/experiments/mt_collapse.py VARIANT [--data DIR] [--out DIR]
    python training/benchmarks/experiments/mt_collapse.py pseudo --model MODEL_DIR [--data DIR]
VARIANT: balanced (confident pixels only, classes weighted by inverse pseudo-label frequency),
pseudo (check that a trained teacher's CutMix-mixed pseudo-labels on unlabelled training
cases agree with their hidden ground truth, i.e. that the targets are built aligned), spec (as specified), mask (only pixels with teacher confidence >= 0.97 contribute to
the pseudo-label loss), ramp (ramp-up over 40 %), warmup (no unlabelled term for the first
300 iterations, then a 200-iteration ramp-up), sup4 (supervised with the semi-supervised runs'
labelled batch of 4). Variants patch the method's functions in this process only.
"""

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import arcoseg.arco.step as step
from arcoseg.arco.cutmix import mixing_plan
from arcoseg.arco.step import ArcoConfig, SemiSupervisedMethod
from arcoseg.data.dataset import load_dataset
from arcoseg.data.preprocess import Plan, load_cases
from arcoseg.data.sampling import SliceSampler
from arcoseg.modelfile import load_model
from arcoseg.progress import Reporter
from arcoseg.train.options import TrainOptions
from arcoseg.train.trainer import train
from arcoseg.train.validation import class_dice


def confident_only(logits, pseudo, confidence, valid, threshold=0.97):
    ce = F.cross_entropy(logits.float(), pseudo.long(), reduction="none")
    return (ce * ((confidence >= threshold) & valid)).sum() / valid.sum().clamp(min=1)


def class_balanced(logits, pseudo, confidence, valid, threshold=0.97):
    """Confident pixels only, each pseudo-class weighted by its inverse frequency in the batch."""
    keep = (confidence >= threshold) & valid
    counts = torch.bincount(pseudo[keep].long().flatten(), minlength=logits.shape[1]).float()
    weights = torch.where(counts > 0, counts.sum() / (counts.clamp(min=1) * logits.shape[1]),
                          torch.zeros_like(counts))
    ce = F.cross_entropy(logits.float(), pseudo.long(), weight=weights, reduction="none")
    return (ce * keep).sum() / keep.sum().clamp(min=1)


_RAMPUP = step.sigmoid_rampup
# supervised warm-up whose end makes the teacher a copy of the student, then a short ramp-up
PRETRAIN = {"warmup": 400, "rampup": 100}


def delayed_rampup(iteration, length, start=300):
    return 0.0 if iteration < start else _RAMPUP(iteration - start, 200)


def check_pseudo_labels(model_dir: Path, data: Path, batches: int = 5) -> None:
    """Mean Dice per class of the mixed pseudo-labels against the mixed hidden ground truth."""
    teacher, meta = load_model(model_dir)
    dataset = load_dataset(data)
    unlabelled = dataset.unlabelled_cases(dataset.labelled_cases(3))[:10]
    cases = load_cases(dataset, unlabelled, Plan.from_dict(meta.plan))
    sampler = SliceSampler(cases, (128, 128), 8, seed=3)  # these labels are the hidden truth
    method = SemiSupervisedMethod(teacher, ArcoConfig(method="mean_teacher"), num_classes=4,
                                  spatial_dims=2, device=torch.device("cpu"))
    scores = []
    for _ in range(batches):
        x, y = sampler.sample()
        plan = mixing_plan(0, x.shape[0], tuple(x.shape[2:]), "unlabelled", method.generator)
        view = method._teacher_pass(x, plan.apply(x), plan, 0)
        scores.append(class_dice(view.pseudo, plan.apply(y), 4))
    print("pseudo-label Dice per class:", np.nanmean(np.stack(scores), 0).round(3).tolist())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("variant", choices=("pseudo", "spec", "mask", "balanced", "ramp", "warmup",
                                       "sup4", "pretrain", "bcp", "bcp-pretrain"))
    p.add_argument("--data", type=Path, default=Path("../shared/data/ACDC"))
    p.add_argument("--out", type=Path, default=Path("results/mt_collapse"))
    p.add_argument("--model", type=Path, help="with 'pseudo': a trained model folder")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.variant == "pseudo":
        check_pseudo_labels(args.model, args.data)
        return
    if args.variant == "mask":
        step.unsupervised_loss = confident_only
    if args.variant == "balanced":
        step.unsupervised_loss = class_balanced
    if args.variant == "warmup":
        step.sigmoid_rampup = delayed_rampup
    options = TrainOptions(dims=2, method="supervised" if args.variant == "sup4" else "arco",
                           sampler="sg", labelled=3, iterations=1000, batch=4, patch=(128, 128),
                           spacing=(1.0, 2.0, 2.0), device="cpu", val_every=200,
                           checkpoint_every=10**6, rampup=400 if args.variant == "ramp" else None)
    if args.variant.endswith("pretrain"):
        options = dataclasses.replace(options, **PRETRAIN)
    if args.variant.startswith("bcp"):
        options = dataclasses.replace(options, mix="bidirectional")
    result = train(args.data, options, args.out / args.variant, Reporter(quiet=True))
    print(json.dumps(result["validation"]))


if __name__ == "__main__":
    main()
