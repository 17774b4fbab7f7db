"""Slicer segmentation files (.seg.nrrd, written here with slicerio as Slicer lays them out):
segments matched to classes, cropped extents put back on the image grid, overlaps and unknown
names refused with the file, the cause and a remedy; the writer keeps names, colours, values and
geometry."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from arcoseg.cli import main
from arcoseg.errors import InputError, OutputError
from arcoseg.io.images import read_image
from arcoseg.io.segnrrd import (ClassSpec, check_segment_names, image_ijk_to_lps,
                                read_segmentation, write_segmentation)

CLASSES = [ClassSpec("RV", 1), ClassSpec("Myo", 2), ClassSpec("LV", 3)]
SHAPE = (6, 10, 12)  # (z, y, x)


@pytest.fixture
def image() -> sitk.Image:
    """An empty image on a sheared, anisotropic grid."""
    image = sitk.Image(SHAPE[::-1], sitk.sitkFloat32)
    image.SetSpacing((0.8, 0.8, 2.0))
    image.SetDirection((1, 0, 0, 0, 1, -0.2588, 0, 0, 0.9659))
    image.SetOrigin((-12.0, 30.0, -1500.0))
    return image


def write(path, image, masks: dict[str, np.ndarray], crop=(slice(None),) * 3, **segment):
    """A .seg.nrrd of (z, y, x) masks on `image`'s grid, cropped to `crop`, as Slicer writes it."""
    start = [s.start or 0 for s in crop][::-1]  # (i, j, k)
    matrix = image_ijk_to_lps(image)
    matrix[:3, 3] += matrix[:3, :3] @ start
    first = next(iter(masks.values()))[crop]
    seg = slicerio.create_segmentation(first.shape[::-1], matrix)
    for name, mask in masks.items():
        slicerio.add_segment(seg, mask[crop].transpose(2, 1, 0), {"name": name, **segment})
    seg["referenceImageExtentOffset"] = start
    slicerio.write_segmentation(str(path), seg)
    return path


def box(z, y, x) -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[z, y, x] = True
    return mask


def positions(path, image, classes=CLASSES) -> np.ndarray:
    return sitk.GetArrayFromImage(read_segmentation(path, classes, reference=image))


def test_segments_are_matched_by_name_and_a_cropped_file_lands_on_the_image_grid(tmp_path, image):
    lv, rv = box(2, slice(3, 6), slice(4, 8)), box(3, slice(5, 7), slice(2, 5))
    path = write(tmp_path / "a.seg.nrrd", image, {"lv": lv, "RV ": rv},
                 crop=(slice(1, 4), slice(3, 7), slice(2, 8)))
    assert slicerio.read_segmentation(str(path))["voxels"].shape == (6, 4, 3)  # cropped (i, j, k)
    result = read_segmentation(path, CLASSES, reference=image)
    assert result.GetSize() == image.GetSize() and result.GetOrigin() == image.GetOrigin()
    assert (positions(path, image) == 3 * lv + 1 * rv).all()


def test_slicers_generated_names_are_matched_by_label_value(tmp_path, image):
    seg = slicerio.create_segmentation(SHAPE[::-1], image_ijk_to_lps(image))
    seg["voxels"][1:3, 1:3, 1] = 2  # (i, j, k)
    seg["segments"] = [{"id": "Segment_2", "name": "Segment_2", "labelValue": 2, "layer": 0}]
    slicerio.write_segmentation(str(tmp_path / "b.seg.nrrd"), seg)
    assert (positions(tmp_path / "b.seg.nrrd", image)[1, 1:3, 1:3] == 2).all()


def test_voxels_no_segment_describes_are_refused_not_read_as_background(tmp_path, image):
    seg = slicerio.create_segmentation(SHAPE[::-1], image_ijk_to_lps(image))
    seg["voxels"][1:3, 1:3, 1] = 3  # (i, j, k): the LV
    seg["voxels"][5:7, 5:7, 1] = 7  # drawn, but the header lists no segment of value 7
    seg["segments"] = [{"id": "Segment_1", "name": "LV", "labelValue": 3, "layer": 0}]
    path = tmp_path / "stray.seg.nrrd"
    slicerio.write_segmentation(str(path), seg)
    with pytest.raises(InputError, match=r"stray.seg.nrrd has voxels of value 7 in layer 0 that "
                                         r"no segment describes.*Re-save"):
        positions(path, image)


def test_an_unknown_segment_name_is_refused_naming_file_segment_classes_and_remedy(tmp_path, image):
    path = write(tmp_path / "c.seg.nrrd", image, {"Tumour": box(1, 1, 1)})
    with pytest.raises(InputError) as info:
        positions(path, image)
    message = str(info.value)
    assert "Segment 'Tumour'" in message and str(path) in message
    assert "RV (value 1), Myo (value 2), LV (value 3)" in message and "Rename it" in message


@pytest.mark.parametrize("second", ["LV", "lv ", " Lv"])
def test_two_segments_matching_one_class_are_refused_not_merged(tmp_path, image, second):
    """Two segments named 'LV' (or 'LV' and 'lv '): which one is the LV is a guess, and merging
    them trained on wrong labels."""
    seg = slicerio.create_segmentation(SHAPE[::-1], image_ijk_to_lps(image))
    seg["voxels"][1:3, 1:3, 1] = 3  # (i, j, k)
    seg["voxels"][5:7, 5:7, 1] = 4
    seg["segments"] = [{"id": "Segment_1", "name": "LV", "labelValue": 3, "layer": 0},
                       {"id": "Segment_2", "name": second, "labelValue": 4, "layer": 0}]
    path = tmp_path / "twins.seg.nrrd"
    slicerio.write_segmentation(str(path), seg)
    with pytest.raises(InputError) as info:
        positions(path, image)
    message = str(info.value)
    assert "'LV' (id Segment_1)" in message and "(id Segment_2)" in message
    assert "both match class 'LV'" in message and str(path) in message and "rename" in message


