"""Annotated slices: which axis, which slices, and what counts as unannotated."""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from arcoseg.adapt.annotations import (along, annotated_slices, detect_axis, hold_out,
                                       make_annotations, read_annotation_map)
from arcoseg.constants import IGNORE_LABEL
from arcoseg.errors import InputError


def _blob(shape=(12, 20, 24)):
    z, y, x = np.indices(shape)
    full = ((z - 6) ** 2 / 25 + (y - 10) ** 2 / 49 + (x - 12) ** 2 / 64 <= 1).astype(np.uint8)
    full[full.astype(bool) & (x > 12)] = 2
    return full


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_the_drawn_axis_is_detected(axis):
    full = _blob()
    drawn = np.zeros_like(full)
    index = [slice(None)] * 3
    picks = {0: [4, 7], 1: [8, 12], 2: [9, 14]}[axis]
    index[axis] = picks
    drawn[tuple(index)] = full[tuple(index)]
    assert detect_axis(drawn) == axis
    assert annotated_slices(drawn, axis) == picks


def test_many_whole_slices_drawn_on_a_thin_stack_are_read_along_their_own_axis():
    """The tester's HIGH finding: 14 adjacent coronal slices drawn whole (255 elsewhere) on a
    12-slice stack touch fewer axial slices (12) than coronal ones (14); Adapt trained an axial
    model, held out an undrawn slice and exited 0."""
    full = _blob((12, 48, 48))
    drawn = np.full_like(full, IGNORE_LABEL)
    drawn[:, 10:24, :] = full[:, 10:24, :]
    assert detect_axis(drawn) == 1
    ann = make_annotations(drawn, num_classes=3)
    assert ann.axis == 1 and ann.slices == list(range(10, 24))


def test_a_map_without_marks_touching_every_slice_of_a_stack_needs_the_axis():
    """The reviewer's finding: 14 adjacent coronal slices painted (0/1, no 255) on a 12-slice
    stack were read as 12 annotated axial slices, exit 0."""
    drawn = np.zeros((12, 48, 48), np.uint8)
    drawn[:, 10:24, 4:28] = 1
    with pytest.raises(InputError, match="every slice along axis 0 \\(12\\).*Give --axis"):
        detect_axis(drawn)
    assert make_annotations(drawn, num_classes=2, axis=1).slices == list(range(10, 24))
    marked = np.full_like(drawn, IGNORE_LABEL)  # the same drawn as whole coronal slices
    marked[:, 10:24] = drawn[:, 10:24]
    assert detect_axis(marked) == 1
    scribbles = np.full((4, 64, 64), IGNORE_LABEL, np.uint8)  # marked, but nothing whole
    scribbles[:, 20:25, 10:30] = 1  # (a reviewer's case: read as axial, an undrawn slice
    scribbles[:, 20:25, 40:44] = 0  # held out, exit 0)
    with pytest.raises(InputError, match="every slice along axis 0 \\(4\\)"):
        detect_axis(scribbles)


def test_a_thin_line_on_a_2d_image_is_drawn_on_its_one_slice():
    """A one-row line tied its slice with its row ('Give --axis 0 or 1'), a reviewer found."""
    line = np.zeros((1, 64, 64), np.uint8)
    line[0, 30, 5:60] = 1
    assert detect_axis(line) == 0
    assert detect_axis(np.moveaxis(line, 0, 2)) == 2


def test_partial_map_marks_every_other_voxel_unannotated():
    full = _blob()
    drawn = np.zeros_like(full)
    drawn[:, :, [9, 14]] = full[:, :, [9, 14]]
    ann = make_annotations(drawn, num_classes=3)
    assert ann.axis == 2 and ann.slices == [9, 14]
    assert (ann.labels[:, :, [9, 14]] == full[:, :, [9, 14]]).all()
    others = np.delete(ann.labels, [9, 14], axis=2)
    assert (others == IGNORE_LABEL).all()


def test_explicit_255_marks_keep_background_only_slices_annotated():
    labels = np.full((6, 8, 8), IGNORE_LABEL, np.uint8)
    labels[2] = 0  # a slice drawn as all background
    labels[4, 2:5, 2:5] = 1
    labels[4][labels[4] == IGNORE_LABEL] = 0
    assert annotated_slices(labels, 0) == [2, 4]


def test_given_slices_override_detection_and_are_checked():
    full = _blob()
    ann = make_annotations(full, 3, axis=0, slices=[3, 5])
    assert ann.slices == [3, 5]
    with pytest.raises(InputError, match="outside"):
        make_annotations(full, 3, axis=0, slices=[40])


