"""`arcoseg adapt` refuses drawings it cannot interpret before any training: exit 2, a message
saying what was found, no model registered and no output written (issue 17 item 10)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from arcoseg.cli import main
from arcoseg.data.synthetic import make_phantom
from arcoseg.registry import Registry


@pytest.fixture
def case(tmp_path):
    """A phantom image and its full labels (z, y, x arrays) written beside it."""
    image, labels = make_phantom((10, 24, 24), seed=4)
    sitk.WriteImage(image, str(tmp_path / "img.nii.gz"))
    return tmp_path, image, sitk.GetArrayFromImage(labels)


def _adapt(folder, image, annotations, *extra):
    _write_annotations(folder, image, annotations)
    return _run_adapt(folder, *extra)


def _write_annotations(folder, image, annotations):
    ann = sitk.GetImageFromArray(annotations.astype(np.uint8))
    ann.CopyInformation(image)
    sitk.WriteImage(ann, str(folder / "ann.nii.gz"))


def _run_adapt(folder, *extra):
    return main(["adapt", "--image", str(folder / "img.nii.gz"), "--annotations",
                 str(folder / "ann.nii.gz"), "--from-scratch", "--classes", "a,b", "--budget",
                 "5", "--device", "cpu", "-o", str(folder / "seg.nii.gz"), "--progress", "none",
                 *extra])


def _mixed(full):
    drawn = np.zeros_like(full)
    drawn[[3, 6]] = full[[3, 6]]
    drawn[:, :, 12] = full[:, :, 12]
    return drawn


@pytest.mark.parametrize("make,extra,message", [
    (lambda full: np.where(np.arange(10)[:, None, None] % 4 == 1, 0, 255 + 0 * full), (),
     "holds only background"),
    (_mixed, (), "slices drawn along two axes"),
    (lambda full: np.where(np.isin(np.arange(10), [3, 6])[:, None, None], full, 0),
     ("--axis", "2"), "--axis 2 does not fit"),
])
def test_uninterpretable_drawings_end_before_training(case, capsys, home, make, extra, message):
    folder, image, full = case
    assert _adapt(folder, image, make(full), *extra) == 2
    err = capsys.readouterr().err
    assert message in err and "ann.nii.gz" in err
    assert Registry(home).list() == []
    assert not (folder / "seg.nii.gz").exists()


def test_a_cancelled_adapt_says_what_happened_and_leaves_no_work_folder(case, home, tmp_path,
                                                                        monkeypatch):
    """Issue 17 item 19: Ctrl-C said "Continue with --resume --out /tmp/arcoseg-adapt-…"
    (adapt has no --resume and that folder is deleted)."""
    import tempfile

    from arcoseg.adapt.run import AdaptRequest, adapt
    from arcoseg.errors import Cancelled
    from arcoseg.progress import Reporter

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    folder, image, full = case
    drawn = np.zeros_like(full)
    drawn[[3, 6]] = full[[3, 6]]
    ann = sitk.GetImageFromArray(drawn.astype(np.uint8))
    ann.CopyInformation(image)
    sitk.WriteImage(ann, str(folder / "ann.nii.gz"))
    request = AdaptRequest(images=[folder / "img.nii.gz"], annotations=[folder / "ann.nii.gz"],
                           classes=["a", "b"], iterations=50, device="cpu",
                           output=folder / "seg.nii.gz")
    with pytest.raises(Cancelled) as err:
        adapt(request, Reporter(quiet=True), stop=lambda: True)
    assert "--resume" not in str(err.value) and "registry is unchanged" in str(err.value)
    assert list(scratch.glob("arcoseg-*")) == []
    assert Registry(home).list() == [] and not (folder / "seg.nii.gz").exists()


def _two_slices(full):
    drawn = np.zeros_like(full)
    drawn[[3, 6]] = full[[3, 6]]
    return drawn


@pytest.mark.parametrize("files,message", [
    ((), "is empty. Give an image file (.nii.gz"),
    (("cases.csv", "dataset.json", "README.md"),
     "holds no image file (.nii.gz, .nii, .nrrd, .nhdr, .mha, .mhd) and no DICOM series (it "
     "holds 3 entries: "
     "README.md, cases.csv, dataset.json). Give an image file, a folder of image files, or a "
     "folder holding one DICOM series."),
])
def test_an_unlabelled_folder_without_images_ends_before_training(case, capsys, home, files,
                                                                  message):
    """The tester's B8: such a folder trained without extra images, exit 0, and recorded
    `unlabelled_images: []`."""
    folder, image, full = case
    extra = folder / "extra"
    extra.mkdir()
    for name in files:
        (extra / name).write_text("not an image")
    assert _adapt(folder, image, _two_slices(full), "--unlabelled", str(extra)) == 2
    assert f"--unlabelled: Folder {extra} {message}" in capsys.readouterr().err
    assert Registry(home).list() == []
    assert not (folder / "seg.nii.gz").exists()


def test_a_bad_unlabelled_image_ends_before_training(case, capsys, home):
    folder, image, full = case
    extra = folder / "extra"
    extra.mkdir()
    sitk.WriteImage(sitk.Compose(image, image), str(extra / "rgb.nii.gz"))
    assert _adapt(folder, image, _two_slices(full), "--unlabelled", str(extra)) == 2
    err = capsys.readouterr().err
    assert f"--unlabelled: Image {extra / 'rgb.nii.gz'} has 2 components per voxel" in err
    assert Registry(home).list() == [] and not (folder / "seg.nii.gz").exists()


@pytest.mark.parametrize("given", ["file", "folder", "copy", "uncompressed", "nrrd"])
def test_the_annotations_given_as_unlabelled_end_before_training(case, capsys, home, given):
    folder, image, full = case
    annotations = folder / "ann.nii.gz"
    copies = {"copy": "scan.nii.gz", "uncompressed": "scan.nii", "nrrd": "scan.nrrd"}
    unlabelled = (folder / "copy" / copies[given] if given in copies
                  else {"file": annotations, "folder": folder}[given])  # folder: img and ann
    _write_annotations(folder, image, _two_slices(full))
    if given == "copy":  # the annotation file, copied byte for byte under another name
        unlabelled.parent.mkdir()
        shutil.copyfile(annotations, unlabelled)
    elif given in copies:  # the same voxels in another file format or compression
        unlabelled.parent.mkdir()
        sitk.WriteImage(sitk.ReadImage(str(annotations)), str(unlabelled))
    assert _run_adapt(folder, "--unlabelled", str(unlabelled)) == 2
    reported = unlabelled if given in copies else annotations
    assert (f"--unlabelled: {reported} is an annotation label map (--annotations {annotations}),"
            " or a copy of one, not an image") in capsys.readouterr().err
    assert Registry(home).list() == [] and not (folder / "seg.nii.gz").exists()


def test_a_truncated_unlabelled_image_on_the_annotations_grid_is_a_clear_input_error(
        case, capsys, home):
    """The tester's finding: the copy check read it with a bare reader, and crashed (exit 1)."""
    folder, image, full = case
    _write_annotations(folder, image, _two_slices(full))
    (folder / "extra").mkdir()
    whole = folder / "extra" / "scan.nrrd"
    sitk.WriteImage(sitk.ReadImage(str(folder / "img.nii.gz")), str(whole), False)
    whole.write_bytes(whole.read_bytes()[:-500])  # the header is intact, the voxels are cut
    assert _run_adapt(folder, "--unlabelled", str(whole)) == 2
    err = capsys.readouterr().err
    assert "--unlabelled: " in err and str(whole) in err and "Internal error" not in err
    assert Registry(home).list() == [] and not (folder / "seg.nii.gz").exists()


@pytest.mark.parametrize("out", ["", " "])
def test_an_empty_out_is_refused_not_taken_as_the_current_folder(case, capsys, home,
                                                                 monkeypatch, out):
    """The tester's B9.7: `-o ""` wrote ./img_seg.nii.gz with exit 0."""
    folder, image, full = case
    work = folder / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(SystemExit) as stop:
        _adapt(folder, image, _two_slices(full), "-o", out)  # the last -o wins
    assert stop.value.code == 2
    assert "argument -o/--out: -o is empty; give a file or folder" in capsys.readouterr().err
    assert list(work.iterdir()) == [] and Registry(home).list() == []
