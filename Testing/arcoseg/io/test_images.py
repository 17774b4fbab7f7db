"""Specification of arcoseg.io.images: validated reading, atomic writing, geometry checks."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_series import write_dicom_series

from arcoseg.errors import InputError, OutputError
from arcoseg.io import image_files, nifti
from arcoseg.io.geometry import check_same_geometry
from arcoseg.io.images import (array_to_image, check_image, image_spacing_zyx, read_image,
                               read_label, read_spacing_zyx, write_image)
from arcoseg.io.inputs import is_image_path, list_images

SHAPE = (4, 6, 5)  # (z, y, x)
SPACING_XYZ = (0.8, 0.9, 2.5)
ORIGIN_XYZ = (-10.0, 5.0, 3.0)
DIRECTION = (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # x and y swapped: not identity


def _image(array: np.ndarray | None = None, dtype=np.float32) -> sitk.Image:
    if array is None:
        array = np.arange(np.prod(SHAPE), dtype=dtype).reshape(SHAPE)
    img = sitk.GetImageFromArray(np.asarray(array, dtype=dtype))
    img.SetSpacing(SPACING_XYZ)
    img.SetOrigin(ORIGIN_XYZ)
    img.SetDirection(DIRECTION)
    return img


def _label_array() -> np.ndarray:
    label = np.zeros(SHAPE, dtype=np.uint8)
    label[1:3, 2:4, 1:3] = 1
    label[2, 3, 2] = 2
    return label


def _write(img: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(img, str(path))
    return path


# --- reading images -------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_write_then_read_preserves_values_and_geometry(tmp_path, suffix):
    original = _image()
    path = tmp_path / f"img{suffix}"
    write_image(original, path)
    back = read_image(path)
    assert back.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(original))
    np.testing.assert_allclose(back.GetSpacing(), SPACING_XYZ, rtol=1e-6)
    np.testing.assert_allclose(back.GetOrigin(), ORIGIN_XYZ, rtol=1e-6)
    np.testing.assert_allclose(back.GetDirection(), DIRECTION, atol=1e-6)


def test_read_image_converts_integer_images_to_float32(tmp_path):
    path = _write(_image(dtype=np.int16), tmp_path / "ct.nii.gz")
    assert read_image(path).GetPixelID() == sitk.sitkFloat32


def test_read_image_turns_a_2d_image_into_one_slice(tmp_path):
    path = _write(sitk.GetImageFromArray(np.ones((6, 5), np.float32)), tmp_path / "slice.nrrd")
    img = read_image(path)
    assert img.GetDimension() == 3 and img.GetSize() == (5, 6, 1)


def test_read_image_drops_a_singleton_fourth_dimension(tmp_path):
    path = _write(sitk.JoinSeries([_image()]), tmp_path / "t1.nii.gz")
    assert read_image(path).GetSize() == tuple(reversed(SHAPE))


def test_missing_image_names_the_path(tmp_path):
    with pytest.raises(InputError, match="missing.nii.gz.*does not exist"):
        read_image(tmp_path / "missing.nii.gz")


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_truncated_file_is_reported_as_unreadable(tmp_path, suffix):
    path = tmp_path / f"img{suffix}"
    write_image(_image(np.random.default_rng(0).random(SHAPE)), path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.8)])
    with pytest.raises(InputError, match=rf"img{suffix}.*(truncated|not a readable image)"):
        read_image(path)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_a_nifti_file_read_once_and_truncated_since_is_refused(tmp_path, suffix):
    # the completeness check is skipped for a file already found complete, not for a changed one
    path = tmp_path / f"img{suffix}"
    write_image(_image(np.random.default_rng(0).random(SHAPE)), path)
    read_image(path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InputError, match=rf"img{suffix}.*(truncated|not a readable image)"):
        read_image(path)


def test_the_memo_of_complete_nifti_files_forgets_the_oldest_past_its_bound(tmp_path,
                                                                          monkeypatch):
    monkeypatch.setattr(nifti, "COMPLETE_MEMO", 2)
    monkeypatch.setattr(nifti, "_COMPLETE", {})
    paths = [tmp_path / f"img{i}.nii" for i in range(3)]
    for path in paths:
        write_image(_image(), path)
        read_image(path)
    assert [key[0] for key in nifti._COMPLETE] == [str(p.resolve()) for p in paths[1:]]


def test_nifti_with_a_corrupt_gzip_checksum_is_rejected(tmp_path):
    path = tmp_path / "img.nii.gz"
    write_image(_image(), path)
    data = bytearray(path.read_bytes())
    data[-6] ^= 0xFF  # inside the CRC32 trailer
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupt or truncated"):
        read_image(path)


def test_file_that_is_not_an_image_is_rejected(tmp_path):
    path = tmp_path / "notes.nii.gz"
    path.write_bytes(gzip.compress(b"just some text, not a NIfTI header"))
    with pytest.raises(InputError, match="notes.nii.gz.*not a readable image"):
        read_image(path)


def test_4d_image_is_rejected(tmp_path):
    path = _write(sitk.JoinSeries([_image(), _image()]), tmp_path / "4d.nii.gz")
    with pytest.raises(InputError, match="4D.*3D volume is expected"):
        read_image(path)


def test_multi_component_image_is_rejected(tmp_path):
    rgb = sitk.GetImageFromArray(np.ones((*SHAPE, 3), np.float32), isVector=True)
    path = _write(rgb, tmp_path / "rgb.mha")
    with pytest.raises(InputError, match="3 components"):
        read_image(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_non_finite_intensities_are_rejected(tmp_path, bad, suffix):
    array = np.zeros(SHAPE, np.float32)
    array[1, 2, 3] = bad
    path = _write(_image(array), tmp_path / f"nan{suffix}")
    with pytest.raises(InputError, match=rf"nan{suffix}.*NaN or infinite"):
        read_image(path)


def test_read_spacing_reads_the_header_in_zyx_order(tmp_path):
    path = _write(_image(), tmp_path / "img.nrrd")
    assert read_spacing_zyx(path) == pytest.approx(tuple(reversed(SPACING_XYZ)))
    assert image_spacing_zyx(_image()) == pytest.approx(tuple(reversed(SPACING_XYZ)))


# --- DICOM ------------------------------------------------------------------------------------

def test_a_dicom_series_folder_is_an_extra_unlabelled_image_too(tmp_path):
    """The tester's finding: --unlabelled refused the series folder that --image and segment
    read ('other series, other patients', its help says)."""
    from arcoseg.train.run_data import unlabelled_files

    volume = sitk.GetImageFromArray(np.zeros(SHAPE, np.int16))
    write_dicom_series(tmp_path / "series", volume, "1.2.826.0.1.3680043.2.1125.1")
    annotations = _write(_image(), tmp_path / "drawn.nrrd")
    assert unlabelled_files([tmp_path / "series"], [annotations]) == [tmp_path / "series"]


# --- labels -----------------------------------------------------------------------------------

def test_read_label_returns_uint8_with_the_same_values(tmp_path):
    path = _write(_image(_label_array(), dtype=np.int32), tmp_path / "seg.nii.gz")
    label = read_label(path, reference=_image(), allowed_values=[0, 1, 2])
    assert label.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(sitk.GetArrayFromImage(label), _label_array())


def test_float_label_with_integral_values_is_accepted(tmp_path):
    path = _write(_image(_label_array(), dtype=np.float32), tmp_path / "seg.nii.gz")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_label(path)), _label_array())


def test_non_integer_label_is_rejected(tmp_path):
    array = _label_array().astype(np.float32)
    array[0, 0, 0] = 0.5
    path = _write(_image(array), tmp_path / "seg.nii.gz")
    with pytest.raises(InputError, match="seg.nii.gz.*non-integer"):
        read_label(path)


@pytest.mark.parametrize("value", [-1, 255, 300])
def test_label_values_outside_0_to_254_are_rejected(tmp_path, value):
    array = _label_array().astype(np.int16)
    array[0, 0, 0] = value
    path = _write(_image(array, dtype=np.int16), tmp_path / "seg.nii.gz")
    with pytest.raises(InputError, match=rf"\({value}\) outside 0..254"):
        read_label(path)


def test_label_values_not_in_the_dataset_labels_are_named(tmp_path):
    path = _write(_image(_label_array(), dtype=np.uint8), tmp_path / "seg.nii.gz")
    with pytest.raises(InputError, match=r"value\(s\) \[2\].*labels \[0, 1\]"):
        read_label(path, allowed_values={0, 1})


def _mismatched(prop: str) -> sitk.Image:
    if prop == "size":
        img = _image(np.zeros((SHAPE[0] + 1, *SHAPE[1:])))
    else:
        img = _image(np.zeros(SHAPE))
    if prop == "spacing":
        img.SetSpacing((0.8, 0.9, 3.0))
    elif prop == "origin":
        img.SetOrigin((-10.0, 5.0, 4.0))
    elif prop == "direction":
        img.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return img


@pytest.mark.parametrize("prop", ["size", "spacing", "origin", "direction"])
def test_label_on_another_grid_names_both_files_and_the_property(tmp_path, prop):
    path = _write(sitk.Cast(_mismatched(prop), sitk.sitkUInt8), tmp_path / "seg.nii.gz")
    with pytest.raises(InputError) as info:
        read_label(path, reference=_image(), reference_name="scan.nii.gz")
    message = str(info.value)
    assert "seg.nii.gz" in message and "scan.nii.gz" in message
    assert f"{prop} differs" in message


def test_tiny_geometry_differences_are_tolerated():
    other = _image()
    other.SetOrigin(tuple(o + 1e-6 for o in ORIGIN_XYZ))
    other.SetSpacing(tuple(s * (1 + 1e-6) for s in SPACING_XYZ))
    check_same_geometry(_image(), other, "a", "b")


def test_mismatch_message_shows_both_values():
    expected = r"spacing differs \(\(0\.8, 0\.9, 3\) vs \(0\.8, 0\.9, 2\.5\)"
    with pytest.raises(InputError, match=expected):
        check_same_geometry(_image(), _mismatched("spacing"), "image.nii.gz", "label.nii.gz")


# --- writing ----------------------------------------------------------------------------------

def test_unsupported_output_extension_lists_the_supported_ones(tmp_path):
    with pytest.raises(OutputError, match=r"'\.png'.*\.nii\.gz, \.nii, \.nrrd, \.mha"):
        write_image(_image(), tmp_path / "out.png")


def test_unwritable_output_path_raises_output_error(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a regular file, not a folder")
    with pytest.raises(OutputError, match="file.txt"):
        write_image(_image(), blocker / "sub" / "out.nii.gz")


def test_write_is_compressed_and_leaves_no_temporary_files(tmp_path):
    write_image(_image(), tmp_path / "out.nii.gz")
    write_image(_image(), tmp_path / "out.nrrd")
    assert (tmp_path / "out.nii.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert b"encoding: gzip" in (tmp_path / "out.nrrd").read_bytes()[:1000]
    assert sorted(os.listdir(tmp_path)) == ["out.nii.gz", "out.nrrd"]


def test_nifti_gz_is_written_at_zlibs_fastest_level_with_the_same_bytes_each_time(tmp_path):
    labels = array_to_image(_label_array(), _image(), np.uint8)
    for name in ("a.nii.gz", "b.nii.gz"):
        write_image(labels, tmp_path / name)
    packed = (tmp_path / "a.nii.gz").read_bytes()
    assert packed == (tmp_path / "b.nii.gz").read_bytes()  # no file name or time inside
    assert packed[8] == 4  # gzip's "fastest" flag: compressed at level 1
    back = read_label(tmp_path / "a.nii.gz")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), _label_array())
    assert back.GetPixelID() == sitk.sitkUInt8


def test_a_nifti_gz_write_that_fails_leaves_neither_file_nor_its_plain_copy(tmp_path,
                                                                           monkeypatch):
    def failing_copy(source, target, length=0):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(image_files.shutil, "copyfileobj", failing_copy)
    with pytest.raises(OutputError, match="out.nii.gz: No space left on device"):
        write_image(_image(), tmp_path / "out.nii.gz")
    assert os.listdir(tmp_path) == []


def test_write_replaces_an_existing_file(tmp_path):
    path = tmp_path / "out.nii.gz"
    write_image(_image(), path)
    write_image(_image(np.zeros(SHAPE)), path)
    assert sitk.GetArrayFromImage(read_image(path)).max() == 0


# --- helpers ----------------------------------------------------------------------------------

def test_array_to_image_copies_the_reference_geometry():
    ref = _image()
    img = array_to_image(np.ones(SHAPE), ref, np.uint8)
    assert img.GetPixelID() == sitk.sitkUInt8
    assert (img.GetSpacing(), img.GetOrigin(), img.GetDirection()) == (
        ref.GetSpacing(), ref.GetOrigin(), ref.GetDirection())
    with pytest.raises(ValueError, match="does not match"):
        array_to_image(np.ones((1, 2, 3)), ref, np.float32)


def test_list_images_is_sorted_and_skips_other_and_hidden_files(tmp_path):
    for name in ["b.nii.gz", "a.nrrd", "c.mha", ".tmp.nii.gz", "notes.txt", "d.png"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "folder.nii.gz").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.nrrd", "b.nii.gz", "c.mha"]
    assert is_image_path("x/scan.NII.GZ") and not is_image_path("x/scan.gz")
    with pytest.raises(InputError, match="does not exist"):
        list_images(tmp_path / "nope")


def test_partial_label_maps_may_mark_unannotated_voxels_255(tmp_path):
    labels = np.zeros((2, 4, 4), np.uint8)
    labels[1] = 255
    path = tmp_path / "partial.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(path))
    with pytest.raises(InputError, match="outside 0..254"):
        read_label(path)
    assert sitk.GetArrayFromImage(read_label(path, partial=True)).max() == 255


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_infinite_voxels_are_refused_in_every_format(tmp_path, suffix, dtype, bad):
    """A hunter's finding: ITK's NIfTI reader reads NaN and Inf as 0, so the same broken image
    was refused as .nrrd and segmented (and scored, as a label map) as .nii.gz, exit 0."""
    array = np.zeros(SHAPE, dtype)
    array[-1, -1, -1] = bad  # the last voxel: past any chunk boundary of the check
    path = _write(_image(array, dtype), tmp_path / f"img{suffix}")
    with pytest.raises(InputError, match=r"contains NaN or infinite intensities"):
        read_image(path)
    with pytest.raises(InputError, match=r"contains NaN or infinite intensities|non-integer"):
        read_label(path)


def test_a_large_compressed_float_image_is_checked_across_its_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(nifti, "_CHUNK", 7)  # chunks that split voxels
    array = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    path = _write(_image(array), tmp_path / "img.nii.gz")
    read_image(path)  # finite: accepted
    array[2, 3, 1] = np.nan
    path = _write(_image(array), tmp_path / "nan.nii.gz")
    with pytest.raises(InputError, match="nan.nii.gz contains NaN"):
        check_image(path)


def test_float64_values_beyond_float32_are_named_as_such_not_as_nan(tmp_path):
    """A hunter's finding: 1e300 was refused as 'NaN or infinite intensities'."""
    array = np.zeros(SHAPE, np.float64)
    array[1, 1, 1] = 1e300
    path = _write(_image(array, np.float64), tmp_path / "huge.mha")
    with pytest.raises(InputError, match=r"beyond the float32 range \(up to 1e\+300\)"):
        read_image(path)
