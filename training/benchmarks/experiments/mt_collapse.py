"""Experiment: why mean teacher / ARCO collapsed towards background on ACDC (3 patients, CPU).

One variant per run, 1 000 iterations, validation Dice of the shipped network every 200:
    python training/benchmarks/experiments/mt_collapse.py VARIANT [--teacher-norm batch|running]
        [--data DIR] [--out DIR]
    python training/benchmarks/experiments/mt_collapse.py pseudo --model MODEL_DIR [--data DIR]
    python training/benchmarks/experiments/mt_collapse.py drift --model MODEL_DIR \
        [--teacher-norm batch|running] [--lambda-u 1.0] [--mix unlabelled|none]
Training variants (arco-sg unless said otherwise):
- spec: as specified, with the current defaults (teacher pseudo-labels with batch statistics;
  `--teacher-norm running` for its running BatchNorm statistics, as before the fix);
- pretrain: 400 supervised iterations, the teacher starts as a copy of the student, 100-iteration
  ramp-up; bcp: bidirectional CutMix between labelled and unlabelled images; bcp-pretrain: both;
- sup4: supervised with the semi-supervised runs' labelled batch of 4;
- run before the fix, so they use the running-statistics teacher: mask (only pixels with teacher
  confidence >= 0.97 in the pseudo-label loss), balanced (confident pixels only, classes weighted
  by inverse pseudo-label frequency), ramp (ramp-up over 40 %), warmup (no unlabelled term for the
  first 300 iterations, then a 200-iteration ramp-up, the teacher an EMA all along).
Checks:
- pseudo: a trained teacher's CutMix-mixed pseudo-labels on unlabelled training cases against
  their hidden ground truth (are the targets built aligned?);
- drift: from a trained model, mean-teacher steps; every 25 steps the teacher's predicted / true
  foreground ratio per class and Dice on fixed unlabelled slices (does the foreground shrink?).
Variants patch the method's functions in this process only.
"""

import argparse
import dataclasses
import tempfile
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import arcoseg.arco.step as step
from arcoseg.arco.cutmix import mixing_plan
from arcoseg.arco.config import ArcoConfig
from arcoseg.arco.step import SemiSupervisedMethod
from arcoseg.data.dataset import load_dataset
from arcoseg.data.cache import load_cases
from arcoseg.data.plan import Plan
from arcoseg.data.sampling import SliceSampler
from arcoseg.modelfile import load_model
from arcoseg.progress import Reporter
from arcoseg.ranges import NONNEG, POSITIVE_INT
from arcoseg.train.options import TrainOptions
from arcoseg.train.run import train
from arcoseg.train.trainer import Trainer, prepare_data
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
# the variants run before the teacher_norm fix: they reproduce with the running-statistics teacher
OLD_VARIANTS = ("mask", "balanced", "ramp", "warmup")


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
        view = method._teacher_pass(x[:0], x, plan)
        scores.append(class_dice(view.pseudo, plan.apply(y), 4))
    print("pseudo-label Dice per class:", np.nanmean(np.stack(scores), 0).round(3).tolist())


def foreground_drift(model_dir: Path, data: Path, teacher_norm: str, lambda_u: float,
                     mix: str, steps: int = 200) -> None:
    """From a trained model (teacher = student = it), run mean-teacher steps (ARCO without its
    contrastive and nearest-neighbour terms) and print, every 25 steps, the teacher's predicted /
    true pixel count per class and its Dice on 32 fixed unlabelled slices with hidden labels."""
    options = TrainOptions(dims=2, method="arco", labelled=3, iterations=1000, batch=4,
                           patch=(128, 128), spacing=(1.0, 2.0, 2.0), device="cpu",
                           val_every=10**6, checkpoint_every=10**6, rampup=1, lambda_u=lambda_u,
                           lambda_c=0.0, lambda_nn=0.0, teacher_norm=teacher_norm,
                           mix=mix)
    run = dataclasses.replace(prepare_data(data, options, Reporter(quiet=True)), val=[])
    model, _ = load_model(model_dir)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(run, options, Path(out), Reporter(quiet=True),
                          init_weights=model.state_dict())
        trainer.state.iteration = 400  # the learning rate of the pretrain variant's switch
        dataset = load_dataset(data)
        probe = load_cases(dataset, dataset.unlabelled_cases(dataset.labelled_cases(3))[:12],
                           run.plan)
        x, y = SliceSampler(probe, (128, 128), 32, seed=5, augment=False, fg_fraction=0.7).sample()
        for k in range(steps + 1):
            if k % 25 == 0:
                teacher = trainer.method.eval_model().eval()
                with torch.no_grad():
                    pred = teacher(x).argmax(1)
                ratio = [(pred == c).sum().item() / max(1, (y == c).sum().item()) for c in (1, 2, 3)]
                print(k, "predicted/true", np.round(ratio, 2).tolist(),
                      "Dice", np.round(class_dice(pred, y, 4), 3).tolist(), flush=True)
            if k < steps:
                trainer._step()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("variant", choices=("pseudo", "spec", "mask", "balanced", "ramp", "warmup",
                                       "sup4", "pretrain", "bcp", "bcp-pretrain", "drift"))
    p.add_argument("--data", type=Path, default=Path("../shared/data/ACDC"))
    p.add_argument("--out", type=Path, default=Path("results/mt_collapse"))
    p.add_argument("--model", type=Path, help="with 'pseudo' and 'drift': a trained model folder")
    p.add_argument("--teacher-norm", default="batch", choices=("batch", "running"),
                   help="the teacher's pseudo-labelling BatchNorm statistics")
    p.add_argument("--lambda-u", type=NONNEG, default=1.0, help="with 'drift'")
    p.add_argument("--mix", default="unlabelled", help="with 'drift': CutMix mode (or none)")
    p.add_argument("--threads", type=POSITIVE_INT, default=1)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.variant == "pseudo":
        check_pseudo_labels(args.model, args.data)
        return
    if args.variant == "drift":
        foreground_drift(args.model, args.data, args.teacher_norm, args.lambda_u, args.mix)
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
    options = dataclasses.replace(
        options, teacher_norm="running" if args.variant in OLD_VARIANTS else args.teacher_norm)
    if args.variant.startswith("bcp"):
        options = dataclasses.replace(options, mix="bidirectional")
    result = train(args.data, options, args.out / args.variant, Reporter(quiet=True))
    print(json.dumps(result["validation"]))


if __name__ == "__main__":
    main()
