"""`arcoseg segment` refuses bad inputs and options before any image is segmented: exit 2, a
message naming the file or option, and no output at all (not even the results of the images
before the bad one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import SimpleITK as sitk

from arcoseg.cli import main
from arcoseg.data.synthetic import make_phantom


def segment(capsys, *argv) -> tuple[int, str]:
    """Exit code and the message of the last JSON event (the result or the error)."""
    code = main(["segment", *map(str, argv), "--device", "cpu", "--progress", "json"])
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return code, events[-1].get("message", "")


def phantom(path: Path, seed: int = 0) -> Path:
    image, _ = make_phantom((4, 24, 24), seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def two_components(path: Path) -> None:
    image = sitk.ReadImage(str(phantom(path)))
    sitk.WriteImage(sitk.Compose(image, image), str(path))


def garbage(path: Path) -> None:
    path.write_bytes(b"not an image at all " * 20)


@pytest.mark.parametrize("make_bad,message", [
    (two_components, "has 2 components per voxel"),
    (garbage, "is not a readable image"),
])
def test_a_bad_file_late_in_a_folder_ends_the_run_before_any_result(
        untrained_model, tmp_path, capsys, make_bad, message):
    """The tester's B5: a.nii.gz and b.nii.gz were segmented and written before c.nii.gz
    ended the run. Every image's header is checked first now."""
    folder = tmp_path / "in"
    phantom(folder / "a.nii.gz")
    phantom(folder / "b.nii.gz", seed=1)
    make_bad(folder / "c.nii.gz")
    code, error = segment(capsys, untrained_model, folder, "-o", tmp_path / "out")
    assert code == 2
    assert str(folder / "c.nii.gz") in error and message in error
    assert not (tmp_path / "out").exists()


def test_an_empty_folder_after_a_good_image_ends_the_run_before_any_result(
        untrained_model, tmp_path, capsys):
    image = phantom(tmp_path / "a.nii.gz")
    empty = tmp_path / "series"
    empty.mkdir()
    code, error = segment(capsys, untrained_model, image, empty, "-o", tmp_path / "out")
    assert code == 2 and f"Folder {empty} is empty" in error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("out", ["", "  "])
def test_an_empty_out_is_refused_not_taken_as_the_current_folder(
        untrained_model, tmp_path, capsys, monkeypatch, out):
    """The tester's B9.7: `-o "$UNSET"` wrote ./img.nii.gz."""
    image = phantom(tmp_path / "in" / "img.nii.gz")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(SystemExit) as stop:
        main(["segment", str(untrained_model), str(image), "-o", out, "--device", "cpu"])
    assert stop.value.code == 2
    assert "argument -o/--out: -o is empty; give a file or folder" in capsys.readouterr().err
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("ext", [".nrrd", ".nii.gz"])
def test_ext_with_a_file_out_is_refused(untrained_model, tmp_path, capsys, ext):
    """The tester's B9.8: --ext was silently ignored when -o names a file."""
    image = phantom(tmp_path / "img.nii.gz")
    code, error = segment(capsys, untrained_model, image, "-o", tmp_path / "seg.nii.gz",
                          "--ext", ext)
    assert code == 2
    assert f"--ext {ext} only applies when -o is a folder" in error
    assert str(tmp_path / "seg.nii.gz") in error
    assert not (tmp_path / "seg.nii.gz").exists() and not (tmp_path / "seg.nrrd").exists()


def test_without_ext_a_file_out_takes_its_format_and_a_folder_gets_nifti(
        untrained_model, tmp_path, capsys):
    image = phantom(tmp_path / "img.nii.gz")
    assert segment(capsys, untrained_model, image, "-o", tmp_path / "seg.nrrd")[0] == 0
    assert (tmp_path / "seg.nrrd").is_file()
    assert segment(capsys, untrained_model, image, "-o", tmp_path / "out")[0] == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img.nii.gz"]


