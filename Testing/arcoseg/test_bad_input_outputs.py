"""Issue 17 items 1, 2, 4, 5, 12: output names and formats are checked before any work, in every
command; a file-like name is a file or a refusal; geometry and names are never lost."""

from __future__ import annotations

import json
import shutil
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from arcoseg.adapt.run import AdaptRequest, plan_outputs
from arcoseg.cli import main
from arcoseg.data.synthetic import make_phantom
from arcoseg.errors import InputError, OutputError
from arcoseg.io.geometry import grid_difference
from arcoseg.io.images import read_image, write_image

SHEARED = (1.0, 0.0, 0.0, 0.0, 1.0, -0.2588, 0.0, 0.0, 0.9659)


def run(capsys, *argv) -> tuple[int, dict]:
    """Exit code and the last JSON event (the result or the error)."""
    code = main([*map(str, argv), "--progress", "json"])
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return code, events[-1]


def image_file(path: Path, direction=None, seed: int = 0) -> Path:
    image, _ = make_phantom((4, 24, 24), seed=seed, spacing_zyx=(2.0, 0.8, 0.8))
    if direction is not None:
        image.SetDirection(direction)
    write_image(image, path)
    return path


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_sheared_image_to_nifti_is_refused_before_work_and_nrrd_keeps_it(
        untrained_model, tmp_path, capsys):
    ct = image_file(tmp_path / "ct.nrrd", SHEARED)
    code, event = run(capsys, "segment", untrained_model, ct, "-o", tmp_path / "seg.nii.gz",
                      "--device", "cpu")
    assert code == 2 and "sheared" in event["message"] and "seg.nrrd" in event["message"]
    assert not (tmp_path / "seg.nii.gz").exists()
    code, _ = run(capsys, "segment", untrained_model, ct, "-o", tmp_path / "seg.nrrd",
                  "--entropy", "--device", "cpu")
    assert code == 0
    for written in ("seg.nrrd", "seg_entropy.nrrd"):
        assert grid_difference(read_image(ct), read_image(tmp_path / written)) is None


def test_sheared_image_into_a_folder_needs_a_format_that_holds_it(untrained_model, tmp_path,
                                                                  capsys):
    ct = image_file(tmp_path / "in" / "ct.nrrd", SHEARED)
    code, event = run(capsys, "segment", untrained_model, ct, "-o", tmp_path / "out",
                      "--device", "cpu")
    assert code == 2 and "--ext .nrrd" in event["message"]
    assert not (tmp_path / "out").exists()
    assert run(capsys, "segment", untrained_model, ct, "-o", tmp_path / "out", "--ext", ".nrrd",
               "--device", "cpu")[0] == 0
    assert files_under(tmp_path / "out") == ["ct.nrrd"]


@pytest.mark.parametrize("name", ["seg.png", "out.tar.gz", "seg.txt"])
def test_an_unknown_output_suffix_is_refused_not_made_a_folder(untrained_model, tmp_path, capsys,
                                                               name):
    ct = image_file(tmp_path / "ct.nii.gz")
    code, event = run(capsys, "segment", untrained_model, ct, "-o", tmp_path / name,
                      "--device", "cpu")
    assert code == 2 and "is not an image format" in event["message"]
    assert ".nii.gz" in event["message"] and not (tmp_path / name).exists()


def test_two_images_and_a_file_name_are_refused(untrained_model, tmp_path, capsys):
    a, b = image_file(tmp_path / "a.nii.gz"), image_file(tmp_path / "b.nii.gz", seed=1)
    code, event = run(capsys, "segment", untrained_model, a, b, "-o", tmp_path / "seg.nii.gz",
                      "--device", "cpu")
    assert code == 2 and "names one file but 2 images" in event["message"]
    assert not (tmp_path / "seg.nii.gz").exists()


def test_a_result_is_never_written_onto_an_input_file(untrained_model, tmp_path, capsys):
    ct = image_file(tmp_path / "ct.nii.gz")
    before = ct.read_bytes()
    code, event = run(capsys, "segment", untrained_model, ct, "-o", ct, "--device", "cpu")
    assert code == 2 and "is one of the input files" in event["message"]
    assert ct.read_bytes() == before


def test_adapt_never_writes_its_result_onto_the_image_or_the_drawing(tmp_path):
    ct = image_file(tmp_path / "ct.nii.gz")
    drawing = image_file(tmp_path / "ann.nii.gz", seed=1)
    for output in (ct, drawing, tmp_path / "." / "ct.nii.gz"):
        with pytest.raises(OutputError, match="is one of the input files"):
            plan_outputs(AdaptRequest(images=[ct], annotations=[drawing], output=output))