def test_given_slices_that_hold_no_annotation_are_named_with_the_drawn_ones():
    """It said "holds only background on its annotated slices [6]" for a never-drawn slice."""
    full = _blob()
    labels = np.full_like(full, IGNORE_LABEL)
    labels[[3, 6]] = full[[3, 6]]
    with pytest.raises(InputError, match=r"--slices \[5\] of annotations hold no annotation "
                                         r".*along axis 0 are \[3, 6\]"):
        make_annotations(labels, 3, axis=0, slices=[3, 5])
    assert make_annotations(labels, 3, axis=0, slices=[6]).slices == [6]


def test_label_values_beyond_the_classes_are_refused():
    with pytest.raises(InputError, match="value"):
        make_annotations(_blob() * 2, num_classes=3)


def test_empty_annotations_are_refused():
    with pytest.raises(InputError, match="no label"):
        make_annotations(np.zeros((4, 4, 4), np.uint8), 3)


def test_hold_out_takes_the_middle_slice_out_of_training():
    full = _blob()
    ann = make_annotations(full, 3, axis=0, slices=[3, 6, 9])
    train, test = hold_out(ann)
    assert train.slices == [3, 9] and test.slices == [6]
    assert (train.labels[6] == IGNORE_LABEL).all()
    assert (test.labels[6] == full[6]).all() and (test.labels[3] == IGNORE_LABEL).all()


def test_hold_out_passes_over_a_slice_drawn_all_background():
    full = _blob()
    drawn = full.copy()
    drawn[6] = 0  # the middle drawn slice: reviewed, nothing there, so nothing to score
    ann = make_annotations(drawn, 3, axis=0, slices=[3, 6, 9])
    train, test = hold_out(ann)
    # the slice nearest the middle that holds a class (the lower one of two as near)
    assert test.slices == [3] and train.slices == [6, 9]
    assert (test.labels[3] == full[3]).all() and (train.labels[6] == 0).all()


def test_a_single_slice_has_no_held_out_check():
    ann = make_annotations(_blob(), 3, axis=0, slices=[6])
    train, test = hold_out(ann)
    assert test is None and train.slices == [6]


# Drawings that cannot mean what Adapt assumes (issue 17 item 10): refused, saying what was found.

def _axial(slices=(3, 8), shape=(12, 20, 24)):
    """A 0/1/2 map (no 255) with the blob drawn on axial slices `slices` only."""
    full, drawn = _blob(shape), np.zeros(shape, np.uint8)
    drawn[list(slices)] = full[list(slices)]
    return drawn


def test_annotations_holding_only_background_are_refused():
    labels = np.full((6, 8, 8), IGNORE_LABEL, np.uint8)
    labels[[1, 4]] = 0  # two slices drawn, but as background only
    with pytest.raises(InputError, match=r"only background \(0\) on its annotated slices "
                                         r"\[1, 4\] along axis 0.*--unlabelled"):
        make_annotations(labels, 3, source="ann.nrrd")
    with pytest.raises(InputError, match="only background"):  # --slices on an empty 0/1 map
        make_annotations(np.zeros((6, 8, 8), np.uint8), 3, axis=0, slices=[2, 3])


def test_slices_drawn_on_two_axes_are_refused_naming_both():
    labels = _axial((3, 8))
    full = _blob()
    labels[:, :, 12] = np.maximum(labels[:, :, 12], full[:, :, 12])  # plus one sagittal slice
    with pytest.raises(InputError) as err:
        make_annotations(labels, 3, source="ann.nii.gz")
    message = str(err.value)
    assert "ann.nii.gz holds slices drawn along two axes" in message
    assert "along axis 0 slice(s) 3, 8" in message and "along axis 2 slice(s) 12" in message


def test_the_same_with_explicit_unannotated_marks():
    labels = np.full((10, 16, 16), IGNORE_LABEL, np.uint8)
    labels[[2, 6]] = 0
    labels[2, 4:9, 4:9] = 1
    labels[6, 5:10, 5:10] = 1
    labels[:, :, 11] = 0  # a sagittal slice drawn as background
    with pytest.raises(InputError, match="two axes.*along axis 2 slice\\(s\\) 11"):
        make_annotations(labels, 3)


