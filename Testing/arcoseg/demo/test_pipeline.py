"""The demo's pipeline (simulated clinician → adapt → evaluate → report) on a tiny phantom."""

import numpy as np
import pytest

from arcoseg.constants import IGNORE_LABEL
from arcoseg.data.synthetic import make_phantom
from arcoseg.errors import InputError
from arcoseg.demo.pipeline import pick_slices, run_demo, simulate_annotations, unannotated_dice
from arcoseg.progress import Reporter


def test_slices_are_spread_through_the_structure():
    labels = np.zeros((20, 4, 4), np.uint8)
    labels[4:17] = 1
    assert pick_slices(labels, 0, 3) == [7, 10, 13]


def test_as_many_slices_as_the_structure_spans_are_all_distinct_and_more_are_refused():
    """A reviewer's finding: --slices 100 gave [6, 6, 6, 7, 7, 7, …], exit 0."""
    labels = np.zeros((30, 4, 4), np.uint8)
    labels[6:23] = 1  # 17 slices
    for count in (15, 16, 17):
        chosen = pick_slices(labels, 0, count)
        assert len(set(chosen)) == count and min(chosen) >= 6 and max(chosen) <= 22
    with pytest.raises(InputError, match="--slices 18: the structures span 17 slices"):
        pick_slices(labels, 0, 18)


def test_simulated_annotations_keep_only_the_chosen_slices():
    labels = np.ones((5, 3, 3), np.uint8)
    drawn = simulate_annotations(labels, 1, [2])
    assert (drawn[:, 2] == 1).all() and (drawn[:, :2] == IGNORE_LABEL).all()


def test_unannotated_dice_ignores_the_drawn_slices():
    labels = np.zeros((4, 4, 4), np.uint8)
    labels[:, 1:3, 1:3] = 1
    prediction = labels.copy()
    prediction[0] = 0  # wrong only on slice 0, which the clinician drew
    assert unannotated_dice(prediction, labels, 0, [0], 2) == [1.0]


def test_demo_pipeline_writes_report_overlay_and_suggestions(tmp_path):
    image, labels = make_phantom((10, 32, 32), seed=4)
    result = run_demo(image, labels, ["background", "a", "b"], tmp_path / "out",
                      Reporter(quiet=True), lambda: False, budget=600, iterations=3,
                      device="cpu", notice="test notice")
    out = tmp_path / "out"
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "Next slices to annotate" in report and "test notice" in report
    weight = result["heldout"]["fusion_weight"]
    written = ("the model alone" if weight == 0
               else f"the model fused with the drawing (weight {weight:g})")
    assert f"the segmentation written: {written}." in report
    assert (out / "overlay.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "evaluation" / "summary.md").is_file()
    assert len(result["annotated_slices"]) == 3
    assert set(result["dice_unannotated"]) == {"a", "b"}
    assert result["model"] == "demo@v1"
    assert (out / "registry").is_dir()