def test_dotted_case_names_keep_their_dots(untrained_model, tmp_path, capsys):
    """'p.01.nii.gz' and 'p.02.nii.gz' were both written as 'p' (split('.')[0])."""
    inputs = [image_file(tmp_path / "in" / f"p.0{i}.nii.gz", seed=i) for i in (1, 2)]
    assert run(capsys, "segment", untrained_model, *inputs, "-o", tmp_path / "out",
               "--device", "cpu")[0] == 0
    assert files_under(tmp_path / "out") == ["p.01.nii.gz", "p.02.nii.gz"]


def test_same_file_name_in_two_folders_is_refused_not_taken_as_two_channels(
        untrained_model, tmp_path, capsys):
    a = image_file(tmp_path / "x" / "ct.nii.gz")
    b = image_file(tmp_path / "y" / "ct.nii.gz", seed=1)
    code, event = run(capsys, "segment", untrained_model, a, b, "-o", tmp_path / "out",
                      "--device", "cpu")
    assert code == 2 and "are both case 'ct'" in event["message"]
    assert str(a) in event["message"] and str(b) in event["message"]
    assert not (tmp_path / "out").exists()


def test_a_result_name_clash_between_label_and_extra_maps_is_refused(untrained_model, tmp_path,
                                                                     capsys):
    a = image_file(tmp_path / "in" / "a.nii.gz")
    b = image_file(tmp_path / "in" / "a_entropy.nii.gz", seed=1)
    code, event = run(capsys, "segment", untrained_model, a, b, "-o", tmp_path / "out",
                      "--entropy", "--device", "cpu")
    assert code == 2 and "would both be written to" in event["message"]
    assert not (tmp_path / "out").exists()


def test_too_little_disk_space_is_refused_before_work(untrained_model, tmp_path, capsys,
                                                      monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 100, 100))
    ct = image_file(tmp_path / "ct.nii.gz")
    code, event = run(capsys, "segment", untrained_model, ct, "-o", tmp_path / "seg.nii.gz",
                      "--probabilities", "--device", "cpu")
    assert code == 2 and "Not enough disk space" in event["message"]
    assert not (tmp_path / "seg.nii.gz").exists()


def test_adapt_names_each_output_after_its_whole_case_id(tmp_path):
    images = [image_file(tmp_path / f"p.0{i}.nrrd", seed=i) for i in (1, 2)]
    request = AdaptRequest(images=images, annotations=images, output=tmp_path / "out")
    assert plan_outputs(request) == [tmp_path / "out" / "p.01_seg.nrrd",
                                     tmp_path / "out" / "p.02_seg.nrrd"]
    twins = [image_file(tmp_path / d / "ct.nii.gz") for d in ("x", "y")]
    with pytest.raises(InputError, match="are both case 'ct'"):
        plan_outputs(AdaptRequest(images=twins, annotations=twins, output=tmp_path / "o"))


def test_adapt_refuses_a_bad_output_before_training_or_registering(tmp_path, capsys, home):
    ct = image_file(tmp_path / "ct.nii.gz")
    labels = np.full((4, 24, 24), 255, np.uint8)
    labels[1] = 0
    labels[1, 8:16, 8:16] = 1
    annotations = sitk.GetImageFromArray(labels)
    annotations.CopyInformation(read_image(ct))
    write_image(annotations, tmp_path / "ann.nii.gz")
    code, event = run(capsys, "adapt", "--image", ct, "--annotations", tmp_path / "ann.nii.gz",
                      "--from-scratch", "--classes", "a", "-o", tmp_path / "seg.png",
                      "--device", "cpu")
    assert code == 2 and "'.png' is not an image format" in event["message"]
    assert not home.exists() or "versions" not in files_under(home)  # nothing trained/registered


def test_train_refuses_a_file_name_for_its_model_folder_before_training(phantom_dataset,
                                                                        tmp_path, capsys):
    code, event = run(capsys, "train", phantom_dataset, "-o", tmp_path / "model.zip",
                      "--device", "cpu")
    assert code == 2 and "looks like a file name" in event["message"]
    assert not (tmp_path / "model.zip").exists()


