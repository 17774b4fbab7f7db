"""`arcoseg adapt`: annotated slices + unlabelled images → a new, checked model version.

Flow: read images and partial annotations → choose the parent (registry model, folder, or a new
2D model; 2D parents train on slices along the annotation axis, 3D parents on patches centred
on annotated voxels) → hold one annotated slice out → train ARCO on the annotated slices (supervised),
on the drawn labels propagated to their neighbour slices (a fading prior, `adapt.prior`) and on
every other slice and extra image (mean teacher + contrastive) for a number of iterations, the
time budget as an upper bound → compare the adapted model with the parent and with copying the
nearest drawn slice on the held-out slice (`adapt.check`) → commit a new registry version
(activated only if it is not worse) → write the segmentations, the model fused with the drawing
(`adapt.fusion`; the model alone where the held-out slice shows the copy misleads) → suggest the
next slices to annotate.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import SimpleITK as sitk
import torch

from arcoseg.adapt import schedule
from arcoseg.adapt.annotations import (Annotations, hold_out, make_annotations,
                                      read_annotation_map)
from arcoseg.adapt.check import heldout_check
from arcoseg.adapt.fusion import FusionSettings, checked_fusion, fused_segmentation
from arcoseg.adapt.parent import Parent, choose_parent
from arcoseg.adapt.pace import PaceReporter
from arcoseg.adapt.prior import PriorMethod, PriorSettings, propagate, scale_note
from arcoseg.adapt.suggest import suggest_slices
from arcoseg.data.orientation import to_slicing_axis
from arcoseg.data.preprocess import Plan, PreprocessedCase, preprocess_image, resample
from arcoseg.device import resolve_device
from arcoseg.errors import Cancelled, InputError
from arcoseg.inference import Segmentation, segment_channels
from arcoseg.networks.fused import keep_inference_network
from arcoseg.fileutil import full_suffix
from arcoseg.io.geometry import check_format_holds, read_grid
from arcoseg.io.images import array_to_image, image_output_suffixes, read_image, write_image
from arcoseg.io.names import unique_case_ids
from arcoseg.io.outputs import check_distinct, check_output_file, image_output_paths
from arcoseg.modelfile import ModelMetadata, save_model
from arcoseg.networks.model import NetworkConfig, SegmentationModel
from arcoseg.progress import Reporter
from arcoseg.registry import Registry, VersionRef
from arcoseg.tempfiles import work_folder
from arcoseg.train.options import PATCH_DIVISOR, TrainOptions
from arcoseg.train.trainer import RunData, Trainer, extra_unlabelled, without_label
from arcoseg.data.sampling import PatchSampler, SliceSampler

MAX_PATCH = 128


@dataclass
class AdaptRequest:
    """What the user asked `arcoseg adapt` to do."""

    images: list[Path]
    annotations: list[Path]
    model: str | None = None
    classes: list[str] | None = None  # from scratch: foreground class names
    name: str | None = None
    axis: int | None = None
    slices: list[int] | None = None
    unlabelled: list[Path] = field(default_factory=list)
    budget: float = 120.0
    iterations: int = 2000
    method: str = "arco"
    sampler: str = "sg"
    # supervised-only fraction of the schedule before the semi-supervised terms; None: half
    # from scratch (a random teacher's pseudo-labels wreck it, RESULTS.md), none from a parent
    warmup: float | None = None
    optimizer: str | None = None  # None: AdamW from scratch, SGD from a parent (adapt.schedule)
    lr: float | None = None  # None: the optimiser's default (adapt.schedule)
    # intensity augmentation (data.intensity): off, unlike `train`. It makes a model robust to
    # intensity differences between patients, but Adapt trains on and segments one image, and
    # with 0.5 ARCO scored 3-11 Dice points less on ACDC (training/benchmarks/RESULTS.md)
    jitter: float = 0.0
    holdout: bool = True
    early_stop: bool = True  # end once the supervised loss stops improving
    prior: PriorSettings = field(default_factory=PriorSettings)
    fusion: FusionSettings = field(default_factory=FusionSettings)  # the output: model + drawing
    suggestions: int = 3
    output: Path | None = None
    device: str = "auto"
    amp: bool = True
    seed: int = 0
    home: Path | None = None  # registry home (default: $ARCOSEG_HOME or ~/.arcoseg)


@dataclass
class AnnotatedImage:
    """One image with its partial annotations (class indices, 255 = unannotated)."""

    path: Path
    image: sitk.Image
    annotations: Annotations
    held_out: Annotations | None = None


def read_annotated(request: AdaptRequest, parent: Parent) -> list[AnnotatedImage]:
    """Read every image with its annotation map (label map or .seg.nrrd, matched to the parent's
    classes); all maps must share one slice axis."""
    if len(request.images) != len(request.annotations):
        raise InputError(f"{len(request.images)} --image but {len(request.annotations)} "
                         "--annotations: give one annotation label map per image.")
    items = []
    for image_path, label_path in zip(request.images, request.annotations):
        image = read_image(image_path)
        labels = read_annotation_map(label_path, image, str(image_path), parent.class_names,
                                     parent.class_values)
        items.append(AnnotatedImage(image_path, image, make_annotations(
            labels, len(parent.class_names), request.axis, request.slices,
            source=str(label_path))))
    axes = {item.annotations.axis for item in items}
    if len(axes) > 1:
        raise InputError(f"The annotations lie along different axes {sorted(axes)}; annotate "
                         "all images along one axis (or pass --axis).")
    if request.holdout:
        items[0].annotations, items[0].held_out = hold_out(items[0].annotations)
    return items


def make_plan(parent: Parent, items: list[AnnotatedImage], axis: int) -> Plan:
    """The parent's preprocessing (a 2D parent along the annotation axis; a 3D parent sees
    whole patches, so its orientation stays), or a 2D plan fitted to the image."""
    oriented = to_slicing_axis(items[0].image, axis)
    if parent.metadata is not None:
        plan = Plan.from_dict(parent.metadata.plan)
        return replace(plan, slice_axis=axis) if plan.dims == 2 else plan
    spacing_zyx = tuple(reversed(oriented.GetSpacing()))
    size_yx = tuple(reversed(oriented.GetSize()))[1:]
    patch = tuple(min(MAX_PATCH, math.ceil(s / PATCH_DIVISOR) * PATCH_DIVISOR) for s in size_yx)
    return Plan(dims=2, target_spacing=spacing_zyx, normalization="zscore",
                label_values=parent.class_values, patch_size=patch, slice_axis=axis)


def on_plan(array: np.ndarray, item: AnnotatedImage, plan: Plan, is_label: bool) -> np.ndarray:
    """A (z, y, x) map on `item`'s grid, oriented and resampled like the image for training
    (labels by nearest neighbour)."""
    oriented = to_slicing_axis(array_to_image(array, item.image,
                                              np.uint8 if is_label else np.float32),
                               plan.slice_axis)
    resampled = resample(oriented, plan.target_spacing, is_label=is_label,
                         in_plane_only=plan.dims == 2)
    return sitk.GetArrayFromImage(resampled)


def preprocess_annotated(item: AnnotatedImage, plan: Plan) -> PreprocessedCase:
    """Orient along the annotation axis, resample and normalise; labels by nearest neighbour."""
    array, _ = preprocess_image([to_slicing_axis(item.image, plan.slice_axis)], plan)
    return PreprocessedCase(item.path.name, array,
                            on_plan(item.annotations.labels, item, plan, is_label=True),
                            tuple(plan.target_spacing))


def prior_sampler(request: AdaptRequest, items: list[AnnotatedImage],
                  labelled: list[PreprocessedCase], plan: Plan, patch: tuple[int, ...],
                  seed: int) -> SliceSampler | PatchSampler | None:
    """Batches of propagated slices (or patches) with their weights as the last image channel;
    None when the prior is off or reaches no slice."""
    cases = []
    for item, case in zip(items, labelled):
        ann = item.annotations
        labels, weights = propagate(ann.labels, ann.axis, ann.slices, request.prior)
        if weights.any():
            channels = np.concatenate([case.image, on_plan(weights, item, plan, False)[None]])
            cases.append(PreprocessedCase(case.case_id, channels,
                                          on_plan(labels, item, plan, is_label=True),
                                          case.spacing_zyx))
    if not request.prior.active or not cases:
        return None
    cls = SliceSampler if plan.dims == 2 else PatchSampler
    return cls(cases, patch, request.prior.batch, seed=seed)


def train_adapted(request: AdaptRequest, parent: Parent, items: list[AnnotatedImage], plan: Plan,
                  reporter: Reporter, stop: Callable[[], bool], work: Path) -> Trainer:
    """Run the ARCO training with partial labels inside the time budget."""
    scratch = parent.model is None
    optimizer, lr = schedule.optimizer(request.optimizer, request.lr, scratch)
    options = TrainOptions(dims=plan.dims, method=request.method, sampler=request.sampler,
                           optimizer=optimizer, lr=lr,
                           iterations=request.iterations, batch=4 if plan.dims == 2 else 2,
                           patch=plan.patch_size,
                           device=request.device, amp=request.amp, seed=request.seed,
                           budget_seconds=request.budget, early_stop=request.early_stop,
                           warmup_fraction=schedule.warmup_fraction(request.warmup, scratch,
                                                                    request.method),
                           jitter=request.jitter,
                           log_every=5, val_every=10**9, checkpoint_every=10**9)
    labelled = [preprocess_annotated(item, plan) for item in items]
    unlabelled = [without_label(c) for c in labelled]
    unlabelled += extra_unlabelled(request.unlabelled, plan, reporter)
    data = RunData(plan, parent.class_names, parent.class_values, 1, labelled, unlabelled, [],
                   provenance={"parent": str(parent.ref) if parent.ref else None})
    network = (NetworkConfig.from_dict(parent.metadata.network) if parent.metadata else None)
    weights = parent.model.state_dict() if parent.model is not None else None
    trainer = Trainer(data, options, work, reporter, should_stop=stop, init_weights=weights,
                      network=network)
    sampler = (prior_sampler(request, items, labelled, plan, tuple(options.patch),
                             request.seed + 2) if request.prior.active else None)
    if sampler is not None:
        trainer.method = PriorMethod(trainer.method, sampler, request.prior, trainer.device)
    reporter.log(scale_note(request.prior) if sampler is not None else "no propagation prior")
    trainer.run()
    return trainer


def fingerprint(path: Path) -> str:
    """SHA-256 of a file's bytes (provenance: which images an adaptation saw)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def plan_outputs(request: AdaptRequest) -> list[Path | None]:
    """Where each image's segmentation goes, checked before any work (io.outputs): -o itself
    for one image, '<case>_seg' inside folder -o for several, in the image's own format where
    ARCOSegment writes it (so a sheared NRRD stays NRRD), else .nii.gz."""
    if request.output is None:
        return [None] * len(request.images)
    ids = unique_case_ids(request.images, "Images")
    writable = image_output_suffixes()
    ext = {f"{cid}_seg": full_suffix(path) if full_suffix(path) in writable else ".nii.gz"
           for cid, path in ids.items()}
    paths = list(image_output_paths(request.output, list(ext), ext).values())
    check_distinct(paths)
    for image, path in zip(request.images, paths):
        check_output_file(path)
        grid = read_grid(image)
        if grid is not None:
            check_format_holds(grid, path, str(image))
    return paths


