"""`arcoseg adapt`: fine-tune from a few annotated slices plus unlabelled images."""

from __future__ import annotations

import argparse
from typing import Any, Callable

from arcoseg.commands.common import HelpFormatter, add_device_arguments, existing_path
from arcoseg.constants import (DEFAULT_PRIOR, FUSION_WEIGHT, OPTIMIZERS, PARENT_PRIOR, PRIOR_MODES,
                               SAMPLERS)
from arcoseg.errors import InputError
from arcoseg.io.outputs import output_path
from arcoseg.progress import Reporter
from arcoseg.ranges import (CONTEXT_SLICES, FRACTION, NONNEG, NONNEG_INT, POSITIVE, POSITIVE_INT,
                            SEED, UNIT)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `adapt`."""
    p = sub.add_parser(
        "adapt", help="fine-tune a model from a few annotated slices (semi-supervised ARCO)",
        description="Train a new model version from images in which only some slices are "
                    "annotated (label values = class indices 1…n, also for a model whose "
                    "classes have other label values; 0 = background on annotated slices, "
                    "255 = explicitly unannotated), plus unlabelled images. One annotated "
                    "slice is held out to compare the parent and the adapted model; a worse "
                    "model is saved but not activated. Prints the next slices to annotate.",
        formatter_class=HelpFormatter)
    p.add_argument("--image", type=existing_path, nargs="+", required=True,
                   help="image(s) the annotations were drawn on (files or DICOM series folders)")
    p.add_argument("--annotations", type=existing_path, nargs="+", required=True,
                   help="one annotation label map per --image (same grid)")
    p.add_argument("--slices", help="annotated slice indices, e.g. 12,17 (default: every slice "
                                    "holding a label)")
    p.add_argument("--axis", default="auto", choices=("auto", "0", "1", "2"),
                   help="array axis the annotated slices cut (0 z, 1 y, 2 x; auto: the axis "
                        "along which the drawn voxels occupy the fewest slices)")
    p.add_argument("--unlabelled", type=existing_path, nargs="+", default=[],
                   help="extra unlabelled images or folders (other series, other patients)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--model", help="parent: a registry name (name@version) or model folder")
    source.add_argument("--from-scratch", action="store_true", help="start a new model")
    p.add_argument("--classes", help="with --from-scratch: class names, e.g. liver,tumour")
    p.add_argument("--context-slices", type=CONTEXT_SLICES,
                   help="with --from-scratch: neighbouring slices on each side the new 2D model "
                        "sees as extra input channels (2.5D input; default 0: the slice alone)")
    p.add_argument("--name", help="registry name of the adapted model (default: the parent's)")
    p.add_argument("--budget", type=POSITIVE, default=120.0,
                   help="training time budget in seconds")
    p.add_argument("--iterations", type=POSITIVE_INT, default=2000,
                   help="at most this many iterations")
    p.add_argument("--method", choices=("arco", "mean_teacher", "supervised"), default="arco",
                   help="arco: semi-supervised contrastive (the paper); mean_teacher; "
                        "supervised: the annotated slices only")
    p.add_argument("--sampler", choices=SAMPLERS, default="sg",
                   help="ARCO pixel sampler: naive (ns), stratified group (sg), stratified "
                        "antithetic group (sag)")
    p.add_argument("--warmup", type=FRACTION,
                   help="fraction of the schedule trained supervised-only before the "
                        "semi-supervised terms start (default: 0.5 with --from-scratch, else 0)")
    p.add_argument("--optimizer", choices=OPTIMIZERS,
                   help="adamw or sgd (default: adamw)")
    p.add_argument("--lr", type=POSITIVE,
                   help="initial learning rate (default: 0.001 for adamw, 0.01 for sgd)")
    p.add_argument("--prior", choices=PRIOR_MODES, default=DEFAULT_PRIOR,
                   help="propagation prior: the drawn labels copied (nearest) or interpolated "
                        "(interpolate, needs arcoseg[bench]) to the neighbouring slices as "
                        "fading extra targets; none to switch it off")
    p.add_argument("--parent-prior", type=NONNEG,
                   help="with --model: weight of the parent's prediction on the slices far from "
                        "the drawing, trained on so that Adapt keeps what the parent knew there "
                        "(scaled by the parent's Dice on the drawn slices; 0: off; default "
                        f"{PARENT_PRIOR:g})")
    p.add_argument("--fusion-weight", type=UNIT, default=FUSION_WEIGHT,
                   help="weight of the drawing in the output: the adapted model's probabilities "
                        "and a soft copy of the nearest drawn slice, fused per voxel (0: the "
                        "model alone, 1: the soft copy alone, which blurs with the distance to "
                        "the drawn slice)")
    p.add_argument("--no-holdout", dest="holdout", action="store_false",
                   help="train on every annotated slice (no held-out check)")
    p.add_argument("--suggest", type=NONNEG_INT, default=3,
                   help="how many next slices to suggest (0: none)")
    p.add_argument("-o", "--out", type=output_path,
                   help="segmentation output: a file for one image (NAME.seg.nrrd: a Slicer "
                        "segmentation, one named segment per class), a folder for several")
    p.add_argument("--seed", type=SEED, default=0,
                   help="random seed (weights, sampling, augmentation)")
    add_device_arguments(p)
    return p


def parse_slices(text: str | None) -> list[int] | None:
    """'12,17' → [12, 17]."""
    if text is None:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError as err:
        raise InputError(f"--slices '{text}' must be comma-separated slice numbers, "
                         "e.g. 12,17.") from err


def run(args: argparse.Namespace, reporter: Reporter, stop: Callable[[], bool]) -> dict[str, Any]:
    """Adapt and return the new version, held-out check and suggestions."""
    from arcoseg.adapt.fusion import FusionSettings  # torch, MONAI: only when run
    from arcoseg.adapt.prior import ParentPriorSettings, PriorSettings
    from arcoseg.adapt.run import AdaptRequest, adapt

    if args.from_scratch and args.classes is None:
        raise InputError("--from-scratch needs --classes NAME,NAME,... (the foreground classes to "
                         "train; background is implied), e.g. --classes LV,Myo,RV.")
    if args.classes is not None and not args.from_scratch:
        raise InputError("--classes goes with --from-scratch only: a model (--model) brings its "
                         "own classes. Leave out --classes, or add --from-scratch.")
    if args.context_slices is not None and not args.from_scratch:
        raise InputError("--context-slices goes with --from-scratch only: a model (--model) "
                         "keeps the input it was trained with. Leave out --context-slices, or "
                         "add --from-scratch.")
    if args.parent_prior is not None and args.from_scratch:
        raise InputError("--parent-prior goes with --model only: from scratch there is no parent "
                         "whose prediction could be kept. Leave out --parent-prior, or adapt a "
                         "model with --model.")
    request = AdaptRequest(
        images=list(args.image), annotations=list(args.annotations), model=args.model,
        classes=(None if args.classes is None
                 else [c.strip() for c in args.classes.split(",")]),
        name=args.name, axis=None if args.axis == "auto" else int(args.axis),
        context_slices=args.context_slices or 0,
        slices=parse_slices(args.slices), unlabelled=list(args.unlabelled), budget=args.budget,
        iterations=args.iterations, method=args.method, sampler=args.sampler,
        warmup=args.warmup, optimizer=args.optimizer, lr=args.lr, holdout=args.holdout,
        suggestions=args.suggest, output=args.out, device=args.device, amp=args.amp,
        seed=args.seed, prior=PriorSettings(mode=args.prior),
        parent_prior=ParentPriorSettings(strength=(PARENT_PRIOR if args.parent_prior is None
                                                   else args.parent_prior)),
        fusion=FusionSettings(weight=args.fusion_weight))
    if not args.from_scratch and args.model is None:
        raise InputError("Give --model NAME|PATH to adapt, or --from-scratch --classes A,B.")
    return adapt(request, reporter, stop)
