"""`arcoseg train`: train a model on a dataset folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from arcoseg.commands.common import HelpFormatter, add_device_arguments, existing_path
from arcoseg.constants import (DEFAULT_JITTER, METHODS, MIX_MODES, OPTIMIZERS, SAMPLERS,
                               TEACHER_NORMS)
from arcoseg.io.outputs import output_path
from arcoseg.progress import Reporter
from arcoseg.ranges import (CONTEXT_SLICES, FRACTION, NONNEG, NONNEG_INT, POSITIVE, POSITIVE_INT,
                            SEED, TRAIN_BATCH)

if TYPE_CHECKING:
    from arcoseg.train.options import TrainOptions


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `train`."""
    p = sub.add_parser("train", help="train a segmentation model on a dataset",
                       description="Train on a dataset folder in nnU-Net v2 or Medical "
                                   "Segmentation Decathlon layout. Writes MODEL_DIR/model.safetensors "
                                   "+ model.json (the best checkpoint on the validation split), "
                                   "MODEL_DIR/training/metrics.jsonl and curves.png.",
                       formatter_class=HelpFormatter)
    p.add_argument("dataset", type=existing_path, help="dataset folder (holds dataset.json)")
    p.add_argument("--out", "-o", type=output_path, required=True, help="model folder to write")
    p.add_argument("--dims", type=int, choices=(2, 3), default=2, help="2D slice or 3D patch model")
    p.add_argument("--method", choices=METHODS, default="supervised",
                   help="supervised (labelled only), mean_teacher, or arco")
    p.add_argument("--sampler", choices=SAMPLERS, default="sg",
                   help="ARCO pixel sampler: naive (ns), stratified group (sg), stratified "
                        "antithetic group (sag)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--labelled", type=POSITIVE_INT,
                       help="use the first N cases of labelled_order as labelled (default: all "
                            "training cases)")
    group.add_argument("--labelled-list", type=existing_path,
                       help="file with one labelled case id per line")
    p.add_argument("--unlabelled", type=existing_path, nargs="+", default=[],
                   help="extra unlabelled images or folders for semi-supervised methods")
    p.add_argument("--iterations", type=POSITIVE_INT, default=2000,
                   help="training iterations (optimizer steps)")
    p.add_argument("--batch", type=TRAIN_BATCH, default=4, help="labelled samples per iteration")
    p.add_argument("--unlabelled-batch", type=TRAIN_BATCH,
                   help="unlabelled samples per iteration (default: same as --batch)")
    p.add_argument("--patch", type=POSITIVE_INT, nargs="+",
                   help="training patch: 'Y X' for 2D (default 128 128), 'Z Y X' for 3D "
                        "(default 48 64 64); multiples of 16")
    p.add_argument("--spacing", type=POSITIVE, nargs=3, metavar=("Z", "Y", "X"),
                   help="target spacing in mm (default: the dataset's median)")
    p.add_argument("--context-slices", type=CONTEXT_SLICES, default=0,
                   help="2D: neighbouring slices on each side given as extra input channels "
                        "(2.5D input; 0: the slice alone)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd",
                   help="sgd: SGD with Nesterov momentum (the paper's); adamw: AdamW (use "
                        "--lr 0.001)")
    p.add_argument("--lr", type=POSITIVE, default=0.01,
                   help="initial learning rate (poly decay to 0 over the iterations)")
    p.add_argument("--seed", type=SEED, default=0,
                   help="random seed (weights, sampling, augmentation): same seed, same run")
    p.add_argument("--val-every", type=POSITIVE_INT, default=200,
                   help="validate every N iterations")
    p.add_argument("--checkpoint-every", type=POSITIVE_INT, default=500,
                   help="save a checkpoint for --resume every N iterations")
    p.add_argument("--lambda-u", type=NONNEG, default=1.0, help="weight of the pseudo-label loss")
    p.add_argument("--lambda-c", type=NONNEG, default=0.01,
                   help="weight of the contrastive loss")
    p.add_argument("--lambda-nn", type=NONNEG, default=1.0,
                   help="weight of the nearest-neighbour loss (0 switches it off)")
    p.add_argument("--rampup", type=NONNEG_INT,
                   help="ramp-up iterations of the unlabelled terms (default: a fifth of the "
                        "iterations after --warmup)")
    p.add_argument("--warmup", type=NONNEG_INT, default=0,
                   help="supervised-only iterations before the semi-supervised terms start; the "
                        "teacher then starts as a copy of the student")
    p.add_argument("--mix", choices=MIX_MODES, default="unlabelled",
                   help="CutMix of the semi-supervised methods: within the unlabelled batch "
                        "(the paper), bidirectional between labelled and unlabelled images "
                        "(BCP), or none")
    p.add_argument("--teacher-norm", choices=TEACHER_NORMS, default="batch",
                   help="BatchNorm statistics of the teacher's pseudo-labelling pass: the batch's "
                        "own (running statistics made pseudo-labels collapse towards "
                        "background on ACDC) or the running ones")
    p.add_argument("--jitter", type=FRACTION, default=DEFAULT_JITTER,
                   help="intensity augmentation of the labelled batches and of the student's "
                        "view of unlabelled images: contrast x(1 +- S), brightness +- S on "
                        "normalised intensities, per image; 0 switches it off")
    p.add_argument("--grid", type=POSITIVE_INT, default=4, help="SG/SAG group grid size per axis")
    p.add_argument("--cache-dir", type=Path, help="preprocessing cache (default: $ARCOSEG_CACHE "
                                                  "or ~/.cache/arcoseg)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    add_device_arguments(p)
    p.add_argument("--amp", action="store_true",
                   help="bfloat16 mixed precision on CUDA GPUs and, for 2D models, on CPUs "
                        "with native bfloat16 (AVX512-BF16, AMX); off by default until measured "
                        "on the paper benchmark")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                   help="channels-last memory format for the networks and batches (default: on "
                        "the CPU, where it is 20-30 %% faster; off on GPUs until measured there)")
    p.add_argument("--sync-bn", action="store_true",
                   help="under torchrun on CUDA GPUs: BatchNorm over the global batch "
                        "(SyncBatchNorm) instead of each process's shard")
    p.set_defaults(amp=False)
    return p