def test_class_names_a_seg_nrrd_cannot_hold_are_refused_before_segmenting(untrained_model,
                                                                          tmp_path, capsys):
    """'Ödem' ended every `segment -o x.seg.nrrd` after the work, with advice about disk space."""
    meta = json.loads((untrained_model / "model.json").read_text())
    meta["classes"][1]["name"] = "Ödem"
    (untrained_model / "model.json").write_text(json.dumps(meta))
    image = phantom(tmp_path / "a.nii.gz")
    for out in (["-o", tmp_path / "x.seg.nrrd"], ["-o", tmp_path / "out", "--ext", ".seg.nrrd"]):
        code, message = segment(capsys, untrained_model, image, *out)
        assert code == 2 and "Class 'Ödem' cannot be a segment name" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz", "untrained_model"]
    code, _ = segment(capsys, untrained_model, image, "-o", tmp_path / "x.nii.gz")
    assert code == 0  # a label map holds any name


def test_a_stop_asked_for_during_an_image_ends_the_run_within_a_batch_writing_nothing(
        untrained_model, tmp_path):
    """The tester's finding: a serve cancel of a running one-image segment was only seen
    between images, so the request finished and wrote its output."""
    from arcoseg.cli import build_parser
    from arcoseg.commands import segment as segment_command
    from arcoseg.errors import Cancelled
    from arcoseg.progress import make_reporter

    image = phantom(tmp_path / "in" / "a.nii.gz")
    out = tmp_path / "seg.nii.gz"
    args = build_parser().parse_args(["segment", str(untrained_model), str(image), "-o",
                                      str(out), "--device", "cpu", "--batch", "1"])
    asked = iter([False] + [True] * 10)  # not yet between images: during the first
    with pytest.raises(Cancelled, match=r"a: cancelled at 1 of 4, nothing written for it; "
                                        r"written before: none\."):
        segment_command.run(args, make_reporter("none"), lambda: next(asked))
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "in", "untrained_model"]


def test_probabilities_of_a_single_slice_image_are_refused_for_nifti_before_any_work(
        untrained_model, tmp_path, capsys):
    """The tester's finding: ITK reads such a vector NIfTI back without its slice axis; the
    read-back check refused it only after segmenting, and the label map stayed behind."""
    image, _ = make_phantom((1, 24, 24))
    sitk.WriteImage(image, str(tmp_path / "slice.nii.gz"))
    code, message = segment(capsys, untrained_model, tmp_path / "slice.nii.gz", "-o",
                            tmp_path / "out" / "s.nii.gz", "--probabilities")
    assert code == 2 and "is a single slice: NIfTI cannot hold" in message
    assert "s_probabilities.nii.gz" in message and "name -o .nrrd or .mha" in message
    assert not (tmp_path / "out").exists()
    code, _ = segment(capsys, untrained_model, tmp_path / "slice.nii.gz", "-o",
                      tmp_path / "out" / "s.nrrd", "--probabilities")
    assert code == 0 and sitk.ReadImage(str(tmp_path / "out" / "s_probabilities.nrrd")
                                        ).GetNumberOfComponentsPerPixel() == 3


def test_a_two_axis_image_late_in_a_folder_is_refused_too_before_any_work(
        untrained_model, tmp_path, capsys):
    """The tester's F1: a 2D file (2 axes in its header, not 3 with one slice) passed the
    early check, so the images before it were written before the run failed."""
    folder = tmp_path / "in"
    phantom(folder / "a.nii.gz")
    image, _ = make_phantom((1, 24, 24))
    sitk.WriteImage(image[:, :, 0], str(folder / "z.nii.gz"))  # a true 2D image
    code, message = segment(capsys, untrained_model, folder, "-o", tmp_path / "out",
                            "--probabilities")
    assert code == 2 and "z.nii.gz is a single slice" in message
    assert not (tmp_path / "out").exists()


def test_when_one_map_cannot_be_written_none_of_the_images_maps_is_left(
        untrained_model, tmp_path, capsys, monkeypatch):
    from arcoseg.io import images

    def no_space_for_entropy(image, path):
        if "entropy" in path.name:
            raise OSError(28, "No space left on device")
        writer(image, path)

    writer = images._IMAGE_WRITERS[".nii.gz"]
    monkeypatch.setitem(images._IMAGE_WRITERS, ".nii.gz", no_space_for_entropy)
    image = phantom(tmp_path / "in" / "a.nii.gz")
    code, message = segment(capsys, untrained_model, image, "-o", tmp_path / "out" / "s.nii.gz",
                            "--entropy", "--probabilities")
    assert code == 2 and "s_entropy.nii.gz: No space left on device" in message
    assert list((tmp_path / "out").iterdir()) == []


