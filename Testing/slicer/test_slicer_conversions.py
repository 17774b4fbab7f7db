"""Scene geometry ↔ engine files: real vtk objects, SimpleITK files, oblique/flipped geometry."""

from __future__ import annotations

import re

import numpy as np
import pytest
import vtk

from ARCOSegmentLib import conversions as cv


def rotation(axis: str, degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def ijk_to_ras(directions: np.ndarray, spacing, origin) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = directions * np.asarray(spacing, float)
    matrix[:3, 3] = origin
    return matrix


GEOMETRIES = {
    # Slicer's default for a NIfTI in LPS: I → -R (L), J → -A (P), anisotropic spacing
    "lps_default": ijk_to_ras(np.diag([-1.0, -1.0, 1.0]), (0.7, 0.8, 3.0), (12.5, -4.0, 30.0)),
    # oblique: rotated about two axes, with a flipped (left-handed) K axis
    "oblique_flipped": ijk_to_ras(rotation("z", 25) @ rotation("x", -40) @ np.diag([1.0, 1.0, -1.0]),
                                  (0.5, 1.25, 2.5), (-100.0, 20.0, 5.5)),
    # axes permuted: I along S, J along R, K along A (a sagittal acquisition)
    "permuted": ijk_to_ras(np.array([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]]), (1.1, 0.9, 4.0),
                           (3.0, 2.0, 1.0)),
}


def voxel_centres_ras(matrix: np.ndarray, shape) -> np.ndarray:
    """RAS of every voxel centre, computed with vtkMatrix4x4 (independently of the module)."""
    vtk_matrix = cv.numpy_to_vtk_matrix(matrix)
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return np.array([vtk_matrix.MultiplyPoint((float(a), float(b), float(c), 1.0))[:3]
                     for a, b, c in zip(i.ravel(), j.ravel(), k.ravel())]).reshape(*shape, 3)


@pytest.fixture(params=sorted(GEOMETRIES))
def geometry(request) -> np.ndarray:
    return GEOMETRIES[request.param]


def test_vtk_and_numpy_matrices_convert_both_ways():
    matrix = GEOMETRIES["oblique_flipped"]
    vtk_matrix = cv.numpy_to_vtk_matrix(matrix)
    assert isinstance(vtk_matrix, vtk.vtkMatrix4x4)
    np.testing.assert_allclose(cv.vtk_matrix_to_numpy(vtk_matrix), matrix)


def test_ras_and_lps_differ_by_flipping_the_first_two_axes():
    points = np.array([[1.0, 2.0, 3.0], [-4.0, 5.0, -6.0]])
    np.testing.assert_allclose(cv.ras_to_lps(points), [[-1, -2, 3], [4, -5, -6]])
    np.testing.assert_allclose(cv.lps_to_ras(cv.ras_to_lps(points)), points)


def test_itk_geometry_places_every_voxel_where_slicer_does(geometry):
    """SimpleITK's own index→physical mapping (LPS) agrees with the IJK-to-RAS matrix."""
    shape = (3, 4, 5)
    image = cv.array_to_image(np.zeros(shape, np.int16), geometry)
    centres = voxel_centres_ras(geometry, shape)
    for k, j, i in [(0, 0, 0), (2, 3, 4), (1, 2, 0), (2, 0, 3)]:
        lps = image.TransformIndexToPhysicalPoint((i, j, k))
        np.testing.assert_allclose(cv.lps_to_ras(lps), centres[k, j, i], atol=1e-9)


def test_itk_geometry_splits_spacing_and_direction(geometry):
    itk = cv.ijk_to_ras_to_itk(geometry)
    np.testing.assert_allclose(np.linalg.norm(geometry[:3, :3], axis=0), itk.spacing)
    direction = np.reshape(itk.direction, (3, 3))
    np.testing.assert_allclose(direction.T @ direction, np.eye(3), atol=1e-12)
    back = cv.itk_to_ijk_to_ras(itk.origin, itk.spacing, itk.direction)
    np.testing.assert_allclose(back, geometry)


def test_degenerate_geometry_is_refused():
    with pytest.raises(ValueError, match="degenerate"):
        cv.ijk_to_ras_to_itk(np.diag([1.0, 0.0, 1.0, 1.0]))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_file_round_trip_keeps_voxels_and_the_physical_position_of_voxel_centres(
        tmp_path, geometry, suffix):
    rng = np.random.default_rng(0)
    array = rng.integers(-1000, 1000, size=(4, 5, 6)).astype(np.int16)
    path = cv.write_volume(array, geometry, tmp_path / f"volume{suffix}")
    back, back_matrix = cv.read_volume(path)
    np.testing.assert_array_equal(back, array)
    np.testing.assert_allclose(voxel_centres_ras(back_matrix, array.shape),
                               voxel_centres_ras(geometry, array.shape), atol=1e-4)


