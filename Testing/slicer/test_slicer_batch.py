"""The headless batch entry point: arguments, cases, per-case loop and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ARCOSegmentLib import batch

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


def test_the_slicer_batch_script_is_valid_python():
    compile(SCRIPT.read_text(encoding="utf-8"), str(SCRIPT), "exec")