def test_evaluate_refuses_an_output_under_a_file_before_work(tmp_path, capsys):
    _, labels = make_phantom((4, 24, 24), seed=0)
    write_image(labels, tmp_path / "gt.nii.gz")
    (tmp_path / "blocker").write_text("a file")
    code, event = run(capsys, "evaluate", tmp_path / "gt.nii.gz", tmp_path / "gt.nii.gz", "-o",
                      tmp_path / "blocker" / "eval")
    assert code == 2 and "blocker is a file" in event["message"]


@pytest.mark.parametrize("files", [["thesis.tex"], ["report.md", "thesis.tex"],
                                   ["inputs/patient1_notes.txt", "evaluation/results.csv"]])
def test_demo_never_deletes_a_folder_it_did_not_write(tmp_path, capsys, files):
    """Names alone prove nothing (the testers' HIGH findings: a report.md made the whole folder
    an 'earlier demo output', deleted with its other files; then a user's own inputs/ and
    evaluation/ folders were replaced as the demo's)."""
    work = tmp_path / "work"
    for name in files:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text("precious")
    code, event = run(capsys, "demo", "--source", "phantom", "-o", work, "--device", "cpu")
    assert code == 2 and "was not written by `arcoseg demo`" in event["message"]
    assert all((work / name).read_text() == "precious" for name in files)


