"""Shared test fixtures: tiny synthetic datasets and an isolated preprocessing cache; the shared
test helpers (Testing/helpers: `tiny_models`) on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HELPERS = str(Path(__file__).resolve().parent / "helpers")
if HELPERS not in sys.path:
    sys.path.insert(0, HELPERS)

from tiny_models import save_tiny  # noqa: E402

from arcoseg.data.synthetic import make_phantom_dataset  # noqa: E402

SMALL_SHAPE = (8, 24, 24)  # (z, y, x): a few thousand voxels keeps every test fast


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own model-registry home; the user's real one is never touched."""
    folder = tmp_path / "home"
    monkeypatch.setenv("ARCOSEG_HOME", str(folder))
    return folder


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Never write the preprocessing cache into the user's home folder during tests."""
    monkeypatch.setenv("ARCOSEG_CACHE", str(tmp_path_factory.mktemp("arcoseg-cache")))


@pytest.fixture
def phantom_dataset(tmp_path: Path) -> Path:
    """nnU-Net v2 phantom dataset: 6 cases (4 train, 2 val), 3 classes, splits, labelled_order."""
    return make_phantom_dataset(tmp_path / "Dataset001_Phantom", shape_zyx=SMALL_SHAPE)


@pytest.fixture
def msd_dataset(tmp_path: Path) -> Path:
    """Medical Segmentation Decathlon phantom dataset: 6 cases, 3 classes, no splits."""
    return make_phantom_dataset(tmp_path / "Task01_Phantom", shape_zyx=SMALL_SHAPE, layout="msd")


@pytest.fixture
def untrained_model(tmp_path: Path) -> Path:
    """A 2D model folder (3 classes, 1 channel, untrained weights, 1 mm target spacing): enough
    to run `segment` without training. Its labels are meaningless; geometry and files are not."""
    return save_tiny(tmp_path / "untrained_model", classes=("background", "a", "b"), head_dim=8)


@pytest.fixture(scope="session")
def drawn_phantom():
    """A function (folder, shape (z, y, x)) -> {"image", "ann"} paths: a phantom image and its
    labels on three coronal slices (array axis 1: 10, 16, 22; 0 elsewhere), as NIfTI files."""
    import numpy as np
    import SimpleITK as sitk

    from arcoseg.data.synthetic import make_phantom

    def write(folder: Path, shape_zyx: tuple[int, int, int]) -> dict[str, Path]:
        image, labels = make_phantom(shape_zyx, seed=2)
        full = sitk.GetArrayFromImage(labels)
        drawn = np.zeros_like(full)
        drawn[:, [10, 16, 22], :] = full[:, [10, 16, 22], :]
        annotations = sitk.GetImageFromArray(drawn)
        annotations.CopyInformation(labels)
        paths = {"image": folder / "img.nii.gz", "ann": folder / "ann.nii.gz"}
        sitk.WriteImage(image, str(paths["image"]))
        sitk.WriteImage(annotations, str(paths["ann"]))
        return paths

    return write
