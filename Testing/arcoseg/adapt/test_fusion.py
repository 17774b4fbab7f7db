"""Adapt's output: the adapted model's probabilities fused with a soft copy of the drawing."""

from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk

from arcoseg.adapt.annotations import Annotations
from arcoseg.adapt.baselines import nearest_copy, propagate_labels
from arcoseg.adapt.fusion import (FusionSettings, checked_fusion, copy_probabilities, fuse,
                                  fused_segmentation)
from arcoseg.constants import IGNORE_LABEL
from arcoseg.errors import ArcosegError
from arcoseg.inference import Segmentation

SHARP = FusionSettings(sigma_mm=0.0, slope=0.0)  # no blur: the copy itself, with its floor


def drawing(axis: int = 0, shape=(6, 12, 12)) -> Annotations:
    """Slices 1 and 4 along `axis` drawn: a square of class 1 (slice 1) and of class 2 (4)."""
    labels = np.full(shape, IGNORE_LABEL, np.uint8)
    for index, value in ((1, 1), (4, 2)):
        plane = np.zeros([s for a, s in enumerate(shape) if a != axis], np.uint8)
        plane[3:9, 3:9] = value
        np.moveaxis(labels, axis, 0)[index] = plane
    return Annotations(labels, axis, [1, 4])


def model_probabilities(foreground: int, confidence: float, shape=(6, 12, 12)) -> np.ndarray:
    """A model that says `foreground` everywhere in the square, background elsewhere."""
    probs = np.full((3, *shape), (1 - confidence) / 2, np.float32)
    probs[0] = confidence
    probs[:, :, 3:9, 3:9] = (1 - confidence) / 2
    probs[foreground, :, 3:9, 3:9] = confidence
    return probs


