"""Per-case metrics: hand-computed Dice/Jaccard/HD95/ASD, empty-class rules, input checks."""

import math

import numpy as np
import pytest

from arcoseg.errors import InputError
from arcoseg.evaluation.metrics import METRICS, case_metrics

SPACING = (5, 1.0, 0.5)  # (z, y, x) mm, all different so a swapped axis shows; int on purpose


def square(x0: int, shape=(1, 10, 10)) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    labels[0, 2:6, x0:x0 + 4] = 1
    return labels


def test_square_shifted_by_one_voxel_along_x_matches_hand_computed_values():
    m = case_metrics(square(3), square(2), {"a": 1}, SPACING)["a"]
    # 16 voxels each, 12 shared: Dice 2*12/32, Jaccard 12/20.
    assert m["dice"] == pytest.approx(0.75)
    assert m["jaccard"] == pytest.approx(0.6)
    # One slice: scored in its plane. Each square's contour has 12 voxels; 6 of them are one
    # voxel (0.5 mm along x) from the other contour, 6 lie on it (the shared top and bottom
    # rows, and the corners). (As a 3D volume every voxel was "surface": ASD 8/32.)
    assert m["hd95_vox"] == pytest.approx(1.0)
    assert m["asd_vox"] == pytest.approx(12 / 24)
    assert m["hd95_mm"] == pytest.approx(0.5)  # x spacing
    assert m["asd_mm"] == pytest.approx(0.5 * 12 / 24)


@pytest.mark.parametrize("axis, spacing_mm", [(0, 5.0), (1, 1.0), (2, 0.5)])
def test_one_voxel_shift_gives_distance_one_voxel_and_the_axis_spacing_in_mm(axis, spacing_mm):
    gt = np.zeros((3, 5, 5), np.uint8)
    gt[1, 2, 2] = 1
    pred = np.roll(gt, 1, axis=axis)
    m = case_metrics(pred, gt, {"a": 1}, SPACING)["a"]
    assert m["dice"] == 0.0
    assert m["hd95_vox"] == pytest.approx(1.0)
    assert m["asd_vox"] == pytest.approx(1.0)
    assert m["hd95_mm"] == pytest.approx(spacing_mm)
    assert m["asd_mm"] == pytest.approx(spacing_mm)


def test_perfect_prediction_scores_dice_one_and_zero_distances():
    m = case_metrics(square(2), square(2), {"a": 1}, SPACING)["a"]
    assert m == pytest.approx({"dice": 1, "jaccard": 1, "hd95_vox": 0, "asd_vox": 0,
                               "hd95_mm": 0, "asd_mm": 0})


@pytest.mark.parametrize("empty", ["prediction", "ground truth"])
def test_class_empty_on_one_side_scores_zero_overlap_and_the_image_diagonal(empty):
    present, missing = square(2), np.zeros((1, 10, 10), np.uint8)
    pred, gt = (missing, present) if empty == "prediction" else (present, missing)
    m = case_metrics(pred, gt, {"a": 1}, SPACING)["a"]
    assert m["dice"] == 0.0 and m["jaccard"] == 0.0
    # the diagonal of the slice's plane (its one-voxel z axis is left out)
    assert m["hd95_vox"] == m["asd_vox"] == pytest.approx(math.sqrt(100 + 100))
    assert m["hd95_mm"] == m["asd_mm"] == pytest.approx(math.sqrt(10**2 + 5**2))
    assert all(math.isfinite(v) for v in m.values())


def test_class_absent_from_both_is_nan_for_every_metric_and_others_unaffected():
    pred, gt = square(2), square(2)
    result = case_metrics(pred, gt, {"a": 1, "b": 2}, SPACING)
    assert set(result["b"]) == set(METRICS)
    assert all(math.isnan(v) for v in result["b"].values())
    assert result["a"]["dice"] == pytest.approx(1.0)


def test_each_class_is_scored_on_its_own_label_value():
    gt = square(2)
    gt[0, 7:9, 7:9] = 3
    pred = gt.copy()
    pred[pred == 3] = 0
    result = case_metrics(pred, gt, {"a": 1, "c": 3}, SPACING)
    assert result["a"]["dice"] == pytest.approx(1.0)
    assert result["c"]["dice"] == 0.0