def test_an_axis_that_is_not_the_drawn_one_is_refused():
    labels = _axial((3, 8))
    with pytest.raises(InputError, match=r"--axis 2 does not fit a.nii.gz: its slices along "
                                         r"axis 2 only cut through slices drawn along axis 0 "
                                         r"\(slices 3, 8\)\. Use --axis 0"):
        make_annotations(labels, 3, axis=2, source="a.nii.gz")
    assert make_annotations(labels, 3, axis=0).slices == [3, 8]  # the right axis is accepted


def test_thin_structures_drawn_on_one_axis_are_not_mistaken_for_cuts():
    labels = np.zeros((10, 16, 16), np.uint8)
    labels[2, 3:12, 7] = 1  # a one-voxel line on slice 2 ...
    labels[6, 4:9, 4:9] = 1  # ... and a region on slice 6
    assert make_annotations(labels, 3).slices == [2, 6]


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_adjacent_slices_in_a_map_without_unannotated_marks(axis):
    """Issue 17 item 10: slices 3 and 4 drawn in a 0/1/2 map (0 everywhere else, no 255)."""
    full = _blob()
    centre = {0: 5, 1: 9, 2: 11}[axis]  # slices that cut the blob widely
    picks = [centre, centre + 1]
    drawn = np.zeros_like(full)
    drawn[along(axis, picks)] = full[along(axis, picks)]
    ann = make_annotations(drawn, num_classes=3)
    assert (ann.axis, ann.slices) == (axis, picks)
    np.testing.assert_array_equal(ann.labels[along(axis, picks)], full[along(axis, picks)])
    assert (np.delete(ann.labels, picks, axis=axis) == IGNORE_LABEL).all()


def test_the_reported_case_slices_3_and_4_along_axis_0():
    labels = np.zeros((10, 16, 16), np.uint8)
    labels[3, 4:10, 3:12], labels[3, 6:8, 6:8] = 1, 2
    labels[4, 5:11, 4:12], labels[4, 6:9, 6:9] = 1, 2
    ann = make_annotations(labels, num_classes=3)
    assert (ann.axis, ann.slices) == (0, [3, 4])
    assert (ann.labels[[3, 4]] == labels[[3, 4]]).all() and (ann.labels[5:] == 255).all()


@pytest.mark.parametrize("block,axes", [
    ((slice(3, 5), slice(6, 8), slice(2, 12)), "axis 0 (slices 3, 4) and axis 1 (slices 6, 7)"),
    ((slice(3, 4), slice(6, 7), slice(2, 12)), "axis 0 (slices 3) and axis 1 (slices 6)"),
])
def test_a_drawing_that_fits_two_axes_is_refused_naming_them(block, axes):
    """Drawn voxels that occupy as few slices along two axes (a map without 255 marks cannot
    show the drawn slices' extent): which axis was drawn on cannot be told."""
    labels = np.zeros((10, 16, 16), np.uint8)
    labels[block] = 1
    with pytest.raises(InputError, match="cannot tell which axis") as err:
        make_annotations(labels, 3, source="ann.nii.gz")
    assert axes in str(err.value) and "--axis" in str(err.value)
    assert make_annotations(labels, 3, axis=1).slices == [6, 7][:block[1].stop - 6]


def _annotation_file(tmp_path, values) -> tuple[Path, sitk.Image]:
    image = sitk.Image(8, 8, 4, sitk.sitkFloat32)
    labels = np.full((4, 8, 8), 255, np.uint8)
    labels[1] = 0
    for i, value in enumerate(values):
        labels[1, 2 + i, 2:6] = value
    path = tmp_path / "drawn.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(path))
    return path, image


def test_a_map_drawn_with_a_models_label_values_instead_of_indices_is_refused(tmp_path):
    """The tester's G3: classes a, b with label values 2, 5 (a dataset with gaps); value 5 is
    no class index: the map was drawn with the label values. The message gives both."""
    path, image = _annotation_file(tmp_path, [2, 5])
    with pytest.raises(InputError, match=r"value\(s\) \[5\].*class indices.*"
                                         r"a = 1 \(label value 2\), b = 2 \(label value 5\)"):
        read_annotation_map(path, image, "img", ["background", "a", "b"], [0, 2, 5])


def test_class_indices_are_read_as_they_are_for_any_model(tmp_path):
    path, image = _annotation_file(tmp_path, [1, 2])
    for values in ([0, 1, 2], [0, 2, 5]):
        labels = read_annotation_map(path, image, "img", ["background", "a", "b"], values)
        assert sorted(np.unique(labels).tolist()) == [0, 1, 2, 255]