def adapt(request: AdaptRequest, reporter: Reporter, stop: Callable[[], bool]) -> dict[str, Any]:
    """Run a whole adaptation; return the JSON result (model version, check, suggestions)."""
    device = resolve_device(request.device)
    outputs = plan_outputs(request)
    registry = Registry(request.home)
    parent = choose_parent(registry, request.model, request.classes, request.name)
    items = read_annotated(request, parent)
    for item, path in zip(items, outputs):
        if path is not None:  # again with the image read: DICOM series have no header to check
            check_format_holds(item.image, path, str(item.path))
    axis = items[0].annotations.axis
    plan = make_plan(parent, items, axis)
    reporter.log(f"Adapting {parent.name} on {sum(len(i.annotations.slices) for i in items)} "
                 f"annotated slice(s) along axis {axis}: {request.iterations} iterations at "
                 f"most, budget {request.budget:.0f} s, {torch.get_num_threads()} CPU thread(s)")
    pace = PaceReporter(reporter, request.iterations, request.budget)
    with work_folder("arcoseg-adapt") as work:
        try:
            trainer = train_adapted(request, parent, items, plan, pace, stop, work)
        except Cancelled as err:  # not the trainer's "--resume": Adapt has none, work is gone
            raise Cancelled("Adapt cancelled: nothing was saved and the model registry is "
                            "unchanged. Run adapt again to start over.") from err
    adapted = trainer.method.eval_model()
    segmentations, check, fusion = segment_and_check(adapted, trainer.metadata(), parent, items,
                                                     request.fusion, device)
    metadata = trainer.metadata(
        parent=str(parent.ref) if parent.ref else None, held_out=check,
        images=[{"file": str(i.path), "sha256": fingerprint(i.path), "axis": axis,
                 "annotated_slices": i.annotations.slices} for i in items],
        unlabelled_images=[str(p) for p in request.unlabelled], budget_seconds=request.budget,
        prior=asdict(request.prior), fusion=asdict(fusion))
    reporter.log(("WARNING: " if not check["activated"] else "Held-out check: ") + check["note"])
    with registry.stage_version(parent.name, parent.ref) as staged:
        save_model(staged.path, adapted, metadata)
        staged.activate = check["activated"]
    return finish(request, registry, staged.ref, items, segmentations, check, trainer, reporter,
                  outputs)