def test_shape_mismatch_is_an_input_error():
    with pytest.raises(InputError, match="shape"):
        case_metrics(np.zeros((1, 10, 10)), np.zeros((1, 10, 11)), {"a": 1}, SPACING)


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0.0, 1.0, 1.0)])
def test_bad_spacing_is_an_input_error(spacing):
    with pytest.raises(InputError, match="Spacing"):
        case_metrics(square(2), square(2), {"a": 1}, spacing)


def test_background_is_not_a_class():
    with pytest.raises(InputError, match="background"):
        case_metrics(square(2), square(2), {"bg": 0, "a": 1}, SPACING)


def test_distances_on_a_realistic_slice_stack_follow_the_shift():
    _, y, x = np.mgrid[:10, :256, :256]
    gt = np.zeros((10, 256, 256), np.uint8)
    for value, (cy, cx, r) in enumerate([(100, 100, 40), (150, 160, 30), (80, 180, 20)], start=1):
        gt[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = value
    pred = np.roll(gt, 3, axis=2)
    result = case_metrics(pred, gt, {"a": 1, "b": 2, "c": 3}, (8.0, 1.2, 1.2))
    assert 1.0 < result["a"]["hd95_vox"] <= 3.0 + 1e-6  # a 3-voxel shift, less where tangential


def _shifted_blocks(shape=(6, 12, 12)) -> tuple[np.ndarray, np.ndarray]:
    gt = np.zeros(shape, np.uint8)
    gt[1:5, 3:8, 2:9] = 1
    pred = np.zeros(shape, np.uint8)
    pred[2:6, 1:6, 3:9] = 1
    return pred, gt


def test_an_orthogonal_grid_given_as_axes_gives_monais_own_distances():
    """The physical-position computation (used for sheared grids) reproduces MONAI's numbers
    when the grid is not sheared: same surface voxels, same percentile, same mean."""
    from arcoseg.evaluation.metrics import _distances, _mask

    pred, gt = _shifted_blocks()
    spacing = (3.0, 1.0, 0.7)
    monai = _distances(_mask(pred, 1), _mask(gt, 1), spacing)
    physical = _distances(_mask(pred, 1), _mask(gt, 1), spacing, axes=np.diag(spacing))
    assert physical == pytest.approx(monai)
    assert monai[0] > 0 and monai[1] > 0


def test_a_sheared_grid_measures_mm_distances_between_physical_positions():
    """The tester's finding: z tilted 30 degrees towards y (gantry tilt). MONAI's per-axis
    spacing treats the axes as orthogonal; the mm distances must be those between the surface
    voxels' physical positions (checked here by brute force)."""
    spacing = (3.0, 1.0, 1.0)  # (z, y, x)
    tilt = math.radians(30)
    direction = (1, 0, 0,  0, 1, math.sin(tilt),  0, 0, math.cos(tilt))  # z axis: (0, sin, cos)
    gt = np.zeros((6, 12, 12), np.uint8)
    gt[1:4, 3:8, 2:9] = 1
    pred = np.roll(gt, 1, axis=0)  # one voxel along the tilted z axis
    pred = np.roll(pred, -3, axis=1)  # and 3 along y
    m = case_metrics(pred, gt, {"a": 1}, spacing, direction)["a"]
    # independent: surface voxels' physical positions, brute-force nearest distances
    steps = np.asarray(direction, float).reshape(3, 3) @ np.diag([1.0, 1.0, 3.0])  # mm/index
    from scipy.ndimage import binary_erosion

    def surface(mask):
        points = np.argwhere(mask & ~binary_erosion(mask))[:, ::-1]  # (x, y, z) indices
        return points @ steps.T

    a, b = surface(pred.astype(bool)), surface(gt.astype(bool))
    d = np.linalg.norm(a[:, None] - b[None], axis=2)
    to_gt, to_pred = d.min(axis=1), d.min(axis=0)
    assert m["hd95_mm"] == pytest.approx(max(np.percentile(to_gt, 95), np.percentile(to_pred, 95)))
    assert m["asd_mm"] == pytest.approx(np.concatenate([to_gt, to_pred]).mean())
    plain = case_metrics(pred, gt, {"a": 1}, spacing)["a"]  # as if orthogonal: differs
    assert abs(plain["hd95_mm"] - m["hd95_mm"]) > 0.3
    assert m["hd95_vox"] == plain["hd95_vox"]  # voxel units do not depend on the geometry