def options_from_args(args: argparse.Namespace) -> TrainOptions:
    """Build TrainOptions from parsed arguments."""
    from arcoseg.train.options import TrainOptions  # torch: only when run

    return TrainOptions(
        dims=args.dims, method=args.method, sampler=args.sampler, labelled=args.labelled,
        labelled_list=args.labelled_list, unlabelled=list(args.unlabelled),
        iterations=args.iterations, batch=args.batch, unlabelled_batch=args.unlabelled_batch,
        patch=tuple(args.patch) if args.patch else None,
        spacing=tuple(args.spacing) if args.spacing else None,
        context_slices=args.context_slices, lr=args.lr, seed=args.seed,
        optimizer=args.optimizer, device=args.device, amp=args.amp,
        channels_last=args.channels_last,
        sync_bn=args.sync_bn, val_every=args.val_every,
        checkpoint_every=args.checkpoint_every, lambda_u=args.lambda_u, lambda_c=args.lambda_c,
        lambda_nn=args.lambda_nn, rampup=args.rampup, warmup=args.warmup, mix=args.mix,
        teacher_norm=args.teacher_norm, jitter=args.jitter,
        grid=args.grid, cache_dir=args.cache_dir,
        log_every=max(1, min(10, args.iterations // 100)))


def run(args: argparse.Namespace, reporter: Reporter, stop: Callable[[], bool]) -> dict[str, Any]:
    """Train and return the result summary (under torchrun, rank 0 reports it)."""
    from arcoseg.io.outputs import check_output_folder
    from arcoseg.train import distributed  # torch, MONAI: only when run
    from arcoseg.train.run import train

    if not distributed.from_environment().is_main:
        distributed.silence(reporter)
    check_output_folder(args.out)  # before preprocessing and training, not at the final save
    return train(args.dataset, options_from_args(args), args.out, reporter,
                 resume=args.resume, should_stop=stop)