def segment_and_check(adapted: SegmentationModel, metadata: ModelMetadata, parent: Parent,
                      items: list[AnnotatedImage], fusion: FusionSettings, device: torch.device
                      ) -> tuple[list[Segmentation], dict[str, Any], FusionSettings]:
    """Segment every image with the adapted model, fused with its drawing, and run the held-out
    check (`adapt.check`) on the first. Where the fused output scores below the model alone on
    the held-out slice, the drawing's copy misleads on this anatomy (e.g. drawn slices far apart)
    and every output is the model alone (drawn slices still as drawn). Returns the segmentations,
    the check and the fusion settings used."""
    keep_inference_network(adapted)  # trained: its weights do not change any more
    alone = [segment_channels(adapted, metadata, [item.image], device) for item in items]
    first = items[0]
    parent_seg = (segment_channels(parent.model.to(device), parent.metadata, [first.image],
                                   device) if parent.model is not None and first.held_out
                  else None)
    fused = fused_segmentation(alone[0], first.annotations, first.image, parent.class_values,
                               fusion)
    check = heldout_check(alone[0], parent_seg, first.annotations, first.held_out, fused)
    used = checked_fusion(fusion, check)
    rest = [fused_segmentation(seg, item.annotations, item.image, parent.class_values, used)
            for seg, item in zip(alone[1:], items[1:])]
    first_output = fused if used == fusion else fused_segmentation(
        alone[0], first.annotations, first.image, parent.class_values, used)
    return [first_output, *rest], check, used