def test_nrrd_header_written_for_the_engine_describes_the_same_lps_space(tmp_path):
    """An independent reading: the NRRD header's space origin/directions, converted to RAS."""
    geometry = GEOMETRIES["oblique_flipped"]
    path = cv.write_volume(np.zeros((2, 3, 4), np.uint8), geometry, tmp_path / "v.nrrd")
    header = path.read_bytes().split(b"\n\n")[0].decode()
    assert "space: left-posterior-superior" in header
    vectors = lambda key: [list(map(float, v.split(","))) for v in  # noqa: E731
                           re.findall(r"\(([^)]*)\)", re.search(f"{key}: (.*)", header)[1])]
    origin, directions = np.array(vectors("space origin")[0]), np.array(vectors("space directions"))
    for i, j, k in [(0, 0, 0), (3, 2, 1), (1, 0, 1)]:
        lps = origin + i * directions[0] + j * directions[1] + k * directions[2]
        expected = (geometry @ [i, j, k, 1])[:3]
        np.testing.assert_allclose(cv.lps_to_ras(lps), expected, atol=1e-4)


def test_label_maps_read_back_as_uint8_and_non_labels_are_refused(tmp_path):
    labels = np.zeros((2, 3, 4), np.uint8)
    labels[1, 1, 1:3] = 2
    path = cv.write_volume(labels, GEOMETRIES["permuted"], tmp_path / "labels.nii.gz")
    back, matrix = cv.read_labelmap(path)
    assert back.dtype == np.uint8 and (back == labels).all()
    np.testing.assert_allclose(matrix, GEOMETRIES["permuted"], atol=1e-5)
    cv.write_volume(np.full((2, 2, 2), 0.5, np.float32), np.eye(4), tmp_path / "float.nii.gz")
    with pytest.raises(ValueError, match="integer labels"):
        cv.read_labelmap(tmp_path / "float.nii.gz")
    with pytest.raises(ValueError, match="Cannot read"):
        cv.read_volume(tmp_path / "missing.nii.gz")


def test_vtk_image_data_voxels_map_to_kji_arrays():
    """vtkImageData stores I fastest: value(i, j, k) = i + 10 j + 100 k lands at array[k, j, i]."""
    image_data = vtk.vtkImageData()
    image_data.SetDimensions(4, 3, 2)
    image_data.AllocateScalars(vtk.VTK_SHORT, 1)
    for k in range(2):
        for j in range(3):
            for i in range(4):
                image_data.SetScalarComponentFromDouble(i, j, k, 0, i + 10 * j + 100 * k)
    array = cv.array_from_image_data(image_data)
    assert array.shape == (2, 3, 4)
    assert array[1, 2, 3] == 123 and array[0, 1, 2] == 12
    again = cv.image_data_from_array(array)
    assert again.GetDimensions() == (4, 3, 2)
    assert again.GetScalarComponentAsDouble(3, 2, 1, 0) == 123


def test_roi_box_keeps_the_voxels_whose_centres_are_inside_the_bounds():
    matrix = GEOMETRIES["lps_default"]  # I → -R with 0.7 mm spacing, K → S with 3 mm
    shape = (10, 12, 14)
    centres = voxel_centres_ras(matrix, shape)
    bounds = [5.0, 11.0, -10.0, -6.0, 35.0, 50.0]
    box = cv.ijk_box_for_ras_bounds(matrix, shape, bounds)
    inside = np.all((centres >= bounds[0::2]) & (centres <= bounds[1::2]), axis=-1)
    expected = np.zeros(shape, bool)
    expected[box] = True
    np.testing.assert_array_equal(expected, inside)


def test_roi_box_is_clipped_to_the_volume_and_an_outside_roi_is_refused():
    shape = (4, 5, 6)
    box = cv.ijk_box_for_ras_bounds(np.eye(4), shape, [-100, 100, 1.2, 2.0, -1, 2])
    assert box == (slice(0, 3), slice(2, 3), slice(0, 6))
    with pytest.raises(ValueError, match="does not overlap"):
        cv.ijk_box_for_ras_bounds(np.eye(4), shape, [50, 60, 0, 1, 0, 1])


def test_crop_keeps_physical_positions_and_paste_restores_the_full_grid(geometry):
    shape = (5, 6, 7)
    array = np.arange(np.prod(shape)).reshape(shape)
    box = (slice(1, 4), slice(2, 5), slice(3, 7))
    sub, sub_matrix = cv.crop(array, geometry, box)
    assert sub.shape == (3, 3, 4) and sub[0, 0, 0] == array[1, 2, 3]
    np.testing.assert_allclose(voxel_centres_ras(sub_matrix, sub.shape),
                               voxel_centres_ras(geometry, shape)[box], atol=1e-9)
    full = cv.paste(sub, box, shape, fill=-1)
    assert (full[box] == sub).all() and (full == -1).sum() == array.size - sub.size


def test_slice_centre_is_the_middle_of_the_requested_slice(geometry):
    shape = (5, 6, 7)
    centres = voxel_centres_ras(geometry, shape)
    # array axis 0 (K), slice 4: mean of the centres of the voxels on that slice
    np.testing.assert_allclose(cv.slice_center_ras(geometry, shape, 0, 4),
                               centres[4].reshape(-1, 3).mean(axis=0), atol=1e-9)
    np.testing.assert_allclose(cv.slice_center_ras(geometry, shape, 2, 1),
                               centres[:, :, 1].reshape(-1, 3).mean(axis=0), atol=1e-9)


def test_axis_orientation_names_the_closest_anatomical_plane():
    assert [cv.axis_orientation(GEOMETRIES["lps_default"], a) for a in range(3)] == \
        ["axial", "coronal", "sagittal"]
    # permuted: I along S, J along R, K along A
    assert [cv.axis_orientation(GEOMETRIES["permuted"], a) for a in range(3)] == \
        ["coronal", "sagittal", "axial"]