def test_the_soft_copy_is_a_distribution_and_its_argmax_is_the_nearest_copy():
    ann = drawing()
    prior = copy_probabilities(ann, 3, (5.0, 1.0, 1.0), SHARP)
    assert prior.shape == (3, 6, 12, 12)
    np.testing.assert_allclose(prior.sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(prior.argmax(axis=0), nearest_copy(ann.labels, 0, [1, 4]))


def test_the_interpolating_source_fills_between_the_drawn_slices_as_fill_between_slices():
    labels = np.full((6, 24, 24), IGNORE_LABEL, np.uint8)
    labels[[1, 4]] = 0
    labels[1, 6:18, 6:18] = 1  # a large square on slice 1, a small one on slice 4
    labels[4, 10:14, 10:14] = 1
    ann = Annotations(labels, 0, [1, 4])
    prior = copy_probabilities(ann, 2, (5.0, 1.0, 1.0), replace(SHARP, source="interpolate"))
    np.testing.assert_array_equal(prior.argmax(axis=0),
                                  propagate_labels(labels, 0, [1, 4], "interpolate"))
    areas = [int((prior[1, z] > 0.5).sum()) for z in range(6)]
    assert areas[0] == areas[1] == 144 and areas[4] == areas[5] == 16  # copied beyond them
    assert 144 > areas[2] > areas[3] > 16  # shrinking between them, where the copy jumps


def test_the_copy_blurs_more_the_further_it_is_carried():
    prior = copy_probabilities(drawing(), 3, (5.0, 1.0, 1.0), FusionSettings(slope=0.2))
    # edge of the square vs its centre; slice 0 is 5 mm from slice 1 (sigma 2 mm), slice 1
    # is the drawing itself (sigma 1 mm)
    assert prior[1, 0, 3, 6] < prior[1, 1, 3, 6] < prior[1, 1, 6, 6]
    np.testing.assert_allclose(prior.sum(axis=0), 1.0, atol=1e-5)


def test_the_copy_fades_to_uniform_with_distance_when_reach_is_set():
    ann = drawing()
    prior = copy_probabilities(ann, 3, (5.0, 1.0, 1.0),
                               FusionSettings(sigma_mm=0.0, slope=0.0, reach_mm=2.0))
    floor = 1 - 0.99 * np.exp(-5.0 / 2.0)  # slice 2 is 5 mm from slice 1
    assert prior[1, 2, 6, 6] == pytest.approx((1 - floor) + floor / 3, abs=1e-3)
    assert prior[:, 2, 6, 6].max() < 0.5
    # without reach the copy stays confident at any distance
    far = copy_probabilities(ann, 3, (5.0, 1.0, 1.0), SHARP)
    assert far[1, 2, 6, 6] > 0.98


def test_weight_zero_is_the_model_and_weight_one_is_the_copy_off_the_drawn_slices():
    ann = drawing()
    model = model_probabilities(foreground=2, confidence=0.9)
    alone = fuse(model, ann, (5.0, 1.0, 1.0), FusionSettings(weight=0.0)).argmax(axis=0)
    copied = fuse(model, ann, (5.0, 1.0, 1.0),
                  FusionSettings(weight=1.0, sigma_mm=0.0, slope=0.0)).argmax(axis=0)
    undrawn = [0, 2, 3, 5]
    np.testing.assert_array_equal(alone[undrawn], model.argmax(axis=0)[undrawn])
    np.testing.assert_array_equal(copied[undrawn], nearest_copy(ann.labels, 0, [1, 4])[undrawn])


def test_drawn_slices_keep_the_drawing_whatever_the_model_says():
    ann = drawing()
    fused = fuse(model_probabilities(foreground=2, confidence=0.99), ann, (5.0, 1.0, 1.0),
                 FusionSettings(weight=0.0))
    assert fused.dtype == np.float16
    np.testing.assert_array_equal(fused.argmax(axis=0)[[1, 4]], ann.labels[[1, 4]])


def test_an_unsure_model_follows_the_copy_and_a_sure_model_overrules_it():
    ann = drawing()  # slice 2 copies slice 1: class 1 in the square
    unsure = fuse(model_probabilities(foreground=2, confidence=0.5), ann, (5.0, 1.0, 1.0), SHARP)
    sure = fuse(model_probabilities(foreground=2, confidence=0.999), ann, (5.0, 1.0, 1.0),
                FusionSettings(weight=0.5, sigma_mm=0.0, slope=0.0, floor=0.2))
    assert unsure.argmax(axis=0)[2, 6, 6] == 1
    assert sure.argmax(axis=0)[2, 6, 6] == 2


@pytest.mark.parametrize("axis", [1, 2])
def test_drawings_along_other_axes(axis):
    ann = drawing(axis=axis, shape=(12, 6, 12) if axis == 1 else (12, 12, 6))
    prior = copy_probabilities(ann, 3, (1.0, 1.0, 1.0), SHARP)
    np.testing.assert_array_equal(prior.argmax(axis=0), nearest_copy(ann.labels, axis, [1, 4]))


def test_fused_segmentation_has_the_class_values_and_the_image_geometry():
    image = sitk.Image(12, 12, 6, sitk.sitkFloat32)
    image.SetSpacing((1.0, 1.0, 5.0))
    image.SetOrigin((3.0, -2.0, 7.0))
    model = model_probabilities(foreground=1, confidence=0.9)
    seg = fused_segmentation(Segmentation(sitk.Image(12, 12, 6, sitk.sitkUInt8),
                                          model.astype(np.float16)),
                             drawing(), image, [0, 3, 7], FusionSettings())
    labels = sitk.GetArrayFromImage(seg.labels)
    assert seg.labels.GetOrigin() == (3.0, -2.0, 7.0)
    assert set(np.unique(labels)) == {0, 3, 7}
    assert labels[4, 6, 6] == 7 and labels[2, 6, 6] == 3  # drawn class 2; model + copy class 1


def test_bad_settings_and_grids_are_refused():
    with pytest.raises(ArcosegError, match="fusion weight"):
        FusionSettings(weight=1.5)
    with pytest.raises(ArcosegError, match="floor"):
        FusionSettings(floor=0.0)
    with pytest.raises(ArcosegError, match="fusion source"):
        FusionSettings(source="copy")
    with pytest.raises(ArcosegError, match="different grids"):
        fuse(np.ones((3, 5, 12, 12), np.float32) / 3, drawing(), (1.0, 1.0, 1.0), SHARP)


@pytest.mark.parametrize("adapted,copied,weight", [
    (0.91, 0.26, 0.0),  # the brain demo: the copy far below the model, the model alone
    (0.88, 0.36, 0.5),  # the copy below the model but not far: fused (it helped on ACDC, k = 2)
    (0.5, 0.19, 0.0), (0.5, 0.21, 0.5),  # either side of 0.4 x the model
    (0.40, 0.80, 0.5), (None, None, 0.5), (0.5, None, 0.5)])
def test_the_model_alone_is_written_only_where_the_copy_is_far_worse_on_the_held_out_slice(
        adapted, copied, weight):
    check = {"adapted_dice": adapted, "copy_dice": copied, "output_dice": 0.1, "note": "n"}
    assert checked_fusion(FusionSettings(weight=0.5), check).weight == weight
    assert check["fusion_weight"] == weight
    assert ("model alone" in check["note"]) == (weight == 0.0)


@pytest.mark.parametrize("adapted,copied,weight", [
    (0.9, 0.8, 0.1 / 0.3),  # the model misses half as much as the copy: a third of the weight
    (0.95, 0.7, 0.05 / 0.35),  # far better than the copy: the copy counts little
    (0.7, 0.8, 0.5), (0.6, 0.6, 0.5),  # the copy as good or better: the settings' weight, no more
    (1.0, 1.0, 0.0),  # both perfect: nothing to gain from the copy
    (0.91, 0.26, 0.0), (None, 0.5, 0.5), (0.5, None, 0.5)])
def test_from_a_model_the_copy_is_weighted_by_its_error_against_the_models(adapted, copied,
                                                                           weight):
    check = {"adapted_dice": adapted, "copy_dice": copied, "output_dice": 0.1, "note": "n"}
    used = checked_fusion(FusionSettings(weight=0.5), check, from_model=True).weight
    assert used == pytest.approx(weight) and check["fusion_weight"] == used
    assert ("errors of the model and the copy" in check["note"]) == (
        copied is not None and adapted is not None and copied >= 0.4 * adapted)


def test_the_error_weight_never_exceeds_the_users_weight():
    check = {"adapted_dice": 0.9, "copy_dice": 0.8, "note": ""}
    assert checked_fusion(FusionSettings(weight=0.2), check, from_model=True).weight == 0.2
    check = {"adapted_dice": 0.9, "copy_dice": 0.8, "note": ""}
    assert checked_fusion(FusionSettings(weight=0.0), check, from_model=True).weight == 0.0


def test_fusing_along_another_axis_puts_every_slice_in_its_place():
    ann = drawing(axis=2, shape=(12, 12, 6))
    model = np.full((3, 12, 12, 6), 1 / 3, np.float32)  # a model that knows nothing
    fused = fuse(model, ann, (1.0, 1.0, 1.0), SHARP).argmax(axis=0)
    np.testing.assert_array_equal(fused, nearest_copy(ann.labels, 2, [1, 4]))
