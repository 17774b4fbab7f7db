"""Figures: training curves and overlays are written as valid PNG files, whatever is missing."""

import numpy as np
import pytest

from arcoseg.errors import InputError
from arcoseg.evaluation.plots import _default_slices, plot_training_curves, save_overlay_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 5000  # a real figure, not an empty canvas
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left


def test_training_curves_with_all_loss_terms_and_validation(tmp_path):
    records = [{"iteration": i, "loss": 2.0 / (i + 1), "loss_sup": 1.5 / (i + 1),
                "loss_unsup": 0.3, "loss_contrast": 0.2, "lr": 0.01}
               for i in range(0, 200, 10)]
    for i in (50, 100, 150):
        records.append({"iteration": i, "val_dice": 0.5 + i / 1000, "val_dice/LV": 0.6,
                        "val_dice/RV": None})
    path = tmp_path / "curves.png"
    plot_training_curves(records, path)
    assert_png(path)


@pytest.mark.parametrize("records", [
    [{"iteration": 0, "loss": 1.0}],  # one record, no validation
    [{"loss": 1.0}, {"loss": 0.5}],  # no iteration column
    [{"iteration": 5, "val_dice": 0.3}],  # validation only
    [],
], ids=["single-record", "no-iteration", "no-loss", "empty"])
def test_training_curves_cope_with_missing_columns(tmp_path, records):
    path = tmp_path / "curves.png"
    plot_training_curves(records, path)
    assert_png(path)


def phantom():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(12, 24, 24)).astype(np.float32)
    labels = np.zeros(image.shape, np.uint8)
    labels[3:9, 5:15, 5:15] = 1
    labels[4:6, 16:20, 16:20] = 2
    return image, labels


def test_overlay_with_prediction_and_ground_truth(tmp_path):
    image, labels = phantom()
    path = tmp_path / "overlay.png"
    save_overlay_png(image, labels, path, colors=[[0, 0, 0], [255, 0, 0], [0, 255, 0]],
                     gt_zyx=np.roll(labels, 1, axis=0), title="case 1")
    assert_png(path)


def test_overlay_with_chosen_slices_and_no_foreground(tmp_path):
    image, _ = phantom()
    path = tmp_path / "overlay.png"
    save_overlay_png(image, np.zeros(image.shape, np.uint8), path, slices=[0, 11])
    assert_png(path)


def test_default_slices_are_spread_evenly_through_the_foreground():
    _, labels = phantom()  # foreground on slices 3..8
    assert _default_slices([labels], depth=12) == [4, 6, 7]
    assert _default_slices([np.zeros_like(labels)], depth=12) == [3, 6, 8]


def test_overlay_rejects_mismatched_shapes_and_slices_outside_the_volume(tmp_path):
    image, labels = phantom()
    with pytest.raises(InputError, match="shape"):
        save_overlay_png(image, labels[:, :, :-1], tmp_path / "a.png")
    with pytest.raises(InputError, match="slices"):
        save_overlay_png(image, labels, tmp_path / "a.png", slices=[12])
