"""The one "same grid" rule (tolerance in voxels) and formats that must keep a grid (issue 17,
items 1 and 3)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from arcoseg.errors import InputError, OutputError
from arcoseg.io.geometry import (Grid, check_format_holds, grid_difference, read_grid,
                                 voxel_offset)
from arcoseg.io.geometry import check_same_geometry
from arcoseg.io.images import read_image, write_image

# Gantry tilt of 15°: slices stacked along (0, -0.2588, 0.9659) (issue 17 item 1).
SHEARED = (1.0, 0.0, 0.0, 0.0, 1.0, -0.2588, 0.0, 0.0, 0.9659)


def _image(size=(20, 16, 6), spacing=(0.8, 0.8, 2.0), origin=(0.0, 0.0, 0.0),
           direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)) -> sitk.Image:
    image = sitk.GetImageFromArray(np.arange(np.prod(size[::-1]), dtype=np.float32)
                                   .reshape(size[::-1]))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection([float(v) for v in direction])
    return image


def test_a_three_quarter_voxel_shift_far_from_the_origin_is_a_different_grid():
    """0.2 mm voxels at z = -1500 mm, one image shifted by 0.15 mm (0.75 voxel): a tolerance in
    millimetres of position accepted it; in voxels it is refused."""
    gt = _image(spacing=(0.2, 0.2, 0.2), origin=(0.0, 0.0, -1500.0))
    shifted = _image(spacing=(0.2, 0.2, 0.2), origin=(0.0, 0.0, -1500.15))
    assert voxel_offset(gt, shifted) == pytest.approx(0.75)
    assert "voxels lie up to 0.75 voxel(s) apart" in grid_difference(gt, shifted)
    with pytest.raises(InputError, match="origin differs"):
        check_same_geometry(gt, shifted, "gt.nii.gz", "pred.nii.gz")


def test_float32_rounding_of_a_far_origin_is_the_same_grid():
    gt = _image(spacing=(0.2, 0.2, 0.2), origin=(0.0, 0.0, -1500.0))
    rounded = _image(spacing=(0.2, 0.2, 0.2),
                     origin=(0.0, 0.0, float(np.float32(-1500.0001))))
    assert grid_difference(gt, rounded) is None


def test_a_tiny_rotation_matters_across_a_large_grid_only():
    angle = 2e-4  # radians: 0.1 voxel at the far edge of 512 voxels, 0.001 on 5
    c, s = np.cos(angle), np.sin(angle)
    rotated = (c, -s, 0, s, c, 0, 0, 0, 1)
    assert grid_difference(_image((512, 512, 1)), _image((512, 512, 1), direction=rotated))
    assert grid_difference(_image((5, 5, 1)), _image((5, 5, 1), direction=rotated)) is None


def test_a_sheared_direction_survives_nrrd_and_mha(tmp_path):
    image = _image(direction=SHEARED)
    for suffix in (".nrrd", ".mha"):
        write_image(image, tmp_path / f"img{suffix}")
        back = read_image(tmp_path / f"img{suffix}")
        assert grid_difference(image, back) is None
        np.testing.assert_allclose(back.GetDirection(), SHEARED, atol=1e-4)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_a_sheared_direction_is_never_written_as_nifti(tmp_path, suffix):
    """ITK orthogonalises it with a warning only; the writer reads the header back and refuses."""
    with pytest.raises(OutputError, match="another geometry"):
        write_image(_image(direction=SHEARED), tmp_path / f"seg{suffix}")
    assert list(tmp_path.iterdir()) == []  # not even a temporary file


def test_format_check_refuses_nifti_for_a_sheared_grid_before_any_work():
    with pytest.raises(OutputError) as err:
        check_format_holds(_image(direction=SHEARED), "out/seg.nii.gz", "ct.nrrd")
    message = str(err.value)
    assert "ct.nrrd has a sheared" in message and "-o out/seg.nrrd" in message
    assert "voxels (about" in message  # how far labels would move
    check_format_holds(_image(direction=SHEARED), "seg.nrrd", "ct.nrrd")
    check_format_holds(_image(), "seg.nii.gz", "ct.nrrd")  # orthonormal: NIfTI is fine
    assert "--ext .nrrd for a folder" in message
    with pytest.raises(OutputError) as err:  # adapt has no --ext: not suggested there
        check_format_holds(_image(direction=SHEARED), "seg.nii.gz", "ct.nrrd", ext_option=False)
    assert "--ext" not in str(err.value) and "-o seg.nrrd)" in str(err.value)


def test_read_grid_reads_the_header_only(tmp_path):
    image = _image(origin=(1.0, 2.0, 3.0), direction=SHEARED)
    write_image(image, tmp_path / "a.nrrd")
    grid = read_grid(tmp_path / "a.nrrd")
    assert grid.size == (20, 16, 6) and grid_difference(Grid.of(image), grid) is None
    assert read_grid(tmp_path) is None and read_grid(tmp_path / "missing.nii.gz") is None
