"""DICOM series folders: read as one volume with its geometry, or refused (by their headers,
before any voxel is read) when they are not one evenly spaced stack."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_series import write_dicom_series

from arcoseg.cli import main
from arcoseg.errors import InputError
from arcoseg.io.images import check_image, read_image

SHAPE = (6, 8, 7)  # (z, y, x)
SPACING_XYZ = (0.8, 0.9, 2.5)
ORIGIN_XYZ = (-10.0, 5.0, 3.0)
UID = "1.2.826.0.1.3680043.2.1125.1"


def _volume(oblique: bool = False) -> sitk.Image:
    volume = sitk.GetImageFromArray(np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE))
    volume.SetSpacing(SPACING_XYZ)
    volume.SetOrigin(ORIGIN_XYZ)
    if oblique:  # 20 degrees about y
        c, s = math.cos(math.radians(20)), math.sin(math.radians(20))
        volume.SetDirection((c, 0, s, 0, 1, 0, -s, 0, c))
    return volume


def _positions(volume: sitk.Image) -> list[tuple[float, ...]]:
    return [volume.TransformIndexToPhysicalPoint((0, 0, z)) for z in range(volume.GetDepth())]


@pytest.mark.parametrize("oblique", [False, True])
def test_an_evenly_spaced_series_reads_with_its_voxels_and_geometry(tmp_path, oblique):
    volume = _volume(oblique)
    write_dicom_series(tmp_path / "series", volume, UID)
    back = read_image(tmp_path / "series")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(volume))
    np.testing.assert_allclose(back.GetSpacing(), SPACING_XYZ, atol=1e-3)
    np.testing.assert_allclose(back.GetOrigin(), ORIGIN_XYZ, atol=1e-3)
    np.testing.assert_allclose(back.GetDirection(), volume.GetDirection(), atol=1e-5)


def test_a_series_with_a_missing_slice_is_refused_naming_the_gap(tmp_path):
    """A hunter's finding (HIGH): ITK spread the 5 remaining slices evenly over the extent;
    the label map's slices lay up to half a slice from the image's, exit 0."""
    files = write_dicom_series(tmp_path / "series", _volume(oblique=True), UID)
    files[3].unlink()
    for check in (check_image, read_image):
        with pytest.raises(InputError, match=r"not evenly spaced: slices slice002.dcm and "
                                             r"slice004.dcm lie 5 mm apart, most others "
                                             r"2.5 mm \(a missing slice"):
            check(tmp_path / "series")


def test_a_series_with_a_missing_slice_is_refused_by_segment_before_any_work(
        tmp_path, capsys, untrained_model):
    files = write_dicom_series(tmp_path / "series", _volume(), UID)
    files[2].unlink()
    code = main(["segment", str(untrained_model), str(tmp_path / "series"), "-o",
                 str(tmp_path / "seg.nii.gz"), "--progress", "json"])
    assert code == 2 and "not evenly spaced" in capsys.readouterr().out
    assert not (tmp_path / "seg.nii.gz").exists()


def test_two_images_at_one_position_are_refused(tmp_path):
    volume = _volume()
    positions = _positions(volume)
    positions[3] = positions[2]  # a second echo of slice 2
    write_dicom_series(tmp_path / "series", volume, UID, positions)
    with pytest.raises(InputError, match="several images at one slice position"):
        read_image(tmp_path / "series")


def test_a_gantry_tilt_is_refused_not_read_sheared(tmp_path):
    volume = _volume()
    positions = [(x, y + 0.5 * z, zz) for z, (x, y, zz) in enumerate(_positions(volume))]
    write_dicom_series(tmp_path / "series", volume, UID, positions)
    with pytest.raises(InputError, match="move sideways by up to 0.50 mm .*gantry tilt"):
        check_image(tmp_path / "series")


@pytest.mark.parametrize("step", [2.5, 0.625, 1 / 3])
def test_positions_rounded_as_scanners_write_them_are_accepted(tmp_path, step):
    """The regression hunt's finding: at 2 decimals a 0.625 mm series reads 0.62 / 0.63 mm
    steps, and was refused as 'not evenly spaced'."""
    volume = _volume()
    volume.SetSpacing((0.8, 0.9, step))
    positions = [(round(x, 2), round(y, 2), round(z, 2)) for x, y, z in _positions(volume)]
    write_dicom_series(tmp_path / "series", volume, UID, positions)
    check_image(tmp_path / "series")


def test_folder_with_two_dicom_series_is_rejected(tmp_path):
    volume = sitk.GetImageFromArray(np.zeros(SHAPE, np.int16))
    write_dicom_series(tmp_path / "mixed", volume, "1.2.826.0.1.3680043.2.1125.1")
    moved = sitk.GetImageFromArray(np.zeros(SHAPE, np.int16))
    moved.SetOrigin((0.0, 0.0, 50.0))
    (tmp_path / "other").mkdir()
    write_dicom_series(tmp_path / "other", moved, "1.2.826.0.1.3680043.2.1125.2")
    for f in (tmp_path / "other").iterdir():
        f.rename(tmp_path / "mixed" / f"b_{f.name}")
    with pytest.raises(InputError, match="2 DICOM series"):
        read_image(tmp_path / "mixed")


def test_folder_without_dicom_is_rejected(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(InputError, match="no DICOM series"):
        read_image(tmp_path)




def test_a_folder_holding_a_series_and_image_files_is_refused(tmp_path):
    """A hunter's finding: `segment M series -o series` wrote series/series.nii.gz; the next
    `segment M series` segmented that label map as the image and skipped the series, exit 0."""
    from arcoseg.io.inputs import image_inputs

    write_dicom_series(tmp_path / "series", _volume(), UID)
    sitk.WriteImage(_volume(), str(tmp_path / "series" / "series.nii.gz"))
    with pytest.raises(InputError, match="holds image files \\(series.nii.gz\\) and a DICOM "
                                         "series"):
        image_inputs(tmp_path / "series")


def test_a_folder_of_images_with_a_readme_is_listed_without_an_itk_warning(tmp_path, capfd):
    """The regression hunt's finding: looking for a DICOM series beside the images printed
    ITK's 'No Series were found' on stderr (shown in Slicer's log by the worker)."""
    from arcoseg.io.inputs import image_inputs

    for name in ("a.nii.gz", "b.nii.gz"):
        sitk.WriteImage(_volume(), str(tmp_path / name))
    (tmp_path / "README.txt").write_text("notes")
    assert [p.name for p in image_inputs(tmp_path)] == ["a.nii.gz", "b.nii.gz"]
    assert "No Series were found" not in capfd.readouterr().err
