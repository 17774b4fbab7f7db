"""The module's pipeline against the real engine (`python -m arcoseg`, CPU) on Slicer's real MRML
(slicer-core), without the application: volume nodes → engine files → `segment` / `adapt` → the
results back in segmentation nodes on the volume's grid; Cancel during Adapt; the model registry
as the panel lists it."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ARCOSegmentLib import conversions as cv
from ARCOSegmentLib import mrml, scene
from ARCOSegmentLib.engine import EngineJob, parse_segment_result, segment_args
from ARCOSegmentLib.logic import EngineLogic
from ARCOSegmentLib.models import format_entry, is_model_folder
from ARCOSegmentLib.panel import Panel
from ARCOSegmentLib.process import EXIT_CANCELLED, engine_command, engine_environment
from ARCOSegmentLib.segments import labels_to_indices, read_model_classes
from standins import OBLIQUE, StandInTimer, drive, standin_ui

CLASSES = ["background", "Left kidney", "Liver"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained 2D model whose classes have non-contiguous label values (0, 3, 7)."""
    from arcoseg.data.plan import Plan
    from arcoseg.model_metadata import ModelMetadata, make_classes
    from arcoseg.modelfile import save_model
    from arcoseg.networks import NetworkConfig, build_model
    config = NetworkConfig(arch="unet2d", in_channels=1, num_classes=3, features=(4, 8, 16, 32, 64))
    torch.manual_seed(0)
    plan = Plan(dims=2, target_spacing=(2.5, 0.6, 0.8), normalization="zscore",
                label_values=[0, 3, 7], patch_size=(32, 32))
    metadata = ModelMetadata(network=config, classes=make_classes(CLASSES, values=[0, 3, 7]),
                             plan=plan.to_dict())
    folder = tmp_path_factory.mktemp("model") / "tiny"
    save_model(folder, build_model(config).eval(), metadata)
    return folder


def test_segment_through_the_real_engine_lands_on_the_volume_grid(tiny_model, tmp_path,
                                                                  slicer_core):
    rng = np.random.default_rng(0)
    array = rng.normal(100, 30, size=(6, 20, 24)).astype(np.int16)
    node = mrml.add_volume(array, OBLIQUE, "CT")
    work = tmp_path / "work"
    exported = scene.export_volume(node, work / "image.nii.gz", scene.roi_ras_bounds(
        slicer_core.add_roi([2, 9, -18.5, -5, 29, 40])))
    classes = read_model_classes(tiny_model)

    def finish(result):
        out = parse_segment_result(result)
        indices = labels_to_indices(exported.to_full(*cv.read_labelmap(out.labels)), classes)
        entropy, _ = cv.read_volume(out.entropy)
        return out, indices, entropy

    progress = []
    command = engine_command(segment_args(tiny_model, exported.path, work / "labels.nii.gz",
                                          entropy=True, cpu_only=True), python=sys.executable)
    out, indices, entropy = EngineJob(command, finish, env=engine_environment(cpu_only=True),
                                      work_dir=work, progress=progress.append).wait(timeout=120)
    assert out.classes == CLASSES and out.device == "cpu"
    assert indices.shape == array.shape and set(np.unique(indices)) <= {0, 1, 2}
    outside = np.ones(array.shape, bool)
    outside[exported.box] = False
    assert outside.any() and (indices[outside] == 0).all()
    assert entropy.shape == exported.written_shape and 0 <= entropy.min() <= entropy.max() <= 1
    # progress counts the slices of the one image (issue 17 item 16) and ends complete
    assert progress[-1]["step"] == progress[-1]["total"] == exported.written_shape[0]
    assert not work.exists()  # the job cleans its work folder


# -- Adapt ------------------------------------------------------------------------------------

DRAWN = [4, 6]  # the two painted slices (along K); both hold classes a and b


