"""Specification of arcoseg.io.images' input checks: `image_inputs` (what a path given on the
command line names) and `check_image` (`read_image`'s refusals from the header alone), which
let a command refuse every bad input before it segments or trains on the first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from arcoseg.errors import InputError
from arcoseg.io.images import check_image, read_image, write_image
from arcoseg.io.inputs import image_inputs

SHAPE = (4, 6, 5)  # (z, y, x)


def _image() -> sitk.Image:
    return sitk.GetImageFromArray(np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE))


def _write(img: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(img, str(path))
    return path


def _truncated(path: Path) -> Path:
    write_image(sitk.GetImageFromArray(np.random.default_rng(0).random(SHAPE)), path)
    path.write_bytes(path.read_bytes()[:-200])
    return path


def _garbage(path: Path) -> Path:
    path.write_bytes(b"NRRD0004\nnot a header")
    return path


def _empty_folder(path: Path) -> Path:
    path.mkdir()
    return path


def _notes_folder(path: Path) -> Path:
    path.mkdir()
    (path / "notes.txt").write_text("x")
    return path


@pytest.mark.parametrize("make,message", [
    (lambda p: p / "missing.nii.gz", "missing.nii.gz does not exist"),
    (lambda p: _truncated(p / "img.nii"), "the file may be truncated"),
    (lambda p: _truncated(p / "img.nii.gz"), "corrupt or truncated"),
    (lambda p: _garbage(p / "x.nrrd"), "x.nrrd is not a readable image"),
    (lambda p: _write(sitk.JoinSeries([_image(), _image()]), p / "4d.nii.gz"),
     "4D (size (5, 6, 4, 2)); a 3D volume is expected"),
    (lambda p: _write(sitk.GetImageFromArray(np.ones((*SHAPE, 3), np.float32), isVector=True),
                      p / "rgb.mha"), "rgb.mha has 3 components per voxel"),
    (lambda p: _empty_folder(p / "series"), "series is empty"),
    (lambda p: _notes_folder(p / "series"), "no DICOM series"),
])
def test_check_image_refuses_from_the_header_what_read_image_would(tmp_path, make, message):
    """Checked before any work (a folder of images is checked before the first is segmented);
    the same message as reading the image."""
    path = make(tmp_path)
    for check in (check_image, read_image):
        with pytest.raises(InputError) as err:
            check(path)
        assert message in str(err.value)


def test_check_image_reads_no_voxels(tmp_path, monkeypatch):
    path = _write(_image(), tmp_path / "img.nrrd")
    monkeypatch.setattr(sitk, "ReadImage", lambda *a, **k: pytest.fail("voxels were read"))
    check_image(path)
    check_image(_write(sitk.JoinSeries([_image()]), tmp_path / "one_volume.nii.gz"))


def test_image_inputs_are_a_file_or_a_folders_image_files(tmp_path):
    notes = _notes_folder(tmp_path / "in")
    a = _write(_image(), notes / "a.nrrd")
    assert image_inputs(a) == [a]
    assert image_inputs(tmp_path / "in") == [a]
    with pytest.raises(InputError, match="Input .*missing does not exist"):
        image_inputs(tmp_path / "missing")


def test_a_folder_without_image_files_is_a_dicom_series_or_refused(tmp_path):
    """A folder without image files is taken as one DICOM series (the folder itself is the
    input, everywhere: segment, adapt --image and --unlabelled); `check_image` refuses it,
    naming what it holds, when it is none."""
    notes = _notes_folder(tmp_path / "notes")
    assert image_inputs(notes) == [notes]
    with pytest.raises(InputError) as err:
        check_image(notes)
    assert str(err.value) == (
        f"Folder {notes} holds no image file (.nii.gz, .nii, .nrrd, .nhdr, .mha, .mhd) and no "
        "DICOM series (it holds 1 entries: notes.txt). Give an image file, a folder of image "
        "files, or a folder holding one DICOM series.")
    empty = _empty_folder(tmp_path / "empty")
    with pytest.raises(InputError, match=rf"^Folder {empty} is empty\. Give an image file "
                                         r"\(\.nii\.gz, .*\.mhd\)"):
        image_inputs(empty)
