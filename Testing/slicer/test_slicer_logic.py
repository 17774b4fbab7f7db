"""The Logic's work outside the Slicer application (ARCOSegmentLib.logic.EngineLogic) on Slicer's
real scene and nodes (slicer-core): the annotation count, model resolution, where Adapt's slice
numbers land, and the self-test's scenario, whole, with the real engine."""

from __future__ import annotations

import sys
import unittest

import numpy as np
import pytest

from ARCOSegmentLib import conversions as cv
from ARCOSegmentLib import mrml, scene, selftest
from ARCOSegmentLib.engine import parse_adapt_result
from ARCOSegmentLib.logic import MODULE_DIR, EngineLogic, on_full_grid
from ARCOSegmentLib.models import ModelEntry
from standins import ADAPT_RESULT, OBLIQUE


SELFTEST_BUDGET = 20.0  # seconds per adaptation: the whole scenario takes about a minute


@pytest.fixture
def logic(slicer_core):
    return EngineLogic(python=sys.executable)


def test_defaults_are_slicers_scene_and_the_module_folder():
    logic = EngineLogic()
    assert logic.mrml is mrml and logic.moduleDir == MODULE_DIR and logic.engineEnvironment == {}
    assert (MODULE_DIR / "ARCOSegment.py").is_file()
    assert logic.dependencyPlan().needed is False  # this checkout's engine is installed


def test_annotation_summary_counts_the_painted_slices_of_every_segment(logic):
    volume = logic.mrml.add_volume(np.zeros((6, 7, 8), np.int16), OBLIQUE, "CT")
    drawn = []
    for name, k in (("Liver", 1), ("Spleen", 4)):
        mask = np.zeros((6, 7, 8), bool)
        mask[k, 2:5, 3:6] = True
        drawn.append((name, (1, 0, 0), mask))
    node = logic.mrml.add_annotations(volume, "Annotations", drawn)
    assert logic.annotationSummary(volume, node) == "2 slices annotated along K (axial): 1, 4"
    assert logic.annotationSummary(volume, node, axis=2).startswith("3 slices annotated along I")
    with pytest.raises(ValueError, match="Paint the structures"):
        logic.annotationSummary(volume, logic.mrml.new_segmentation(volume, "empty"))


def test_models_are_resolved_from_a_folder_or_a_registry_entry(logic, tmp_path):
    folder = tmp_path / "liver"
    folder.mkdir()
    (folder / "model.json").write_text('{"classes": []}')
    assert logic.resolveModel(str(folder)) == (folder, str(folder))
    entry = ModelEntry("liver", "v2", True, path=str(folder))
    assert logic.resolveModel(entry) == (folder, "liver@v2")
    with pytest.raises(RuntimeError, match="'liver@v3' has no usable model folder"):
        logic.resolveModel(ModelEntry("liver", "v3", path=str(tmp_path / "gone")))


def test_adapts_slice_numbers_move_from_the_roi_crop_to_the_whole_volume(tmp_path):
    exported = scene.ExportedVolume(tmp_path / "i.nii.gz", (40, 50, 60), np.eye(4),
                                    box=(slice(10, 30), slice(0, 50), slice(5, 60)))
    out = on_full_grid(parse_adapt_result(ADAPT_RESULT), exported)
    assert out.axis == 0 and out.heldout_slice == 27 and out.suggested_slices == [33, 17, 51]
    assert "held-out slice 27" in out.summary()
    whole = scene.ExportedVolume(tmp_path / "i.nii.gz", (40, 50, 60), np.eye(4))
    assert on_full_grid(parse_adapt_result(ADAPT_RESULT), whole).suggested_slices == [23, 7, 41]


def test_the_self_tests_phantom_and_drawing_give_two_annotated_axial_slices(logic):
    array, truth = selftest.phantom()
    assert array.shape == truth.shape == selftest.PHANTOM_SHAPE and array.dtype == np.int16
    assert array[truth].mean() > array[~truth].mean() + 200  # a bright blob
    volume = logic.mrml.add_volume(array, selftest.PHANTOM_IJK_TO_RAS, "Phantom")
    node = selftest.draw(unittest.TestCase(), logic, volume, truth, selftest.FIRST_SLICES)
    [(_, mask)] = logic.mrml.segment_masks(node, [(selftest.SEGMENT_NAME, 1)], volume)
    assert (mask == selftest.painted(truth, selftest.FIRST_SLICES)).all()
    # the drawing alone would not pass the self-test's Dice check
    assert selftest.dice(truth, truth) == 1.0 and selftest.dice(mask, truth) < selftest.MIN_DICE