def finish(request: AdaptRequest, registry: Registry, ref: VersionRef,
           items: list[AnnotatedImage], segmentations: list[Segmentation],
           check: dict[str, Any], trainer: Trainer, reporter: Reporter,
           paths: list[Path | None]) -> dict[str, Any]:
    """Write the adapted images' segmentations, suggest slices, build the result."""
    outputs, suggestions = [], []
    for i, (item, seg) in enumerate(zip(items, segmentations)):
        annotated = item.annotations.slices + (item.held_out.slices if item.held_out else [])
        if i == 0:
            suggestions = suggest_slices(seg.probabilities, item.annotations.axis, annotated,
                                         request.suggestions)
        path = paths[i]
        if path is not None:
            write_image(seg.labels, path)
            outputs.append({"image": str(item.path), "labels": str(path)})
    info = registry.show(str(ref))
    reporter.log("Next slices to annotate (axis "
                 f"{items[0].annotations.axis}): {[s['slice'] for s in suggestions]}")
    return {"model": {**info, "name": ref.name, "version": ref.version,
                      "path": str(registry.resolve(str(ref)))},
            "heldout": check, "axis": items[0].annotations.axis,
            "annotated_slices": [item.annotations.slices for item in items],
            "suggested_slices": [s["slice"] for s in suggestions], "suggestions": suggestions,
            "iterations": trainer.state.iteration, "seconds": round(trainer.state.seconds, 1),
            "outputs": outputs}
