"""Shared fixtures of the Adapt tests."""

import numpy as np
import pytest
import SimpleITK as sitk

from arcoseg.data.synthetic import make_phantom


@pytest.fixture
def case(tmp_path, monkeypatch):
    """A phantom with three annotated coronal slices (axis 1); the registry in tmp."""
    monkeypatch.setenv("ARCOSEG_HOME", str(tmp_path / "home"))
    image, labels = make_phantom((8, 32, 32), seed=2)
    full = sitk.GetArrayFromImage(labels)
    drawn = np.zeros_like(full)
    drawn[:, [10, 16, 22], :] = full[:, [10, 16, 22], :]
    ann = sitk.GetImageFromArray(drawn)
    ann.CopyInformation(labels)
    paths = {"image": tmp_path / "img.nii.gz", "ann": tmp_path / "ann.nii.gz"}
    sitk.WriteImage(image, str(paths["image"]))
    sitk.WriteImage(ann, str(paths["ann"]))
    return paths
