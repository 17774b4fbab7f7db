"""The headless batch entry point: arguments, cases, per-case loop and exit codes; one case
through the Logic on Slicer's real scene (slicer-core), with the engine's answers written at once."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from ARCOSegmentLib import batch
from ARCOSegmentLib import conversions as cv
from ARCOSegmentLib import mrml
from ARCOSegmentLib.logic import EngineLogic
from standins import ADAPT_RESULT, OBLIQUE

SCRIPT = Path(__file__).resolve().parents[2] / "ARCOSegment" / "Scripts" / "batch_segment.py"


def make_inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("b.nii.gz", "a.nrrd", "c.mha", "notes.txt", "a.seg.nrrd"):
        (folder / name).write_bytes(b"")
    (folder / "sub.nii.gz").mkdir()
    return folder


def test_arguments_after_slicers_separator_are_parsed():
    args = batch.parse_args(["--", "--input", "in", "--output", "out", "--model", "liver",
                             "--cpu", "--budget", "60"])
    assert args.input == Path("in") and args.model == "liver" and args.cpu and args.budget == 60
    assert args.format == ".nii.gz" and args.adapt_from is None
    with pytest.raises(SystemExit) as info:
        batch.parse_args(["--input", "in"])  # --output missing
    assert info.value.code == 2


def test_cases_are_the_volumes_of_the_folder_sorted_by_name(tmp_path):
    cases = batch.list_cases(make_inputs(tmp_path))
    assert [c for c, _ in cases] == ["a", "b", "c"]
    assert cases[1][1].name == "b.nii.gz"
    with pytest.raises(batch.BatchError, match="No volume found"):
        batch.list_cases(tmp_path)


def test_volumes_sharing_a_case_name_are_refused_before_any_case(tmp_path):
    """The tester's finding 2: ct.nii.gz and ct.nrrd both wrote out/ct.nii.gz, one result lost,
    '2 of 2 case(s) segmented', exit 0."""
    inputs = make_inputs(tmp_path)
    (inputs / "A.nii.gz").write_bytes(b"")  # one file with a.nrrd on a case-insensitive disk
    args = batch.parse_args(["--input", str(inputs), "--output", str(tmp_path / "out")])
    lines, processed = [], []
    assert batch.run_batch(args, lambda *a: processed.append(a) or "ok",
                           lines.append) == batch.EXIT_USAGE
    assert processed == [] and "share a case name" in lines[0]
    assert "A.nii.gz; a.nrrd" in lines[0]


def test_annotations_are_found_by_case_name(tmp_path):
    folder = tmp_path / "ann"
    folder.mkdir()
    (folder / "a.seg.nrrd").write_bytes(b"")
    (folder / "b.nii.gz").write_bytes(b"")  # a volume, not a segmentation
    assert batch.find_annotation(folder, "a").name == "a.seg.nrrd"
    assert batch.find_annotation(folder, "b") is None
    assert batch.find_annotation(folder, "c") is None
    assert batch.find_annotation(None, "a") is None


def test_every_case_is_processed_and_failures_give_exit_code_1(tmp_path):
    inputs, lines, seen = make_inputs(tmp_path), [], []
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "b.seg.nrrd").write_bytes(b"")

    def process(case, image, annotation, output):
        seen.append((case, annotation.name if annotation else None, output.name))
        if case == "c":
            raise RuntimeError("Out of GPU memory")
        return "segmented"

    args = batch.parse_args(["--input", str(inputs), "--output", str(tmp_path / "out"),
                             "--adapt-from", str(ann), "--format", ".seg.nrrd"])
    assert batch.run_batch(args, process, lines.append) == batch.EXIT_FAILED
    assert seen == [("a", None, "a.seg.nrrd"), ("b", "b.seg.nrrd", "b.seg.nrrd"),
                    ("c", None, "c.seg.nrrd")]
    assert any(line.startswith("[failed] c: Out of GPU memory") for line in lines)
    assert lines[-1] == "2 of 3 case(s) segmented; failed: c"
    assert (tmp_path / "out").is_dir()


def test_all_cases_done_is_exit_code_0_and_bad_input_exit_code_2(tmp_path):
    inputs = make_inputs(tmp_path)
    args = batch.parse_args(["--input", str(inputs), "--output", str(tmp_path / "out")])
    assert batch.run_batch(args, lambda *a: "ok", lambda line: None) == batch.EXIT_OK
    lines = []
    missing = batch.parse_args(["--input", str(tmp_path / "nope"), "--output", str(tmp_path)])
    assert batch.run_batch(missing, lambda *a: "ok", lines.append) == batch.EXIT_USAGE
    assert "does not exist" in lines[0]


@pytest.mark.parametrize("budget", ["-10", "0", "nan"])
def test_a_budget_outside_the_engines_range_is_exit_code_2_before_any_case(budget, tmp_path):
    args = batch.parse_args(["--input", str(make_inputs(tmp_path)), "--output",
                             str(tmp_path / "out"), "--budget", budget])
    lines, seen = [], []
    assert batch.run_batch(args, lambda *a: seen.append(a), lines.append) == batch.EXIT_USAGE
    assert lines == [f"error: --budget must be a number > 0, not {float(budget)!r}."]
    assert seen == [] and not (tmp_path / "out").exists()


class AnsweringLogic(EngineLogic):
    """The Logic on Slicer's real scene, with the engine answered at once: `segment` and `adapt`
    write LABELS (class values 3 and 7) on the grid of the image they were given, as the engine
    does; `adapt` reports a new version of the same model."""

    def __init__(self, model_dir: Path) -> None:
        super().__init__(python=sys.executable)
        self.model_dir, self.commands = model_dir, []

    def engine(self, args, cpuOnly=False, finish=None, workDir=None, *callbacks):
        self.commands.append(args)
        image = args[args.index("--image") + 1] if args[0] == "adapt" else args[2]
        output = args[args.index("-o") + 1]
        _, ijk_to_ras = cv.read_volume(image)
        cv.write_volume(LABELS, ijk_to_ras, output)
        result = {"outputs": [{"image": image, "labels": output}], "device": "cpu"}
        if args[0] == "adapt":
            result = {**ADAPT_RESULT, **result,
                      "model": {**ADAPT_RESULT["model"], "path": str(self.model_dir)}}
        try:
            return finish(result)
        finally:
            shutil.rmtree(workDir)


LABELS = np.zeros((4, 5, 6), np.uint8)
LABELS[1, 1:4, 1:5], LABELS[2, 2:4, 2:4] = 3, 7
CLASSES = [{"name": "background", "value": 0, "color": [0, 0, 0]},
           {"name": "Left kidney", "value": 3, "color": [255, 128, 0]},
           {"name": "Liver", "value": 7, "color": [0, 64, 255]}]


@pytest.fixture
def case(tmp_path, slicer_core):
    """(the Logic, the model folder, the case's volume file on an oblique grid)."""
    model = tmp_path / "organs"
    model.mkdir()
    (model / "model.json").write_text(json.dumps({"classes": CLASSES}))
    image = cv.write_volume(np.zeros(LABELS.shape, np.int16), OBLIQUE, tmp_path / "in" / "a.nrrd")
    return AnsweringLogic(model), model, image


def test_a_case_is_segmented_through_the_logic_into_a_label_map_of_class_values(case, tmp_path):
    logic, model, image = case
    args = batch.parse_args(["--input", "in", "--output", "out", "--model", str(model), "--cpu"])
    output = tmp_path / "out" / "a.nii.gz"
    assert batch.case_processor(logic, args)("a", image, None, output) == "segmented"
    [command] = logic.commands
    assert command[:2] == ["segment", str(model)] and command[-2:] == ["--device", "cpu"]
    array, ijk_to_ras = cv.read_volume(output)
    # the engine's labels, on the grid Slicer's reader made of OBLIQUE's left-handed one (K
    # reversed, the same physical places)
    assert (array == LABELS).all() and set(np.unique(array)) == {0, 3, 7}
    np.testing.assert_allclose(ijk_to_ras @ [0, 0, 3, 1], OBLIQUE @ [0, 0, 0, 1], atol=1e-5)


def test_a_case_with_annotations_adapts_first_and_saves_a_slicer_segmentation(case, tmp_path):
    logic, model, image = case
    drawing = tmp_path / "ann" / "a.seg.nrrd"
    volume = mrml.load_volume(image)
    mrml.save_segmentation(mrml.add_annotations(
        volume, "drawn", [("Liver", (1.0, 0.0, 0.0), LABELS == 7)]), [], volume, drawing)
    args = batch.parse_args(["--input", "in", "--output", "out", "--model", str(model),
                             "--adapt-from", "ann", "--budget", "90", "--format", ".seg.nrrd"])
    output = tmp_path / "out" / "a.seg.nrrd"
    message = batch.case_processor(logic, args)("a", image, drawing, output)
    assert message == "liver@v4: held-out slice 17, Dice 0.710 → 0.802 (activated)"
    [command] = logic.commands
    assert command[0] == "adapt" and command[command.index("--budget") + 1] == "90"
    assert command[command.index("--model") + 1] == str(model)
    segmentation = mrml.load_segmentation(output)
    assert list(mrml.segments_of(segmentation).values()) == ["Left kidney", "Liver"]
    volume = mrml.load_volume(image)
    [(_, kidney), (_, liver)] = mrml.segment_masks(segmentation, [
        ("ARCOSegment_Left_kidney", 1), ("ARCOSegment_Liver", 2)], volume)
    assert (kidney == (LABELS == 3)).all() and (liver == (LABELS == 7)).all()


def test_the_slicer_batch_script_is_valid_python():
    compile(SCRIPT.read_text(encoding="utf-8"), str(SCRIPT), "exec")
