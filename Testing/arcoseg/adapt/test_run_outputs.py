"""What `arcoseg adapt` writes: the segmentation in the format -o names."""

import errno
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

import arcoseg.io.images as images_module
from arcoseg.adapt.run import AdaptRequest, adapt
from arcoseg.errors import OutputError
from arcoseg.progress import Reporter
from arcoseg.registry import Registry
from arcoseg.train.trainer import Trainer


def test_a_seg_nrrd_output_is_a_slicer_segmentation_with_a_segment_per_class(case, tmp_path):
    out = tmp_path / "drawn_and_adapted.seg.nrrd"
    request = AdaptRequest(images=[case["image"]], annotations=[case["ann"]],
                           classes=["liver", "tumour"], budget=600, iterations=3, device="cpu",
                           output=out)
    adapt(request, Reporter(quiet=True), lambda: False)
    segmentation = slicerio.read_segmentation(str(out))
    assert [s["name"] for s in segmentation["segments"]] == ["liver", "tumour"]
    image = sitk.ReadImage(str(case["image"]))
    labels = sitk.ReadImage(str(out))  # the label layer, on the image's grid
    assert labels.GetSize() == image.GetSize() and labels.GetOrigin() == image.GetOrigin()
    # the drawn slices are written as drawn (Adapt's output shows what the user drew)
    drawn = sitk.GetArrayFromImage(sitk.ReadImage(str(case["ann"])))[:, [10, 16, 22]]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(labels)[:, [10, 16, 22]], drawn)


def test_class_names_a_seg_nrrd_cannot_hold_are_refused_before_training(case, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setattr(Trainer, "run", lambda self: pytest.fail("training started"))
    out = tmp_path / "drawn.seg.nrrd"
    request = AdaptRequest(images=[case["image"]], annotations=[case["ann"]],
                           classes=["Ödem", "Läsion"], device="cpu", output=out)
    with pytest.raises(OutputError, match=r"Class 'Ödem' cannot be a segment name.*\.nii\.gz"):
        adapt(request, Reporter(quiet=True), lambda: False)
    assert Registry().list() == [] and not out.exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir() or os.geteuid() != 0,
                    reason="needs Linux's /proc and root (others fail os.access already)")
def test_an_output_folder_that_takes_no_files_is_refused_before_training(case, tmp_path,
                                                                         monkeypatch):
    # /proc passes os.access for root, but no file can be created there
    monkeypatch.setattr(Trainer, "run", lambda self: pytest.fail("training started"))
    request = AdaptRequest(images=[case["image"]], annotations=[case["ann"]], classes=["a", "b"],
                           device="cpu", output=Path("/proc/arcoseg-test-seg.nii.gz"))
    with pytest.raises(OutputError, match="Cannot write in /proc"):
        adapt(request, Reporter(quiet=True), lambda: False)
    nested = replace(request, output=Path("/proc/x/seg.nii.gz"))  # the folder to create named
    with pytest.raises(OutputError, match=r"Cannot write in /proc \(to create /proc/x\)"):
        adapt(nested, Reporter(quiet=True), lambda: False)
    assert Registry().list() == []


def test_a_disk_that_fills_while_writing_is_an_output_error_not_a_crash(tmp_path, monkeypatch):
    def full(image, path):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setitem(images_module._IMAGE_WRITERS, ".nii.gz", full)
    image = sitk.Image(4, 4, 4, sitk.sitkUInt8)
    with pytest.raises(OutputError, match="Could not write .*seg.nii.gz: No space left on device"):
        images_module.write_image(image, tmp_path / "seg.nii.gz")
    assert list(tmp_path.iterdir()) == []  # no temporary file left
