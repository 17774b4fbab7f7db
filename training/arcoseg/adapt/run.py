"""`arcoseg adapt`: annotated slices + unlabelled images → a new, checked model version.

Flow: read images and partial annotations (`adapt.inputs`) → choose the parent (registry model,
folder, or a new 2D model; 2D parents train on slices along the annotation axis, 3D parents on
patches centred on annotated voxels) → hold one annotated slice out → train ARCO
(`adapt.training`) on the annotated slices (supervised), on the drawn labels propagated to their
neighbour slices (a fading prior, `adapt.prior`) and on every other slice and extra image (mean
teacher + contrastive) for a number of iterations, the time budget as an upper bound; the
held-out slice is scored for the early stop and joins training for the end of the schedule
(`adapt.heldout`) → compare the model as it was before it joined with the parent and with
copying the nearest drawn slice on the held-out slice (`adapt.check`) → commit a new registry
version (activated only if it is not worse) together with the segmentations, the final model
fused with every drawn slice (`adapt.fusion`; the model alone where, on the held-out slice, the
copy is far worse than the model): both or neither → suggest the next slices to annotate.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from arcoseg.adapt.inputs import AnnotatedImage, make_plan, read_annotated
from arcoseg.adapt.request import AdaptRequest
from arcoseg.adapt.training import train_adapted
from arcoseg.adapt.annotations import rejoin
from arcoseg.adapt.check import PARENT_MARGIN, heldout_check
from arcoseg.adapt.fusion import FusionSettings, checked_fusion, fused_segmentation
from arcoseg.adapt.parent import Parent, choose_parent
from arcoseg.adapt.pace import PaceReporter
from arcoseg.adapt.suggest import suggest_slices
from arcoseg.device import resolve_device
from arcoseg.errors import Cancelled
from arcoseg.inference import Segmentation, segment_channels
from arcoseg.networks.fused import keep_inference_network
from arcoseg.fileutil import full_suffix
from arcoseg.io.geometry import check_format_holds, read_grid
from arcoseg.io.image_files import input_dimension, like_input
from arcoseg.io.images import image_output_suffixes, output_suffix_like, pending_images
from arcoseg.io.segnrrd import SUFFIX as SEG_NRRD
from arcoseg.io.segnrrd import check_segment_names, is_seg_nrrd, write_segmentation
from arcoseg.io.names import unique_case_ids
from arcoseg.io.outputs import check_distinct, check_output_file, image_output_paths
from arcoseg.model_metadata import ModelMetadata
from arcoseg.modelfile import save_model
from arcoseg.networks.model import SegmentationModel
from arcoseg.progress import Reporter
from arcoseg.registry import Registry, VersionRef
from arcoseg.tempfiles import work_folder
from arcoseg.train.run_data import unlabelled_files
from arcoseg.train.trainer import Trainer


def fingerprint(path: Path) -> str:
    """SHA-256 of an image file's bytes, or of a DICOM series folder's files (their relative
    names and bytes, in name order): provenance, which images an adaptation saw."""
    digest = hashlib.sha256()
    folder = path.is_dir()
    for file in sorted(f for f in path.rglob("*") if f.is_file()) if folder else [path]:
        if folder:
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def plan_outputs(request: AdaptRequest) -> list[Path | None]:
    """Where each image's segmentation goes, checked before any work (io.outputs): -o itself
    for one image, '<case>_seg' inside folder -o for several, in the image's own format where
    ARCOSegment writes it (so a sheared NRRD stays NRRD), else .nii.gz; -o NAME.seg.nrrd: a
    Slicer segmentation, one named segment per class."""
    if request.output is None:
        return [None] * len(request.images)
    ids = unique_case_ids(request.images, "Images")
    ext = {f"{cid}_seg": output_suffix_like(full_suffix(path)) for cid, path in ids.items()}
    paths = list(image_output_paths(request.output, list(ext), ext,
                                    (*image_output_suffixes(), SEG_NRRD)).values())
    check_distinct(paths, [*request.images, *request.annotations, *request.unlabelled])
    for image, path in zip(request.images, paths):
        check_output_file(path)
        grid = read_grid(image)
        if grid is not None:
            check_format_holds(grid, path, str(image), ext_option=False)
    return paths


@dataclass
class _Prepared:
    """What `adapt` has checked and read before any training."""

    outputs: list[Path | None]  # each image's segmentation file (None: not written)
    registry: Registry
    parent: Parent
    items: list[AnnotatedImage]
    dimensions: list[int]  # each input's dimension: a 2D image gets a 2D output


def _prepare(request: AdaptRequest) -> _Prepared:
    """Every check that can fail before the training starts, and the inputs read."""
    outputs = plan_outputs(request)
    # checked before any work, read once training is set up
    unlabelled_files(request.unlabelled, request.annotations)
    registry = Registry(request.home)
    registry.check_writable()  # the version is added after training: refuse now, not then
    parent = choose_parent(registry, request.model, request.classes, request.name)
    for path in outputs:
        if path is not None and is_seg_nrrd(path):
            check_segment_names(parent.class_names[1:], path)
    items = read_annotated(request, parent)
    for item, path in zip(items, outputs):
        if path is not None:  # again with the image read: DICOM series have no header to check
            check_format_holds(item.image, path, str(item.path), ext_option=False)
    return _Prepared(outputs, registry, parent, items,
                     [input_dimension(item.path) for item in items])


def adapt(request: AdaptRequest, reporter: Reporter, stop: Callable[[], bool]) -> dict[str, Any]:
    """Run a whole adaptation; return the JSON result (model version, check, suggestions)."""
    device = resolve_device(request.device)
    ready = _prepare(request)
    parent, items = ready.parent, ready.items
    axis = items[0].annotations.axis
    seen = [{"file": str(i.path), "sha256": fingerprint(i.path), "axis": axis,
             "annotated_slices": i.drawn_slices} for i in items]  # as read, before training
    plan = make_plan(parent, items, axis, request.context_slices)
    check_slice = items[0].held_out
    held_out = (f" (slice {check_slice.slices[0]} held out for the check until late)"
                if check_slice else "")
    reporter.log(f"Adapting {parent.name} on {sum(len(i.drawn_slices) for i in items)} "
                 f"annotated slice(s){held_out} along axis {axis}: {request.iterations} "
                 f"iterations at most, budget {request.budget:.0f} s, "
                 f"{torch.get_num_threads()} CPU thread(s)")
    pace = PaceReporter(reporter, request.iterations, request.budget)
    with work_folder("arcoseg-adapt") as work:
        try:
            trainer, held = train_adapted(request, parent, items, plan, pace, stop, work)
        except Cancelled as err:  # not the trainer's "--resume": Adapt has none, work is gone
            raise Cancelled(CANCELLED) from err
    _stop_if_asked(stop)
    adapted = trainer.method.eval_model()
    checked = held.checked_model(adapted) if held else adapted
    margin = PARENT_MARGIN if request.parent_prior.active and parent.model is not None else 0.0
    segmentations, check, fusion = segment_and_check(adapted, checked, trainer.metadata(),
                                                     parent, items, request.fusion, device,
                                                     margin)
    _note_training(check, request, items, held.released_at if held else None)
    metadata = trainer.metadata(
        parent=str(parent.ref) if parent.ref else None, held_out=check,
        images=seen,
        unlabelled_images=[str(p) for p in request.unlabelled], budget_seconds=request.budget,
        prior=asdict(request.prior),
        parent_prior=asdict(request.parent_prior) if parent.model is not None else None,
        fusion=asdict(fusion))
    reporter.log(("WARNING: " if not check["activated"] else "Held-out check: ") + check["note"])
    # The segmentations take their names only once the model is committed, and are deleted if
    # writing one or committing fails: no output without its model version, nor the reverse.
    written = [(like_input(seg.labels, path, dimension), path)
               for seg, dimension, path in zip(segmentations, ready.dimensions, ready.outputs)
               if path]
    slicer = {SEG_NRRD: lambda image, tmp: write_segmentation(image, metadata.classes, tmp)}
    with pending_images(written, slicer), ready.registry.stage_version(parent.name,
                                                                       parent.ref) as staged:
        save_model(staged.path, adapted, metadata)
        staged.activate = check["activated"]
        _stop_if_asked(stop)  # the last moment: the version and the outputs are not committed
    return finish(request, ready.registry, staged.ref, items, segmentations, check, trainer,
                  reporter, ready.outputs)


CANCELLED = ("Adapt cancelled: nothing was saved and the model registry is unchanged. Run adapt "
             "again to start over.")


def _stop_if_asked(stop: Callable[[], bool]) -> None:
    """Cancelled if a stop was asked after training (Ctrl-C while segmenting or writing): until
    the version is committed, a stop leaves nothing behind."""
    if stop():
        raise Cancelled(CANCELLED)


def _note_training(check: dict[str, Any], request: AdaptRequest, items: list[AnnotatedImage],
                   released_at: int | None) -> None:
    """Add to the held-out check how the checked slice was trained on: from which iteration
    (`released_at`), or from the start (--no-holdout)."""
    check["joined_training_at"] = released_at
    if not request.holdout and len(items[0].drawn_slices) > 1:
        check["note"] = "no held-out check (--no-holdout): every annotated slice was trained on"
    if released_at is not None:
        check["note"] += (f"; scored at iteration {released_at}, before the held-out slice "
                          "joined training")


def segment_and_check(adapted: SegmentationModel, checked: SegmentationModel,
                      metadata: ModelMetadata, parent: Parent, items: list[AnnotatedImage],
                      fusion: FusionSettings, device: torch.device, parent_margin: float = 0.0
                      ) -> tuple[list[Segmentation], dict[str, Any], FusionSettings]:
    """Run the held-out check (`adapt.check`) on the first image with `checked` (the model
    before the held-out slice joined training, `adapt.heldout`; `parent_margin`: see
    `check.compare`), then segment every image with
    the final model `adapted`, fused with every drawn slice (the held-out one too: the output
    shows what the user drew). Where the copy scores far below the model on the held-out slice
    (`fusion.checked_fusion`), the drawing's copy misleads on this anatomy and every output is
    the model alone (drawn slices still as drawn); from a model, the copy's weight falls with
    its error there against the model's. Returns the
    segmentations, the check and the fusion settings used."""
    keep_inference_network(adapted)  # trained: its weights do not change any more
    alone = [segment_channels(adapted, metadata, [item.image], device) for item in items]
    first = items[0]
    parent_seg = (segment_channels(parent.model.to(device), parent.metadata, [first.image],
                                   device) if parent.model is not None and first.held_out
                  else None)
    before = (alone[0] if checked is adapted
              else segment_channels(checked, metadata, [first.image], device))
    fused = fused_segmentation(before, first.annotations, first.image, parent.class_values,
                               fusion)
    check = heldout_check(before, parent_seg, first.annotations, first.held_out, fused,
                          parent_margin)
    used = checked_fusion(fusion, check, from_model=parent.model is not None)
    return [fused_segmentation(seg, rejoin(item.annotations, item.held_out), item.image,
                               parent.class_values, used)
            for seg, item in zip(alone, items)], check, used


def finish(request: AdaptRequest, registry: Registry, ref: VersionRef,
           items: list[AnnotatedImage], segmentations: list[Segmentation],
           check: dict[str, Any], trainer: Trainer, reporter: Reporter,
           paths: list[Path | None]) -> dict[str, Any]:
    """Suggest slices and build the result (the segmentations are written at `paths`)."""
    first = items[0]
    suggestions = suggest_slices(segmentations[0].probabilities, first.annotations.axis,
                                 first.drawn_slices, request.suggestions)
    outputs = [{"image": str(item.path), "labels": str(path)}
               for item, path in zip(items, paths) if path is not None]
    info = registry.show(str(ref))
    reporter.log("Next slices to annotate (axis "
                 f"{items[0].annotations.axis}): {[s['slice'] for s in suggestions]}")
    return {"model": {**info, "name": ref.name, "version": ref.version,
                      "path": str(registry.resolve(str(ref)))},
            "heldout": check, "axis": items[0].annotations.axis,
            "annotated_slices": [item.drawn_slices for item in items],
            "suggested_slices": [s["slice"] for s in suggestions], "suggestions": suggestions,
            "iterations": trainer.state.iteration, "seconds": round(trainer.state.seconds, 1),
            "outputs": outputs}
