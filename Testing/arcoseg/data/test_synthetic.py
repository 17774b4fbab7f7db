"""Specification of arcoseg.data.synthetic: phantom images and datasets."""

from __future__ import annotations

import time

import numpy as np
import pytest
import SimpleITK as sitk

from arcoseg.data.dataset import load_dataset
from arcoseg.data.synthetic import make_phantom, make_phantom_dataset


@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_phantom_has_every_class_and_the_requested_grid(num_classes):
    image, label = make_phantom((8, 24, 24), num_classes, seed=1, spacing_zyx=(3.0, 1.5, 1.0))
    assert image.GetPixelID() == sitk.sitkFloat32 and label.GetPixelID() == sitk.sitkUInt8
    assert image.GetSize() == (24, 24, 8) and image.GetSpacing() == (1.0, 1.5, 3.0)
    assert label.GetSpacing() == image.GetSpacing() and label.GetOrigin() == image.GetOrigin()
    assert any(o != 0 for o in image.GetOrigin())
    assert set(np.unique(sitk.GetArrayFromImage(label))) == set(range(num_classes))


def test_phantom_classes_have_different_mean_intensities():
    image, label = make_phantom()
    img, lab = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(label)
    means = sorted(float(img[lab == k].mean()) for k in range(3))
    assert min(np.diff(means)) > 30


def test_phantom_is_deterministic_for_a_seed():
    a, b, c = make_phantom(seed=4), make_phantom(seed=4), make_phantom(seed=5)
    arrays = [sitk.GetArrayFromImage(x[0]) for x in (a, b, c)]
    np.testing.assert_array_equal(arrays[0], arrays[1])
    assert not np.array_equal(arrays[0], arrays[2])


def test_phantom_rejects_too_many_classes_for_its_size():
    with pytest.raises(ValueError, match="too small"):
        make_phantom((1, 3, 3), num_classes=8)


@pytest.mark.parametrize("layout", ["nnunet", "msd"])
def test_phantom_dataset_is_a_loadable_dataset_written_quickly(tmp_path, layout):
    start = time.perf_counter()
    root = make_phantom_dataset(tmp_path / "ds", layout=layout)
    assert time.perf_counter() - start < 1.0
    ds = load_dataset(root)
    assert len(ds.cases) == 6 and ds.num_classes == 3
    if layout == "nnunet":
        assert len(ds.split_cases("val")) == 2
        assert sorted(ds.labelled_order) == [c.id for c in ds.split_cases("train")]
    else:
        assert ds.splits is None


def test_phantom_dataset_rejects_an_unknown_layout(tmp_path):
    with pytest.raises(ValueError, match="layout"):
        make_phantom_dataset(tmp_path, layout="bids")