def test_the_self_test_scenario_passes_on_real_mrml_with_the_real_engine(logic, slicer_core,
                                                                        tmp_path):
    """ARCOSegmentTest's whole scenario (CPU; each adaptation capped at SELFTEST_BUDGET seconds)
    on Slicer's real scene: a model from two drawn slices, segment twice into the same segments,
    adapt from two more slices, and the slice views jump to the suggested slices."""
    logic.engineEnvironment = {"ARCOSEG_HOME": str(tmp_path / "home")}
    said = []
    result = selftest.segment_and_adapt(unittest.TestCase(), logic, budgetSeconds=SELFTEST_BUDGET,
                                        say=said.append)
    assert said == ["Training a model from two drawn slices", "Segmenting with it",
                    "Adapting it from two more slices"]
    volume = slicer_core.scene.GetFirstNodeByName("Phantom")
    last = cv.slice_center_ras(selftest.PHANTOM_IJK_TO_RAS, selftest.PHANTOM_SHAPE,
                               result.output.axis, result.suggestedSlices[-1])
    for name, centre in slicer_core.slice_offsets().items():
        np.testing.assert_allclose(centre, last, atol=1e-6, err_msg=name)
    assert volume is not None and slicer_core.scene.GetNumberOfNodesByClass(
        "vtkMRMLSegmentationNode") == 4  # two drawings, the first result, the segmentation


def drawn_on_k(logic, slices: tuple[int, ...]):
    """A 12 x 7 x 8 volume (K along S, 1 mm, origin 0) and a segment 'a' painted on `slices`."""
    volume = logic.mrml.add_volume(np.zeros((12, 7, 8), np.int16), np.eye(4), "CT")
    mask = np.zeros((12, 7, 8), bool)
    mask[list(slices), 2:5, 3:6] = True
    return volume, logic.mrml.add_annotations(volume, "Annotations", [("a", (1, 0, 0), mask)])


def test_an_roi_holding_none_of_the_drawn_slices_is_refused_before_the_engine_runs(
        logic, slicer_core):
    """The tester's finding 10: the engine's error named only a temporary file."""
    logic.useWorker = False
    volume, drawing = drawn_on_k(logic, (2, 5))
    outside = slicer_core.add_roi([-1.0, 8.0, -1.0, 7.0, 7.5, 11.5])  # slices K = 8..11
    with pytest.raises(ValueError, match=r"None of the annotated slices \(2, 5 along K\) lies "
                                         "inside the ROI"):
        logic.adapt(volume, drawing, fromScratch=True, roiNode=outside, wait=False)
    said = []
    partly = slicer_core.add_roi([-1.0, 8.0, -1.0, 7.0, 3.5, 11.5])  # K = 4..11
    job = logic.adapt(volume, drawing, fromScratch=True, roiNode=partly, wait=False,
                      log=said.append, iterations=1, cpuOnly=True)
    job.cancel()
    assert said[0] == ("Only slices 5 of the annotated 2, 5 along K lie inside the ROI; Adapt "
                       "learns from those.")


def test_a_result_is_not_loaded_into_a_scene_closed_while_the_engine_ran(logic, untrained_model,
                                                                         slicer_core):
    """The tester's finding 4: the previous patient's result appeared in the next scene."""
    logic.useWorker = False  # one-shot: the result arrives after the scene is cleared
    volume = logic.mrml.add_volume(np.zeros((4, 32, 32), np.int16), np.eye(4), "CT")
    job = logic.segment(volume, untrained_model, cpuOnly=True, wait=False)
    logic.mrml.clear_scene()
    with pytest.raises(RuntimeError, match="'CT' was removed from the scene .* not loaded"):
        job.wait(timeout=120)
    assert slicer_core.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0