def phantom_volume():
    """The engine's phantom (8 × 32 × 32, classes 1 and 2) as a volume node, with its truth."""
    from arcoseg.data.synthetic import make_phantom
    image, labels = make_phantom((8, 32, 32))
    return (mrml.add_volume(sitk.GetArrayFromImage(image), cv.image_ijk_to_ras(image), "Phantom"),
            sitk.GetArrayFromImage(labels))


def painted(volume, truth: np.ndarray, slices):
    """A segmentation node with segments 'a' (class 1) and 'b' (class 2) painted on `slices`."""
    segments = []
    for name, value, color in (("a", 1, (1.0, 0.0, 0.0)), ("b", 2, (0.0, 0.0, 1.0))):
        mask = np.zeros(truth.shape, bool)
        mask[slices] = truth[slices] == value
        segments.append((name, color, mask))
    return mrml.add_annotations(volume, "Annotations", segments)


def roi_around_slices(core, volume, first: int, last: int):
    """An ROI node holding whole slices first..last (along K)."""
    shape = scene.volume_shape(volume)
    corners = np.array([[i, j, k, 1.0] for i in (0, shape[2] - 1) for j in (0, shape[1] - 1)
                        for k in (first, last)])
    ras = (scene.volume_ijk_to_ras(volume) @ corners.T)[:3]
    lo, hi = ras.min(axis=1) - 0.5, ras.max(axis=1) + 0.5
    return core.add_roi([lo[0], hi[0], lo[1], hi[1], lo[2], hi[2]])


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


@pytest.fixture(scope="module")
def adapted(tmp_path_factory, module_slicer_core):
    """One `adapt --from-scratch` run through the Logic, inside an ROI (slices 1..7): what it was
    given, the command it ran, its progress events and its AdaptResult."""
    volume, truth = phantom_volume()
    home = tmp_path_factory.mktemp("registry")
    run = SimpleNamespace(volume=volume, truth=truth, annotations=painted(volume, truth, DRAWN),
                          home=home, progress=[])
    run.logic = EngineLogic({"ARCOSEG_HOME": str(home)}, python=sys.executable)
    job = run.logic.adapt(volume, run.annotations, fromScratch=True, budgetSeconds=600,
                          iterations=3, roiNode=roi_around_slices(module_slicer_core, volume, 1, 7),
                          segmentationNode=run.annotations, cpuOnly=True, wait=False,
                          progress=run.progress.append)
    run.command, run.env = job.process.command, job.process.env
    run.result = job.wait(timeout=300)
    return run


def test_adapt_runs_the_engines_adapt_from_scratch_with_the_drawn_classes(adapted):
    assert adapted.logic.annotationSummary(adapted.volume, adapted.annotations) == \
        "2 slices annotated along K (axial): 4, 6"
    command = adapted.command
    assert command[1:4] == ["-m", "arcoseg", "adapt"] and "--from-scratch" in command
    assert [option(command, o) for o in ("--classes", "--name", "--iterations", "--budget",
                                         "--axis", "--device", "--progress")] == \
        ["a,b", "a-b", "3", "600", "0", "cpu", "json"]
    assert adapted.env["ARCOSEG_HOME"] == str(adapted.home)
    assert adapted.env["CUDA_VISIBLE_DEVICES"] == "-1"
    assert adapted.progress[-1]["step"] == adapted.progress[-1]["total"] == 3


def test_adapt_result_names_the_new_version_its_heldout_check_and_next_slices(adapted):
    """The engine saw slices 1..7 as 0..6; its slice numbers come back on the whole volume."""
    out = adapted.result.output
    # 3 iterations from scratch score below copying the nearest drawn slice: saved, not active
    assert (out.model.ref, out.model.kind, out.model.parent, out.activated) == \
        ("a-b@v1", "adapted", "", False)
    assert is_model_folder(out.model.path) and Path(out.model.path).is_relative_to(adapted.home)
    assert [c.name for c in read_model_classes(out.model.path)] == ["a", "b"]
    assert (out.axis, out.heldout_slice, out.parent_dice) == (0, DRAWN[1], None)
    assert 0.0 <= out.adapted_dice <= 1.0 and out.iterations == 3
    assert 0 < len(adapted.result.suggestedSlices) <= 3
    assert all(1 <= s <= 7 and s not in DRAWN for s in adapted.result.suggestedSlices)


