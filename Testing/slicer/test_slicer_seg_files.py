"""Slicer's own segmentation files and the engine: a .seg.nrrd that Slicer's storage node wrote
(cropped to its segments, three named segments, oblique volume) adapts a model and is scored by
`arcoseg evaluate`; a .seg.nrrd that `arcoseg segment` wrote loads in Slicer's reader with the
model's names, colours and the input's geometry. Slicer here is the slicer-core wheel."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio
import torch

from ARCOSegmentLib import mrml, scene
from arcoseg.adapt.annotations import read_annotation_map
from arcoseg.cli import main
from arcoseg.data.synthetic import make_phantom
from arcoseg.io.segnrrd import ClassSpec, read_segmentation

# right-handed and oblique: rotated 20° about z and 10° about x; anisotropic spacing
_A, _B = np.radians(20), np.radians(10)
DIRECTION = (np.array([[np.cos(_A), -np.sin(_A), 0], [np.sin(_A), np.cos(_A), 0], [0, 0, 1]])
             @ np.array([[1, 0, 0], [0, np.cos(_B), -np.sin(_B)], [0, np.sin(_B), np.cos(_B)]]))
MODEL_CLASSES = ["Kidney", "Liver", "Spleen"]  # values 1, 2, 3
DRAWN = [2, 5]  # K slices the clinician painted


@pytest.fixture
def phantom(tmp_path):
    """(image file, truth (z, y, x) with classes 1..3) on an oblique, anisotropic grid."""
    image, labels = make_phantom((8, 24, 28), num_classes=4, seed=3,
                                 spacing_zyx=(2.5, 0.9, 0.7))
    image.SetDirection(DIRECTION.ravel().tolist())
    path = tmp_path / "image.nrrd"
    sitk.WriteImage(image, str(path))
    return path, sitk.GetArrayFromImage(labels)


def slicer_segmentation(core, image_path, truth, slices, path):
    """A .seg.nrrd saved by Slicer's storage node, cropped to the segments' extent, with the
    segments in another order than the model's classes and Slicer's own label values."""
    volume = mrml.load_volume(image_path)
    assert np.linalg.norm(scene.volume_array(volume)) > 0
    segments = []
    for name, value in (("spleen", 3), ("Kidney", 1), ("LIVER", 2)):
        mask = np.zeros(truth.shape, bool)
        mask[slices] = truth[slices] == value
        mask[:, :, :4] = False  # nothing drawn at the image's edge: the file is cropped
        segments.append((name, (0.2, 0.4, 0.6), mask))
    node = mrml.add_annotations(volume, "drawn", segments)
    storage = node.CreateDefaultStorageNode()
    storage.SetCropToMinimumExtent(True)
    storage.SetFileName(str(path))
    assert storage.WriteData(node)
    header = slicerio.read_segmentation(str(path), skip_voxels=True)
    assert header["referenceImageExtentOffset"] != [0, 0, 0]  # Slicer cropped it
    return volume


def expected_indices(truth, slices):
    drawn = np.zeros_like(truth)
    drawn[slices] = truth[slices]
    drawn[:, :, :4] = 0
    return drawn


def test_a_cropped_slicer_segmentation_is_read_onto_the_image_grid_by_class_name(
        slicer_core, phantom, tmp_path):
    image_path, truth = phantom
    seg = tmp_path / "drawn.seg.nrrd"
    slicer_segmentation(slicer_core, image_path, truth, DRAWN, seg)
    image = sitk.ReadImage(str(image_path))
    labels = read_annotation_map(seg, image, str(image_path), ["background", *MODEL_CLASSES],
                                 [0, 1, 2, 3])
    assert (labels == expected_indices(truth, DRAWN)).all()
    # without the image: on the grid Slicer recorded as the segmentation's reference geometry
    alone = read_segmentation(seg, [ClassSpec(n, v) for n, v in zip(MODEL_CLASSES, (1, 2, 3))])
    assert (sitk.GetArrayFromImage(alone) == expected_indices(truth, DRAWN)).all()
    assert alone.GetSize() == image.GetSize()
    np.testing.assert_allclose(alone.GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(alone.GetDirection(), image.GetDirection(), atol=1e-6)


def test_a_slicer_segmentation_adapts_a_model(slicer_core, phantom, tmp_path, capsys):
    image_path, truth = phantom
    seg = tmp_path / "drawn.seg.nrrd"
    slicer_segmentation(slicer_core, image_path, truth, DRAWN, seg)
    code = main(["adapt", "--image", str(image_path), "--annotations", str(seg),
                 "--from-scratch", "--classes", ",".join(MODEL_CLASSES), "--iterations", "3",
                 "--budget", "600", "--device", "cpu", "--progress", "json",
                 "-o", str(tmp_path / "adapted.nii.gz")])
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    [result] = [e for e in events if e["event"] == "result"]
    # both drawn slices are reported; 5 was held out for the check
    assert (result["axis"], result["annotated_slices"]) == (0, [DRAWN])
    assert result["heldout"]["slice"] == DRAWN[1]
    assert [c["name"] for c in result["model"]["classes"]][1:] == MODEL_CLASSES


def test_a_slicer_segmentation_is_scored_as_ground_truth(slicer_core, phantom, tmp_path):
    image_path, truth = phantom
    every_slice = list(range(truth.shape[0]))
    gt = tmp_path / "truth.seg.nrrd"
    slicer_segmentation(slicer_core, image_path, truth, every_slice, gt)
    reference = expected_indices(truth, every_slice)  # values 1..3 = class values
    prediction = reference.copy()
    prediction[prediction == 3] = 0
    prediction[3][reference[3] == 2] = 3  # on one slice, Liver predicted as Spleen
    pred_image = sitk.GetImageFromArray(prediction)
    pred_image.CopyInformation(sitk.ReadImage(str(image_path)))
    sitk.WriteImage(pred_image, str(tmp_path / "pred.nii.gz"))
    assert main(["evaluate", str(tmp_path / "pred.nii.gz"), str(gt), "--labels",
                 "Kidney=1,Liver=2,Spleen=3", "-o", str(tmp_path / "scores")]) == 0
    with open(tmp_path / "scores" / "metrics_per_case.csv", newline="") as f:
        dice = {row["class"]: float(row["dice"]) for row in csv.DictReader(f)}

    def expected(value):
        p, g = prediction == value, reference == value
        return 2 * (p & g).sum() / (p.sum() + g.sum())
    assert dice["Kidney"] == pytest.approx(1.0)
    assert dice["Liver"] == pytest.approx(expected(2)) and dice["Liver"] < 1.0
    assert dice["Spleen"] == pytest.approx(expected(3)) and dice["Spleen"] < 0.5


@pytest.fixture
def tiny_model(tmp_path):
    """An untrained 2D model with classes Left kidney (3) and Liver (7) and their colours."""
    from arcoseg.data.plan import Plan
    from arcoseg.model_metadata import ModelMetadata, make_classes
    from arcoseg.modelfile import save_model
    from arcoseg.networks import NetworkConfig, build_model
    config = NetworkConfig(arch="unet2d", in_channels=1, num_classes=3, features=(4, 8, 16, 32, 64))
    torch.manual_seed(1)
    plan = Plan(dims=2, target_spacing=(2.5, 0.9, 0.7), normalization="zscore",
                label_values=[0, 3, 7], patch_size=(32, 32))
    classes = make_classes(["background", "Left kidney", "Liver"], values=[0, 3, 7])
    metadata = ModelMetadata(network=config, classes=classes, plan=plan.to_dict())
    save_model(tmp_path / "tiny", build_model(config).eval(), metadata)
    return tmp_path / "tiny", classes


def test_segment_writes_a_segmentation_slicer_loads_with_names_colours_and_geometry(
        slicer_core, phantom, tiny_model, tmp_path):
    image_path, _ = phantom
    model, classes = tiny_model
    for out in ("labels.nii.gz", "labels.seg.nrrd"):
        assert main(["segment", str(model), str(image_path), "-o", str(tmp_path / out),
                     "--device", "cpu"]) == 0
    values = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "labels.nii.gz")))
    volume = mrml.load_volume(image_path)
    loaded = mrml.load_segmentation(tmp_path / "labels.seg.nrrd")  # vtkMRMLSegmentationStorageNode
    segments = mrml.segments_of(loaded)
    assert list(segments.values()) == ["Left kidney", "Liver"]
    colours = [v for sid in segments for v in loaded.GetSegmentation().GetSegment(sid).GetColor()]
    assert colours == pytest.approx([v / 255 for c in classes[1:] for v in c["color"]], abs=1e-5)
    masks = mrml.segment_masks(loaded, list(zip(segments, (3, 7))), volume)
    for value, mask in masks:  # on the input's voxels: same grid, oblique direction included
        assert (mask == (values == value)).all()
    image = sitk.ReadImage(str(image_path))
    written = slicerio.read_segmentation(str(tmp_path / "labels.seg.nrrd"), skip_voxels=True)
    np.testing.assert_allclose(written["ijkToLPS"][:3, :3],
                               DIRECTION * np.asarray(image.GetSpacing()), atol=1e-6)
    np.testing.assert_allclose(written["ijkToLPS"][:3, 3], image.GetOrigin(), atol=1e-6)