def test_class_names_a_seg_nrrd_header_cannot_hold_are_refused_before_writing(tmp_path):
    check_segment_names(["LV", "Myo 2", "a|b"], tmp_path / "ok.seg.nrrd")
    with pytest.raises(OutputError, match=r"Class 'Ödem' cannot be a segment name in .*x.seg"):
        check_segment_names(["LV", "Ödem"], tmp_path / "x.seg.nrrd")


def test_overlapping_segments_in_layers_are_refused_with_the_real_cause(tmp_path, image):
    path = write(tmp_path / "d.seg.nrrd", image, {"RV": box(2, slice(1, 4), slice(1, 4)),
                                                 "LV": box(2, slice(3, 6), slice(3, 6))})
    assert slicerio.read_segmentation(str(path))["voxels"].ndim == 4  # two layers
    with pytest.raises(InputError, match=r"'RV' and 'LV' of .*d.seg.nrrd overlap in 1 voxel"):
        positions(path, image)
    with pytest.raises(InputError, match="Slicer segmentation with overlapping segments"):
        read_image(path)  # not 'components per voxel … convert to grayscale'


def test_layers_without_overlap_are_read(tmp_path, image):
    seg = slicerio.create_segmentation(SHAPE[::-1], image_ijk_to_lps(image))
    seg["voxels"] = np.zeros((2, *SHAPE[::-1]), np.uint8)
    seg["voxels"][0, 1, 1, 1], seg["voxels"][1, 2, 2, 2] = 1, 1
    seg["segments"] = [{"id": "a", "name": "Myo", "labelValue": 1, "layer": 0},
                       {"id": "b", "name": "LV", "labelValue": 1, "layer": 1}]
    slicerio.write_segmentation(str(tmp_path / "e.seg.nrrd"), seg)
    labels = positions(tmp_path / "e.seg.nrrd", image)
    assert (labels[1, 1, 1], labels[2, 2, 2], np.count_nonzero(labels)) == (2, 3, 2)


def test_segments_on_another_grid_or_outside_the_image_are_refused(tmp_path, image):
    path = write(tmp_path / "f.seg.nrrd", image, {"LV": box(1, 1, 1)})
    other = sitk.Image(image)
    other.SetSpacing((0.7, 0.8, 2.0))
    with pytest.raises(InputError, match="not drawn on the voxel grid.*Specify geometry"):
        positions(path, other)
    smaller = sitk.Image((4, 4, 4), sitk.sitkFloat32)
    smaller.CopyInformation(image[:4, :4, :4])
    inside = write(tmp_path / "g.seg.nrrd", image, {"LV": box(5, 8, 10)})
    with pytest.raises(InputError, match="reach outside the image grid"):
        positions(inside, smaller)


def test_written_segmentations_keep_names_colours_values_and_sheared_geometry(tmp_path, image):
    labels = sitk.GetImageFromArray((3 * box(2, 3, 4) + 7 * box(4, 5, 6)).astype(np.uint8))
    labels.CopyInformation(image)
    classes = [{"name": "background", "value": 0, "color": [0, 0, 0]},
               {"name": "Left kidney", "value": 3, "color": [255, 128, 0]},
               {"name": "Liver", "value": 7, "color": [0, 64, 255]}]
    write_segmentation(labels, classes, tmp_path / "out.seg.nrrd")
    seg = slicerio.read_segmentation(str(tmp_path / "out.seg.nrrd"))
    assert [(s["name"], s["labelValue"]) for s in seg["segments"]] == \
        [("Left kidney", 3), ("Liver", 7)]
    assert seg["segments"][0]["color"] == pytest.approx([1.0, 128 / 255, 0.0], abs=1e-6)
    np.testing.assert_allclose(seg["ijkToLPS"], image_ijk_to_lps(image), atol=1e-9)
    assert (seg["voxels"].transpose(2, 1, 0) == sitk.GetArrayFromImage(labels)).all()
    back = read_segmentation(tmp_path / "out.seg.nrrd",
                             [ClassSpec("Liver", 7), ClassSpec("Left kidney", 3)], image)
    assert (sitk.GetArrayFromImage(back) == 2 * box(2, 3, 4) + box(4, 5, 6)).all()


def test_evaluate_reads_a_folder_of_slicer_segmentations(tmp_path, image, capsys):
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    for case in ("p1", "p2"):
        write(tmp_path / "gt" / f"{case}.seg.nrrd", image, {"LV": box(2, slice(2, 6), 3)})
        pred = sitk.GetImageFromArray((3 * box(2, slice(2, 4), 3)).astype(np.uint8))
        pred.CopyInformation(image)
        sitk.WriteImage(pred, str(tmp_path / "pred" / f"{case}.nrrd"))
    assert main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "gt"), "--labels", "LV=3",
                 "-o", str(tmp_path / "scores")]) == 0
    assert "66.7" in (tmp_path / "scores" / "summary.md").read_text(encoding="utf-8")  # Dice 2·2/(2+4)
    assert main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "gt"),
                 "-o", str(tmp_path / "scores2")]) == 2
    assert "give the classes with --labels" in capsys.readouterr().err