def test_adapt_result_is_loaded_back_into_a_new_segmentation_not_the_drawing(adapted):
    segmentation, truth = adapted.result.segmentation, adapted.truth
    assert segmentation is not adapted.annotations
    assert segmentation.GetName() == "Phantom segmentation"
    assert mrml.segments_of(segmentation) == {"ARCOSegment_a": "a", "ARCOSegment_b": "b"}
    masks = [m for _, m in mrml.segment_masks(
        segmentation, [("ARCOSegment_a", 1), ("ARCOSegment_b", 2)], adapted.volume)]
    assert all(m.shape == truth.shape for m in masks)
    assert not any(m[0].any() for m in masks)  # outside the ROI
    assert not (masks[0] & masks[1]).any()
    drawing = mrml.segment_masks(adapted.annotations, [("a", 1), ("b", 2)], adapted.volume)
    for value, drawn in drawing:  # the drawing is untouched
        assert (drawn[DRAWN] == (truth[DRAWN] == value)).all() and not drawn[[0, 5]].any()


def test_registry_lists_the_adapted_version_with_its_folder(adapted):
    """`arcoseg models list` as the panel shows it."""
    [entry] = adapted.logic.listModels()
    assert (entry.ref, entry.kind, entry.active, entry.parent) == ("a-b@v1", "adapted", False, "")
    assert entry.path == adapted.result.output.model.path and entry.created
    assert format_entry(entry).startswith("a-b v1 · adapted · ")  # no ★: not active


def test_cancel_during_adapt_stops_the_engine_within_seconds_and_registers_nothing(tmp_path,
                                                                                  slicer_core):
    """The panel's Cancel while the real engine trains: the engine stops itself within seconds
    (exit code 3), nothing stays in its process group, and the registry is still empty. On the
    way, the panel's device check runs the real `arcoseg device`."""
    volume, truth = phantom_volume()
    logic = EngineLogic({"ARCOSEG_HOME": str(tmp_path / "home")}, python=sys.executable,
                        useWorker=False)  # one-shot processes (the worker: test_slicer_worker.py)
    ui, timer, errors = standin_ui(), StandInTimer(), []
    panel = Panel(ui, logic, timer, show_error=errors.append, choose_folder=lambda: "")
    panel.parameters = SimpleNamespace(
        inputVolume=volume, roi=None, outputSegmentation=None,
        annotationSegmentation=painted(volume, truth, DRAWN), useCpu=True, showUncertainty=False,
        fromScratch=True, timeBudgetSeconds=600)
    panel.on_adapt()
    job = panel.job
    assert ui.adaptButton.text == "Cancel", errors
    # training has begun and the device check is over
    drive(panel, timer, until=lambda: ui.progressBar.maximum > 0 and not panel.queries)
    started = time.monotonic()
    panel.on_adapt()
    drive(panel, timer, until=lambda: panel.job is None)
    # the engine finishes its iteration and exits by itself (about 1.5 s here), before the
    # grace period after which it would be killed
    assert time.monotonic() - started < job.process.grace_seconds
    assert job.process.returncode == EXIT_CANCELLED
    assert ui.statusLabel.text == "Cancelled." and errors == []
    assert ui.adaptButton.text == "Adapt model"
    with pytest.raises(ProcessLookupError):
        os.killpg(job.process.pid, 0)  # no process of the engine's group is left
    assert logic.listModels() == []  # `arcoseg models list`
    assert ui.deviceLabel.text.startswith("CPU · torch ") and ui.cpuWarningLabel.visible
