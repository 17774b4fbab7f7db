"""Specification of arcoseg.data.preprocess (plan, normalisation, resampling) and
arcoseg.data.cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import arcoseg.data.cache as cache_module
import arcoseg.data.preprocess as preprocess
from arcoseg.constants import IGNORE_LABEL
from arcoseg.data.dataset import load_dataset
from arcoseg.data.cache import load_cases
from arcoseg.data.plan import Plan
from arcoseg.data.preprocess import make_plan, normalize, preprocess_case, preprocess_image, resample, resample_to_reference
from arcoseg.errors import InputError, ModelFileError


class RecordingReporter:
    def __init__(self) -> None:
        self.steps: list[tuple[int, int, str]] = []
        self.logs: list[str] = []

    def progress(self, step: int, total: int, message: str = "", **fields) -> None:
        self.steps.append((step, total, message))

    def log(self, message: str, **fields) -> None:
        self.logs.append(message)


def _plan(**changes) -> Plan:
    plan = Plan(dims=3, target_spacing=(2.0, 1.0, 1.0), normalization="zscore",
                label_values=[0, 1, 2], patch_size=(8, 16, 16))
    for key, value in changes.items():
        setattr(plan, key, value)
    return plan


def _rewrite(path: Path, array: np.ndarray | None = None, **geometry) -> None:
    """Rewrite an image file with a new array and/or spacing/origin (x, y, z)."""
    img = sitk.ReadImage(str(path))
    if array is not None:
        new = sitk.GetImageFromArray(array)
        new.CopyInformation(img)
        img = new
    if "spacing" in geometry:
        img.SetSpacing(geometry["spacing"])
    if "origin" in geometry:
        img.SetOrigin(geometry["origin"])
    sitk.WriteImage(img, str(path))


def _edges(img: sitk.Image) -> np.ndarray:
    """Physical positions of the outer voxel edges (first and last corner)."""
    first = np.asarray(img.TransformContinuousIndexToPhysicalPoint([-0.5] * 3))
    last = np.asarray(img.TransformContinuousIndexToPhysicalPoint(
        [s - 0.5 for s in img.GetSize()]))
    return np.stack([first, last])


# --- plan ---------------------------------------------------------------------------------------

def test_plan_round_trips_through_json():
    plan = _plan(normalization="ct", ct_clip=(-100.0, 300.0), ct_mean=40.0, ct_std=80.0)
    data = json.loads(json.dumps(plan.to_dict()))
    assert Plan.from_dict(data) == plan
    assert isinstance(Plan.from_dict(data).patch_size, tuple)


def test_plan_from_dict_rejects_missing_or_invalid_entries():
    data = _plan().to_dict()
    del data["target_spacing"]
    with pytest.raises(ModelFileError, match="missing target_spacing"):
        Plan.from_dict(data)
    with pytest.raises(ModelFileError, match="normalization"):
        Plan.from_dict({**_plan().to_dict(), "normalization": "minmax"})
    with pytest.raises(ModelFileError, match="needs 3 positive sizes"):
        Plan.from_dict({**_plan().to_dict(), "patch_size": [16, 16]})


def test_plan_uses_the_median_spacing_of_the_train_cases_from_headers_only(
        phantom_dataset, monkeypatch):
    for case, z in zip(["case_000", "case_001", "case_002", "case_003"], [1.0, 2.0, 3.0, 5.0]):
        _rewrite(phantom_dataset / "imagesTr" / f"{case}_0000.nii.gz", spacing=(0.5, 0.75, z))
    _rewrite(phantom_dataset / "imagesTr" / "case_004_0000.nii.gz", spacing=(9.0, 9.0, 9.0))
    monkeypatch.setattr(preprocess, "read_image", lambda path: pytest.fail("read pixel data"))
    plan = make_plan(load_dataset(phantom_dataset), dims=3, patch_size=(8, 16, 16))
    assert plan.target_spacing == pytest.approx((2.5, 0.75, 0.5))
    assert plan.normalization == "zscore" and plan.label_values == [0, 1, 2]


def test_plan_takes_a_given_spacing_and_checks_the_patch_size(phantom_dataset):
    ds = load_dataset(phantom_dataset)
    plan = make_plan(ds, dims=2, patch_size=(16, 16), spacing=(3.0, 0.5, 0.5))
    assert plan.target_spacing == (3.0, 0.5, 0.5) and plan.patch_size == (16, 16)
    with pytest.raises(InputError, match="2D patch size needs 2"):
        make_plan(ds, dims=2, patch_size=(8, 16, 16))


def test_ct_plan_uses_clipped_foreground_statistics_of_the_train_cases(phantom_dataset):
    json_path = phantom_dataset / "dataset.json"
    json_path.write_text(json.dumps({**json.loads(json_path.read_text()),
                                     "channel_names": {"0": "CT"}}))
    ds = load_dataset(phantom_dataset)
    voxels = []
    for case in ds.split_cases("train"):
        image = sitk.GetArrayFromImage(sitk.ReadImage(str(case.images[0])))
        label = sitk.GetArrayFromImage(sitk.ReadImage(str(case.label)))
        voxels.append(image[label > 0])
    voxels = np.concatenate(voxels).astype(np.float64)
    low, high = np.percentile(voxels, [0.5, 99.5])
    plan = make_plan(ds, dims=3, patch_size=(8, 16, 16))
    assert plan.normalization == "ct"
    assert plan.ct_clip == pytest.approx((low, high))
    assert plan.ct_mean == pytest.approx(np.clip(voxels, low, high).mean())
    assert plan.ct_std == pytest.approx(np.clip(voxels, low, high).std())


# --- normalisation ------------------------------------------------------------------------------

def test_zscore_normalises_each_channel_separately():
    rng = np.random.default_rng(0)
    array = np.stack([rng.normal(100, 20, (4, 8, 8)), rng.normal(-5, 0.1, (4, 8, 8))])
    out = normalize(array, _plan())
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2, 3)), 1, atol=1e-4)


def test_zscore_of_a_constant_channel_is_zero_not_nan():
    out = normalize(np.full((1, 2, 3, 3), 7.0), _plan())
    assert np.isfinite(out).all() and not out.any()


def test_ct_normalisation_clips_then_standardises_with_dataset_statistics():
    plan = _plan(normalization="ct", ct_clip=(-100.0, 200.0), ct_mean=50.0, ct_std=25.0)
    out = normalize(np.array([[[[-1000.0, 0.0, 100.0, 3000.0]]]]), plan)
    np.testing.assert_allclose(out.ravel(), [-6.0, -2.0, 2.0, 6.0])


# --- resampling ---------------------------------------------------------------------------------

def _grid_image(array: np.ndarray, spacing_xyz=(1.0, 1.0, 2.0)) -> sitk.Image:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing_xyz)
    img.SetOrigin((-3.0, 4.0, 10.0))
    img.SetDirection((0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    return img


def test_resample_keeps_the_physical_extent():
    img = _grid_image(np.random.default_rng(0).random((8, 12, 10)).astype(np.float32))
    out = resample(img, (1.0, 0.5, 0.5))
    assert out.GetSize() == (20, 24, 16) and out.GetSpacing() == (0.5, 0.5, 1.0)
    assert out.GetDirection() == img.GetDirection()
    np.testing.assert_allclose(_edges(out), _edges(img), atol=1e-6)


def test_resample_labels_with_nearest_neighbour():
    label = np.zeros((8, 12, 10), np.uint8)
    label[2:6, 3:9, 2:8] = 3
    out = resample(_grid_image(label), (1.0, 0.6, 0.6), is_label=True)
    assert out.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayFromImage(out))) == {0, 3}


def test_resample_in_plane_only_keeps_the_slices():
    img = _grid_image(np.ones((8, 12, 10), np.float32))
    out = resample(img, (5.0, 0.5, 0.5), in_plane_only=True)
    assert out.GetSize() == (20, 24, 8) and out.GetSpacing()[2] == 2.0


def test_resample_is_skipped_when_the_spacing_already_matches():
    img = _grid_image(np.ones((2, 3, 4), np.float32))
    assert resample(img, (2.0005, 1.0, 0.9999)) is img


def test_resample_to_reference_maps_back_onto_the_input_grid():
    img = _grid_image(np.random.default_rng(1).random((8, 12, 10)).astype(np.float32))
    back = resample_to_reference(resample(img, (1.0, 0.5, 0.5)), img)
    assert back.GetSize() == img.GetSize() and back.GetOrigin() == img.GetOrigin()
    assert resample_to_reference(img, img) is img


# --- preprocessing cases ------------------------------------------------------------------------

def test_preprocess_image_stacks_channels_on_the_plan_grid():
    img = _grid_image(np.random.default_rng(0).random((4, 6, 6)).astype(np.float32))
    array, grid = preprocess_image([img, img], _plan(target_spacing=(1.0, 0.5, 0.5)))
    assert array.shape == (2, 8, 12, 12) and array.dtype == np.float32
    assert grid.size == (12, 12, 8) and grid.spacing == (0.5, 0.5, 1.0)
    array2d, grid2d = preprocess_image([img], _plan(dims=2, patch_size=(8, 8),
                                                    target_spacing=(1.0, 0.5, 0.5)))
    assert array2d.shape == (1, 4, 12, 12) and grid2d.spacing == (0.5, 0.5, 2.0)


def test_preprocess_image_rejects_channels_on_different_grids():
    a = _grid_image(np.ones((4, 6, 6), np.float32))
    b = _grid_image(np.ones((4, 6, 6), np.float32), spacing_xyz=(1.0, 1.0, 3.0))
    with pytest.raises(InputError, match="t2.nii.gz does not match t1.nii.gz: spacing"):
        preprocess_image([a, b], _plan(), names=["t1.nii.gz", "t2.nii.gz"])


def test_preprocess_case_gives_normalised_image_and_class_labels(phantom_dataset):
    ds = load_dataset(phantom_dataset)
    case = preprocess_case(ds.cases[0], _plan(target_spacing=(2.0, 0.5, 0.5)), ds)
    assert case.case_id == "case_000" and case.spacing_zyx == (2.0, 0.5, 0.5)
    assert case.image.shape == (1, 8, 48, 48) and case.label.shape == (8, 48, 48)
    assert case.label.dtype == np.uint8 and set(np.unique(case.label)) == {0, 1, 2}
    assert abs(float(case.image.mean())) < 1e-4


def test_non_contiguous_label_values_become_contiguous_classes(phantom_dataset):
    label_path = phantom_dataset / "labelsTr" / "case_000.nii.gz"
    original = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path)))
    _rewrite(label_path, np.where(original == 2, 7, original).astype(np.uint8))
    json_path = phantom_dataset / "dataset.json"
    json_path.write_text(json.dumps({**json.loads(json_path.read_text()),
                                     "labels": {"background": 0, "a": 1, "b": 7}}))
    ds = load_dataset(phantom_dataset)
    case = preprocess_case(ds.cases[0], _plan(label_values=[0, 1, 7]), ds)
    np.testing.assert_array_equal(case.label, original)


def test_ignore_label_value_becomes_ignore_label(phantom_dataset):
    json_path = phantom_dataset / "dataset.json"
    json_path.write_text(json.dumps({**json.loads(json_path.read_text()),
                                     "labels": {"background": 0, "a": 1, "ignore": 2}}))
    ds = load_dataset(phantom_dataset)
    case = preprocess_case(ds.cases[0], _plan(label_values=[0, 1]), ds)
    assert set(np.unique(case.label)) == {0, 1, IGNORE_LABEL}


def test_label_value_missing_from_dataset_json_is_rejected(phantom_dataset):
    json_path = phantom_dataset / "dataset.json"
    json_path.write_text(json.dumps({**json.loads(json_path.read_text()),
                                     "labels": {"background": 0, "a": 1}}))
    ds = load_dataset(phantom_dataset)
    with pytest.raises(InputError, match=r"case_000.nii.gz contains value\(s\) \[2\]"):
        preprocess_case(ds.cases[0], _plan(label_values=[0, 1]), ds)


def test_label_on_another_grid_than_its_image_is_rejected(phantom_dataset):
    _rewrite(phantom_dataset / "labelsTr" / "case_001.nii.gz", origin=(0.0, 0.0, 0.0))
    ds = load_dataset(phantom_dataset)
    with pytest.raises(InputError, match=r"labelsTr/case_001.nii.gz does not match "
                                         r".*imagesTr/case_001_0000.nii.gz: origin"):
        preprocess_case(ds.cases[1], _plan(), ds)


# --- cache --------------------------------------------------------------------------------------

def test_second_load_comes_from_the_cache_without_reading_images(phantom_dataset, tmp_path,
                                                                 monkeypatch):
    ds = load_dataset(phantom_dataset)
    reporter = RecordingReporter()
    first = load_cases(ds, ds.cases[:3], _plan(), cache_dir=tmp_path / "cache", reporter=reporter)
    assert reporter.steps == [(1, 3, "preprocessing"), (2, 3, "preprocessing"),
                              (3, 3, "preprocessing")]
    monkeypatch.setattr(preprocess, "read_image", lambda path: pytest.fail("image re-read"))
    second = load_cases(ds, ds.cases[:3], _plan(), cache_dir=tmp_path / "cache")
    for a, b in zip(first, second):
        assert a.case_id == b.case_id and a.spacing_zyx == b.spacing_zyx
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.label, b.label)
    assert not list((tmp_path / "cache").rglob(".*"))  # no temporary files left behind


def test_cache_is_invalidated_by_a_new_plan_or_a_changed_file(phantom_dataset, tmp_path,
                                                              monkeypatch):
    ds = load_dataset(phantom_dataset)
    cache = tmp_path / "cache"
    load_cases(ds, ds.cases[:1], _plan(), cache_dir=cache)
    calls = []
    original = cache_module.preprocess_case
    monkeypatch.setattr(cache_module, "preprocess_case",
                        lambda *args: calls.append(args[0].id) or original(*args))
    load_cases(ds, ds.cases[:1], _plan(patch_size=(4, 8, 8)), cache_dir=cache)  # no effect
    load_cases(ds, ds.cases[:1], _plan(target_spacing=(2.0, 0.5, 0.5)), cache_dir=cache)
    image = ds.cases[0].images[0]
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    load_cases(ds, ds.cases[:1], _plan(), cache_dir=cache)
    assert calls == ["case_000", "case_000"]


def test_a_file_rewritten_with_its_size_and_modification_time_kept_is_read_again(
        phantom_dataset, tmp_path, monkeypatch):
    """The tester's finding 9: a label map rewritten in place with its mtime restored (cp -p,
    tar) was served from the cache."""
    ds = load_dataset(phantom_dataset)
    load_cases(ds, ds.cases[:1], _plan(), cache_dir=tmp_path)
    calls = []
    original = cache_module.preprocess_case
    monkeypatch.setattr(cache_module, "preprocess_case",
                        lambda *args: calls.append(args[0].id) or original(*args))
    label = ds.cases[0].label
    before = label.stat()
    label.write_bytes(label.read_bytes())
    os.utime(label, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (label.stat().st_size, label.stat().st_mtime_ns) == (before.st_size,
                                                                before.st_mtime_ns)
    load_cases(ds, ds.cases[:1], _plan(), cache_dir=tmp_path)
    assert calls == ["case_000"]


def test_one_case_that_cannot_be_cached_leaves_the_cache_to_the_others(phantom_dataset,
                                                                       tmp_path, monkeypatch):
    """A reviewer's finding: a 240-character case id (entry name too long) turned the cache off
    for the whole run and blamed the folder."""
    import errno

    ds = load_dataset(phantom_dataset)
    write = cache_module._write_cache

    def too_long_for_the_first(entry, case):
        if case.case_id == ds.cases[0].id:
            raise OSError(errno.ENAMETOOLONG, "File name too long")
        write(entry, case)
    monkeypatch.setattr(cache_module, "_write_cache", too_long_for_the_first)
    reporter = RecordingReporter()
    load_cases(ds, ds.cases[:3], _plan(), cache_dir=tmp_path / "cache", reporter=reporter)
    assert len(list((tmp_path / "cache").rglob("case.json"))) == 2
    [line] = [line for line in reporter.logs if "Could not write" in line]
    assert "without caching this case" in line


def test_corrupt_cache_entry_is_recomputed(phantom_dataset, tmp_path):
    ds = load_dataset(phantom_dataset)
    first = load_cases(ds, ds.cases[:1], _plan(), cache_dir=tmp_path)
    (next(tmp_path.rglob("image.npy"))).write_bytes(b"garbage")
    again = load_cases(ds, ds.cases[:1], _plan(), cache_dir=tmp_path)
    np.testing.assert_array_equal(first[0].image, again[0].image)


def test_default_cache_folder_comes_from_arcoseg_cache(phantom_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("ARCOSEG_CACHE", str(tmp_path / "envcache"))
    ds = load_dataset(phantom_dataset)
    load_cases(ds, ds.cases[:1], _plan())
    assert len(list((tmp_path / "envcache").rglob("case.json"))) == 1


def test_unwritable_cache_is_reported_once_and_skipped(phantom_dataset, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    ds = load_dataset(phantom_dataset)
    reporter = RecordingReporter()
    run: set = set()  # the calls of one training share it
    cases = load_cases(ds, ds.cases[:3], _plan(), cache_dir=blocker / "cache", reporter=reporter,
                       unwritable=run)
    load_cases(ds, ds.cases[3:], _plan(), cache_dir=blocker / "cache", reporter=reporter,
               unwritable=run)
    assert all(case.label is not None for case in cases)
    warnings = [line for line in reporter.logs if "Could not write the preprocessing" in line]
    assert len(warnings) == 1  # not once per case, nor per call of a run (the testers' findings)
    load_cases(ds, ds.cases[:1], _plan(), cache_dir=blocker / "cache", reporter=reporter)
    assert len([line for line in reporter.logs if "Could not write" in line]) == 2  # a new run