def test_a_stop_asked_for_after_the_last_batch_still_writes_nothing(untrained_model, tmp_path):
    """The tester's F3: resampling and writing after the last batch could not be stopped."""
    from arcoseg.cli import build_parser
    from arcoseg.commands import segment as segment_command
    from arcoseg.errors import Cancelled
    from arcoseg.progress import make_reporter

    image = phantom(tmp_path / "in" / "a.nii.gz")
    out = tmp_path / "out" / "seg.nii.gz"
    args = build_parser().parse_args(["segment", str(untrained_model), str(image), "-o",
                                      str(out), "--device", "cpu", "--batch", "1",
                                      "--probabilities"])
    asked = iter([False] * 5 + [True])  # between images, then each of the 4 slices: no
    with pytest.raises(Cancelled, match=r"a: cancelled before writing, nothing written"):
        segment_command.run(args, make_reporter("none"), lambda: next(asked))
    assert not (tmp_path / "out").exists()


def test_channel_files_on_different_grids_are_refused_before_any_case(tmp_path, capsys):
    """A hunter's finding: a later case whose channels differed was refused only when reached
    (the cases before it written), with a message naming 'channel 0' / 'channel 1', no file."""
    from tiny_models import save_tiny

    model = save_tiny(tmp_path / "model", in_channels=2)
    images = tmp_path / "images"
    for channel in ("0000", "0001"):
        phantom(images / f"a_{channel}.nii.gz")
    phantom(images / "b_0000.nii.gz")
    small, _ = make_phantom((3, 16, 16), seed=1)
    sitk.WriteImage(small, str(images / "b_0001.nii.gz"))
    code, message = segment(capsys, model, images, "-o", tmp_path / "out")
    assert code == 2 and f"{images / 'b_0001.nii.gz'} does not match " \
                         f"{images / 'b_0000.nii.gz'}: size differs" in message
    assert not (tmp_path / "out").exists()


def test_an_image_refused_only_when_read_names_the_results_written_before_it(tmp_path, capsys,
                                                                             untrained_model):
    """NaN voxels show only when an image is read (`check_image` reads headers): the error of
    the second image says which files the first one wrote."""
    phantom(tmp_path / "images" / "a.nrrd")
    image = sitk.ReadImage(str(phantom(tmp_path / "images" / "b.nrrd")), sitk.sitkFloat32)
    image[3, 3, 1] = float("nan")
    sitk.WriteImage(image, str(tmp_path / "images" / "b.nrrd"))
    code, message = segment(capsys, untrained_model, tmp_path / "images", "-o", tmp_path / "out")
    assert code == 2 and message.startswith("Segmenting b (2/2): ")
    assert "NaN" in message
    assert message.endswith("Nothing written for it; written before: "
                            f"{tmp_path / 'out' / 'a.nii.gz'}.")


@pytest.mark.parametrize("spacing,shown", [((100.0, 100.0, 2.0), "100 x 100 mm"),
                                           ((0.01, 0.01, 2.0), "0.01 x 0.01 mm")])
def test_a_spacing_far_from_the_models_is_refused_before_any_work(tmp_path, capsys,
                                                                 untrained_model, spacing,
                                                                 shown):
    """A hunter's finding: a header in the wrong unit made a 6 KB file need gigabytes on the
    model's grid (an OOM kill), or a 1 x 1 image segmented as background, exit 0."""
    image = sitk.ReadImage(str(phantom(tmp_path / "in.nrrd")))
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(tmp_path / "in.nrrd"))
    code, message = segment(capsys, untrained_model, tmp_path / "in.nrrd", "-o",
                            tmp_path / "seg.nii.gz")
    assert code == 2 and f"has a voxel spacing of {shown} where the model works at 1 x 1 mm" \
        in message
    assert not (tmp_path / "seg.nii.gz").exists()


def test_a_model_grid_beyond_the_machines_memory_is_refused(tmp_path, capsys, untrained_model,
                                                          monkeypatch):
    from arcoseg.data import model_grid

    monkeypatch.setattr(model_grid, "_physical_memory", lambda: 2**10)  # 1 KiB
    code, message = segment(capsys, untrained_model, phantom(tmp_path / "in.nrrd"), "-o",
                            tmp_path / "seg.nii.gz")
    assert code == 2 and "on the model's grid (4x24x24 voxels at 1 x 1 mm) would need" in message
