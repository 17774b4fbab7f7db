"""The headless batch entry point: arguments, cases, per-case loop and exit codes."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from ARCOSegmentLib import batch
from ARCOSegmentLib.engine import parse_adapt_result
from ARCOSegmentLib.logic import AdaptResult, EngineLogic
from standins import ADAPT_RESULT

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


class RecordingLogic:
    """The Logic and its scene access as the batch uses them, recording every call."""

    def __init__(self) -> None:
        self.calls = []
        self.mrml = self

    def clear_scene(self):
        self.calls.append(("clear",))

    def load_volume(self, path):
        self.calls.append(("load_volume", path.name))
        return "volume"

    def load_segmentation(self, path):
        self.calls.append(("load_segmentation", path.name))
        return "annotations"

    def segment(self, volume, **options):
        inspect.signature(EngineLogic.segment).bind(self, volume, **options)  # the real API
        self.calls.append(("segment", volume, options))
        return "segmentation"

    def adapt(self, volume, annotations, **options):
        inspect.signature(EngineLogic.adapt).bind(self, volume, annotations, **options)
        self.calls.append(("adapt", volume, annotations, options))
        return AdaptResult("adapted segmentation", parse_adapt_result(ADAPT_RESULT))

    def segments_of(self, node):
        return {"ARCOSegment_liver": "liver", "ARCOSegment_spleen": "spleen"}

    def save_segmentation(self, node, segment_ids, volume, path):
        self.calls.append(("save", node, segment_ids, volume, path.name))


def test_a_case_is_segmented_through_the_logic_and_saved_with_segments_in_order(tmp_path):
    logic = RecordingLogic()
    args = batch.parse_args(["--input", "in", "--output", "out", "--model", "liver", "--cpu"])
    message = batch.case_processor(logic, args)("a", Path("in/a.nii.gz"), None,
                                                Path("out/a.nii.gz"))
    assert message == "segmented"
    assert logic.calls == [
        ("clear",), ("load_volume", "a.nii.gz"),
        ("segment", "volume", {"model": "liver", "cpuOnly": True}),
        ("save", "segmentation", ["ARCOSegment_liver", "ARCOSegment_spleen"], "volume",
         "a.nii.gz")]


def test_a_case_with_annotations_adapts_first_and_reports_the_heldout_check(tmp_path):
    logic = RecordingLogic()
    args = batch.parse_args(["--input", "in", "--output", "out", "--adapt-from", "ann",
                             "--budget", "90", "--format", ".seg.nrrd"])
    message = batch.case_processor(logic, args)("b", Path("in/b.nrrd"), Path("ann/b.seg.nrrd"),
                                                Path("out/b.seg.nrrd"))
    assert message == "liver@v4: held-out slice 17, Dice 0.710 → 0.802 (activated)"
    assert logic.calls[2:] == [
        ("load_segmentation", "b.seg.nrrd"),
        ("adapt", "volume", "annotations", {"model": None, "budgetSeconds": 90.0,
                                            "cpuOnly": False}),
        ("save", "adapted segmentation", ["ARCOSegment_liver", "ARCOSegment_spleen"], "volume",
         "b.seg.nrrd")]


def test_the_slicer_batch_script_is_valid_python():
    compile(SCRIPT.read_text(encoding="utf-8"), str(SCRIPT), "exec")
