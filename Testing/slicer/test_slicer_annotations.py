"""The clinician's drawing as Adapt's input (ARCOSegmentLib.annotations): annotated slices, the
drawn axis (ties refused), the partial label map, slice lists typed by users."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from ARCOSegmentLib import annotations as an
from ARCOSegmentLib import conversions as cv
from standins import OBLIQUE


def two_slice_masks(shape=(8, 10, 12)):
    """Class 1 on slices 2 and 5 (axis 0), class 2 on slice 5 only."""
    liver, spleen = np.zeros(shape, bool), np.zeros(shape, bool)
    liver[2, 2:6, 3:8] = True
    liver[5, 3:7, 2:6] = True
    spleen[5, 7:9, 8:11] = True
    return shape, liver, spleen


def test_annotated_slices_and_axis_are_detected_from_the_labels():
    shape, liver, spleen = two_slice_masks()
    assert an.annotated_slices(liver | spleen, 0) == [2, 5]
    assert an.detect_axis(liver | spleen) == 0
    assert an.detect_axis(np.moveaxis(liver, 0, 2)) == 2
    with pytest.raises(ValueError, match="No voxel is annotated"):
        an.detect_axis(np.zeros(shape, bool))


def test_an_axis_tie_is_refused_not_guessed():
    """The tester's finding 3: 2 coronal slices of a structure 2 slices tall were sent as axial
    slices, their undrawn voxels as background; the engine refuses the same drawing."""
    mask = np.zeros((16, 16, 16), bool)
    mask[3:5, [4, 10], 2:12] = True  # drawn on J = 4 and 10, 2 slices tall along K
    with pytest.raises(ValueError, match="along K and J .*Slice axis"):
        an.detect_axis(mask)
    ann = an.build_annotations(mask.shape, [(1, mask)], axis=1)  # the user's choice
    assert ann.axis == 1 and ann.slices == [4, 10]


def test_painting_that_touches_every_slice_along_the_fewest_axis_is_refused():
    """The tester's finding: 14 adjacent coronal slices painted on a 12-slice stack touch all 12
    axial slices (fewer than 14): read as axial, 42 432 unpainted voxels sent as background."""
    mask = np.zeros((12, 64, 64), bool)
    mask[:, 20:34, 10:50] = True
    with pytest.raises(ValueError, match="every slice along K \\(12\\).*'Slice axis'"):
        an.detect_axis(mask)
    assert an.build_annotations(mask.shape, [(1, mask)], axis=1).slices == list(range(20, 34))
    coronal = np.zeros((5, 128, 128), bool)  # 11 coronal slices on 5 axial ones (a reviewer's)
    coronal[:, 40:51, 20:100] = True
    with pytest.raises(ValueError, match="every slice along K \\(5\\)"):
        an.detect_axis(coronal)
    single = np.zeros((1, 32, 32), bool)  # a 2D image: its one slice is the drawn one
    single[0, 5:20, 5:9] = True
    assert an.detect_axis(single) == 0
    single[0, 5:20] = False
    single[0, 25, 3:30] = True  # a one-row line tied its slice with its row
    assert an.detect_axis(single) == 0


def test_annotations_are_background_on_annotated_slices_and_unannotated_elsewhere():
    shape, liver, spleen = two_slice_masks()
    ann = an.build_annotations(shape, [(1, liver), (2, spleen)])
    assert ann.axis == 0 and ann.slices == [2, 5]
    assert ann.labels.dtype == np.uint8
    assert (ann.labels[liver] == 1).all() and (ann.labels[spleen] == 2).all()
    on_slices = np.zeros(shape, bool)
    on_slices[[2, 5]] = True
    assert (ann.labels[on_slices & ~liver & ~spleen] == 0).all()
    assert (ann.labels[~on_slices] == an.UNANNOTATED).all()


def test_user_marked_slices_count_as_annotated_background():
    shape, liver, _ = two_slice_masks()
    ann = an.build_annotations(shape, [(1, liver)], extra_slices=[7])
    assert ann.slices == [2, 5, 7] and (ann.labels[7] == 0).all()
    only_marked = an.build_annotations(shape, [(1, np.zeros(shape, bool))], axis=1, extra_slices=[3])
    assert only_marked.slices == [3] and (only_marked.labels[:, 3] == 0).all()
    with pytest.raises(ValueError, match="between 0 and 7"):
        an.build_annotations(shape, [(1, liver)], extra_slices=[8])
    with pytest.raises(ValueError, match="shape"):
        an.build_annotations(shape, [(1, liver[:4])])


def test_explicit_axis_marks_every_slice_the_labels_touch_on_that_axis():
    shape, liver, _ = two_slice_masks()
    ann = an.build_annotations(shape, [(1, liver)], axis=2)
    assert ann.axis == 2 and ann.slices == list(range(2, 8))


def test_slice_lists_typed_by_users_are_parsed():
    assert an.parse_slices("12, 17 20-22;3") == [3, 12, 17, 20, 21, 22]
    assert an.parse_slices("  ") == []
    with pytest.raises(ValueError, match="not a slice number"):
        an.parse_slices("12, x")
    with pytest.raises(ValueError, match="backwards"):
        an.parse_slices("9-3")


def test_annotation_file_for_the_engine_keeps_labels_and_geometry(tmp_path):
    shape, liver, spleen = two_slice_masks()
    ann = an.build_annotations(shape, [(1, liver), (2, spleen)])
    matrix = OBLIQUE
    path = cv.write_volume(ann.labels, matrix, tmp_path / "annotations.nii.gz")
    image = sitk.ReadImage(str(path))
    assert image.GetPixelID() == sitk.sitkUInt8
    back, back_matrix = cv.read_labelmap(path)
    assert (back == ann.labels).all()
    np.testing.assert_allclose(back_matrix, matrix, atol=1e-5)