def _demo_folder(out: Path) -> Path:
    """A finished demo output (tiny stand-in files), as `demo.folder.finish` records it."""
    import time

    from arcoseg.demo.folder import finish, start

    since = time.time_ns() - 2 * 10**9
    start([], out)
    for name in ("inputs/image.nii.gz", "evaluation/summary.md", "segmentation.nii.gz",
                 "report.md", "registry/registry.json", "registry/models/demo/versions/v1/"
                 "model.json"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("")
    finish(out, since)
    return out


def test_a_demo_rerun_deletes_exactly_the_files_the_last_run_wrote(tmp_path):
    """Hidden entries (.git, .DS_Store) are neither listed nor deleted, and keep their folder."""
    from arcoseg.demo.folder import MARKER, replaceable, start

    hidden = tmp_path / "hidden"
    (hidden / ".git").mkdir(parents=True)
    (hidden / ".DS_Store").write_text("")
    assert replaceable(hidden) == []
    out = _demo_folder(tmp_path / "demo_output")
    (out / "inputs" / ".git").mkdir()
    written = replaceable(out)
    assert len(written) == 6
    start(written, out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == \
        [MARKER, "inputs", "inputs/.git"]


@pytest.mark.parametrize("change,named", [
    (lambda out: (out / "thesis.tex").write_text("mine"), "thesis.tex"),
    (lambda out: (out / "inputs" / "notes.txt").write_text("mine"), "inputs/notes.txt"),
    # a version adapted in the demo's registry (ARCOSEG_HOME pointed at it): a reviewer's case
    (lambda out: (out / "registry/models/demo/versions/v2").mkdir() or
     (out / "registry/models/demo/versions/v2/model.json").write_text("{}"),
     "registry/models/demo/versions/v2/model.json"),
    (lambda out: (out / "report.md").write_text("edited"), "report.md"),
    (lambda out: (out / "link").symlink_to(out.parent), "link"),
])
def test_a_demo_rerun_refuses_what_the_last_run_did_not_write(tmp_path, capsys, change, named):
    """The reviewers' findings: user files inside the demo's folders and registry were deleted
    with the demo's."""
    out = _demo_folder(tmp_path / "demo_output")
    change(out)
    before = sorted(p.as_posix() for p in out.rglob("*"))
    code, event = run(capsys, "demo", "--source", "phantom", "-o", out, "--device", "cpu")
    assert code == 2 and f"did not write, or changed since ({named})" in event["message"]
    assert sorted(p.as_posix() for p in out.rglob("*")) == before


def test_a_file_saved_beside_the_demo_while_it_ran_is_not_taken_for_its_own(tmp_path):
    """A reviewer's finding (HIGH): the run recorded every file in the folder when it ended,
    so a note saved there meanwhile was deleted by the next rerun."""
    import os
    import time

    from arcoseg.demo.folder import finish, replaceable, start
    from arcoseg.errors import OutputError

    out = tmp_path / "demo_output"
    since = time.time_ns()
    start([], out)
    (out / "notes.txt").write_text("mine")  # saved beside the demo's outputs meanwhile
    (out / "inputs").mkdir()
    (out / "inputs" / "scan.nii.gz").write_text("mine")  # copied in with its old time
    os.utime(out / "inputs" / "scan.nii.gz", ns=(since - 10**12, since - 10**12))
    (out / "report.md").write_text("the demo's")
    finish(out, since)
    with pytest.raises(OutputError, match=r"\(inputs/scan.nii.gz, notes.txt\)"):
        replaceable(out)


def test_a_demo_folder_whose_run_did_not_finish_is_refused(tmp_path, capsys):
    from arcoseg.demo.folder import start

    out = tmp_path / "demo_output"
    start([], out)  # killed (SIGKILL) before it recorded its files
    (out / "segmentation.nii.gz").write_text("")
    for marker in (None, '{"files": []}', "an older version's text"):  # also damaged ones
        if marker is not None:
            (out / ".arcoseg-demo").write_text(marker)
        code, event = run(capsys, "demo", "--source", "phantom", "-o", out, "--device", "cpu")
        assert code == 2 and "a demo run there did not finish" in event["message"]
    assert (out / "segmentation.nii.gz").exists()


def test_a_users_project_with_a_report_and_a_registry_is_not_an_older_demo(tmp_path, capsys):
    """The reviewer's finding (HIGH): report.md + registry/registry.json (the user's own
    ARCOSEG_HOME) passed for an older demo's output and were deleted, exit 0."""
    project = tmp_path / "project"
    (project / "registry" / "models" / "liver").mkdir(parents=True)
    (project / "registry" / "registry.json").write_text('{"models": {}}')
    (project / "report.md").write_text("# liver project notes\n")
    code, event = run(capsys, "demo", "--source", "phantom", "-o", project, "--device", "cpu")
    assert code == 2 and "was not written by `arcoseg demo`" in event["message"]
    assert (project / "registry" / "models" / "liver").is_dir()
    assert (project / "report.md").read_text() == "# liver project notes\n"


def test_models_export_refuses_an_archive_name_it_cannot_write(untrained_model, tmp_path, capsys):
    code, event = run(capsys, "models", "export", untrained_model, tmp_path / "m.tar.gz")
    assert code == 2 and "looks like a file name" in event["message"]
    assert not (tmp_path / "m.tar.gz").exists()


def test_demo_slices_beyond_the_structure_are_refused_before_an_earlier_run_is_deleted(
        tmp_path, capsys):
    """Session 18's note: --slices 500 was refused only after the last run's files were gone."""
    out = _demo_folder(tmp_path / "demo_output")
    before = sorted(p.as_posix() for p in out.rglob("*"))
    code, event = run(capsys, "demo", "--source", "phantom", "-o", out, "--slices", "500",
                      "--device", "cpu")
    assert code == 2 and "--slices 500: the structures span" in event["message"]
    assert sorted(p.as_posix() for p in out.rglob("*")) == before


def test_a_stopped_demo_says_its_folder_holds_this_runs_partial_outputs(tmp_path, capsys,
                                                                        monkeypatch):
    """Adapt's 'nothing was saved and the registry is unchanged' is untrue of the demo's folder:
    the last run's outputs are already replaced there."""
    from arcoseg.demo import pipeline
    from arcoseg.errors import Cancelled

    def stopped(*args, **kwargs):
        raise Cancelled("Adapt cancelled: nothing was saved and the model registry is unchanged.")

    monkeypatch.setattr(pipeline, "adapt", stopped)
    out = _demo_folder(tmp_path / "demo_output")
    code, event = run(capsys, "demo", "--source", "phantom", "-o", out, "--device", "cpu")
    assert code == 3 and event["message"].startswith(f"Demo stopped: {out} holds what this run")
    assert "registry is unchanged" not in event["message"]
    assert (out / "inputs" / "annotations.nii.gz").exists()  # this run's, recorded for a rerun
    assert [p.name for p in out.iterdir() if p.name != ".arcoseg-demo"] == ["inputs"]


def test_a_png_input_is_named_without_its_suffix(tmp_path, capsys, untrained_model):
    """A hunter's finding: `segment M gray.png -o out/` wrote out/gray.png.nii.gz."""
    image = sitk.GetImageFromArray(np.arange(24 * 24, dtype=np.uint8).reshape(24, 24))
    sitk.WriteImage(image, str(tmp_path / "gray.png"))
    code, event = run(capsys, "segment", untrained_model, tmp_path / "gray.png", "-o",
                      tmp_path / "out")
    assert code == 0 and [p.name for p in (tmp_path / "out").iterdir()] == ["gray.nii.gz"]
