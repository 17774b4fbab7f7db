"""Evaluation of files/folders: pairing, geometry checks, CSV, summary statistics and table."""

import csv
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from arcoseg.errors import InputError
from arcoseg.progress import Reporter
from arcoseg.evaluation.evaluate import (
    METRICS,
    evaluate,
    evaluate_pairs,
    format_summary_table,
    pair_files,
    summarize,
    write_csv,
)

SPACING_XYZ = (0.5, 1.0, 5.0)


def write_label(path: Path, array: np.ndarray, spacing=SPACING_XYZ) -> Path:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(spacing)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def phantom(x0: int = 2, second_class: bool = True) -> np.ndarray:
    labels = np.zeros((2, 10, 10), np.uint8)
    labels[:, 2:6, x0:x0 + 4] = 1
    if second_class:
        labels[:, 7:9, 7:9] = 2
    return labels


# --- pairing -------------------------------------------------------------------------------

def test_two_files_pair_under_the_ground_truth_case_id(tmp_path):
    pred = write_label(tmp_path / "p" / "anything.nrrd", phantom())
    gt = write_label(tmp_path / "g" / "case1.nii.gz", phantom())
    assert pair_files(pred, gt) == [("case1", pred, gt)]


def test_folders_pair_by_case_id_ignoring_extension_and_nnunet_channel_suffix(tmp_path):
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    for cid in ("b", "a"):
        write_label(gt_dir / f"{cid}.nii.gz", phantom())
    write_label(pred_dir / "a_0000.nii.gz", phantom())
    write_label(pred_dir / "b.mha", phantom())
    write_label(pred_dir / "extra.nii.gz", phantom())  # no ground truth: not scored, said
    (pred_dir / "notes.txt").write_text("not an image")
    log = io.StringIO()
    assert pair_files(pred_dir, gt_dir, Reporter(log)) == [
        ("a", pred_dir / "a_0000.nii.gz", gt_dir / "a.nii.gz"),
        ("b", pred_dir / "b.mha", gt_dir / "b.nii.gz")]
    assert (f"1 prediction(s) in {pred_dir} have no ground truth in {gt_dir} and are not "
            "scored: extra.") in log.getvalue()


def test_missing_predictions_are_listed_in_the_error(tmp_path):
    for cid in ("a", "b", "c"):
        write_label(tmp_path / "gt" / f"{cid}.nii.gz", phantom())
    write_label(tmp_path / "pred" / "b.nii.gz", phantom())
    with pytest.raises(InputError, match="2 ground-truth case.*a, c"):
        pair_files(tmp_path / "pred", tmp_path / "gt")


def test_no_matching_case_at_all_is_an_input_error(tmp_path):
    write_label(tmp_path / "gt" / "a.nii.gz", phantom())
    write_label(tmp_path / "pred" / "z.nii.gz", phantom())
    with pytest.raises(InputError, match="No prediction"):
        pair_files(tmp_path / "pred", tmp_path / "gt")


def test_empty_ground_truth_folder_is_an_input_error(tmp_path):
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    with pytest.raises(InputError, match="No label files"):
        pair_files(tmp_path / "pred", tmp_path / "gt")


def test_two_files_of_the_same_case_in_a_folder_are_an_input_error(tmp_path):
    write_label(tmp_path / "gt" / "a.nii.gz", phantom())
    write_label(tmp_path / "gt" / "a.nrrd", phantom())
    (tmp_path / "pred").mkdir()
    with pytest.raises(InputError, match="are both case 'a'"):
        pair_files(tmp_path / "pred", tmp_path / "gt")


def test_file_against_folder_and_missing_paths_are_input_errors(tmp_path):
    gt = write_label(tmp_path / "gt" / "a.nii.gz", phantom())
    with pytest.raises(InputError, match="two files or two folders"):
        pair_files(tmp_path / "gt", gt)
    with pytest.raises(InputError, match="does not exist"):
        pair_files(tmp_path / "nope", gt)


# --- evaluating pairs ----------------------------------------------------------------------

def test_rows_have_one_entry_per_case_and_class_with_all_metrics(tmp_path):
    gt = write_label(tmp_path / "gt.nii.gz", phantom(2))
    pred = write_label(tmp_path / "pred.nii.gz", phantom(3))
    rows = evaluate_pairs([("c1", pred, gt)], {"LV": 1, "RV": 2})
    assert [(r["case"], r["class"]) for r in rows] == [("c1", "LV"), ("c1", "RV")]
    assert rows[0]["dice"] == pytest.approx(0.75)
    assert rows[0]["hd95_mm"] == pytest.approx(0.5)  # one voxel along x, x spacing 0.5 mm
    assert rows[1]["dice"] == pytest.approx(1.0)
    assert set(METRICS) <= set(rows[0])


def test_classes_are_inferred_from_the_ground_truth_values_when_not_given(tmp_path):
    gt_a = write_label(tmp_path / "a_gt.nii.gz", phantom(second_class=False))
    gt_b = write_label(tmp_path / "b_gt.nii.gz", phantom())
    pred = write_label(tmp_path / "pred.nii.gz", phantom())
    rows = evaluate_pairs([("a", pred, gt_a), ("b", pred, gt_b)], None)
    assert [(r["case"], r["class"]) for r in rows] == [("a", "1"), ("a", "2"),
                                                       ("b", "1"), ("b", "2")]
    assert rows[1]["dice"] == 0.0  # class 2 predicted where the ground truth has none


def test_geometry_mismatch_names_both_files(tmp_path):
    gt = write_label(tmp_path / "gt.nii.gz", phantom())
    pred = write_label(tmp_path / "pred.nii.gz", phantom(), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(InputError) as err:
        evaluate_pairs([("c", pred, gt)], {"a": 1, "b": 2})
    assert "pred.nii.gz" in str(err.value) and "gt.nii.gz" in str(err.value)


# --- summary -------------------------------------------------------------------------------

def row(case, cls, value):
    return {"case": case, "class": cls, **{m: value for m in METRICS}}


def test_summary_is_mean_and_std_per_class_and_mean_over_classes_per_case():
    rows = [row("c1", "a", 0.8), row("c1", "b", 0.4), row("c2", "a", 0.6), row("c2", "b", 0.2)]
    summary = summarize(rows)
    assert summary["n_cases"] == 2
    assert summary["classes"]["a"]["dice"] == pytest.approx({"mean": 0.7, "std": 0.1, "n": 2})
    assert summary["classes"]["b"]["hd95_mm"] == pytest.approx({"mean": 0.3, "std": 0.1, "n": 2})
    # Per-case means over classes: 0.6 and 0.4.
    assert summary["mean"]["dice"] == pytest.approx({"mean": 0.5, "std": 0.1, "n": 2})


def test_nan_values_are_left_out_of_every_mean():
    rows = [row("c1", "a", 0.8), row("c1", "b", math.nan), row("c2", "a", 0.6),
            row("c2", "b", 0.2), row("c3", "a", math.nan), row("c3", "b", math.nan)]
    summary = summarize(rows)
    assert summary["classes"]["b"]["dice"] == pytest.approx({"mean": 0.2, "std": 0.0, "n": 1})
    # Case means: c1 = 0.8 (b is NaN), c2 = 0.4, c3 has no value at all.
    assert summary["mean"]["asd_vox"] == pytest.approx({"mean": 0.6, "std": 0.2, "n": 2})


def test_a_class_never_scored_has_no_statistics_and_shows_a_dash():
    summary = summarize([row("c1", "a", 0.5), row("c1", "b", math.nan)])
    assert summary["classes"]["b"]["dice"] == {"mean": None, "std": None, "n": 0}
    assert "| b | – |" in format_summary_table(summary)


def test_summary_table_shows_overlap_in_percent_and_distances_with_two_decimals():
    rows = [row("c1", "a", 0.8), row("c2", "a", 0.6)]
    table = format_summary_table(summarize(rows)).splitlines()
    assert table[0].split("|")[1:-1] == [" class ", " Dice % ", " Jaccard % ", " HD95 vox ",
                                         " ASD vox ", " HD95 mm ", " ASD mm "]
    assert table[2] == ("| a | 70.0 ± 10.0 | 70.0 ± 10.0 | 0.70 ± 0.10 | 0.70 ± 0.10 | "
                        "0.70 ± 0.10 | 0.70 ± 0.10 |")
    assert table[3].startswith("| all classes (mean) | 70.0 ± 10.0 |")


def test_csv_round_trips_rows_including_nan(tmp_path):
    rows = [row("c1", "a", 0.25), row("c1", "b", math.nan)]
    path = tmp_path / "out" / "rows.csv"
    write_csv(rows, path)
    with path.open(newline="") as f:
        read = list(csv.DictReader(f))
    assert [(r["case"], r["class"]) for r in read] == [("c1", "a"), ("c1", "b")]
    assert float(read[0]["dice"]) == 0.25 and math.isnan(float(read[1]["hd95_mm"]))
    assert sorted(p.name for p in path.parent.iterdir()) == ["rows.csv"]  # no temporary left


def test_evaluate_writes_csv_json_and_markdown_and_returns_the_summary(tmp_path):
    for cid, x0 in (("a", 2), ("b", 3)):
        write_label(tmp_path / "gt" / f"{cid}.nii.gz", phantom(2))
        write_label(tmp_path / "pred" / f"{cid}.nii.gz", phantom(x0))
    out = tmp_path / "eval"
    summary = evaluate(tmp_path / "pred", tmp_path / "gt", {"LV": 1, "RV": 2}, out)
    assert sorted(p.name for p in out.iterdir()) == ["metrics_per_case.csv", "summary.json",
                                                     "summary.md"]
    assert json.loads((out / "summary.json").read_text(encoding="utf-8")) == summary
    assert summary["classes"]["LV"]["dice"]["mean"] == pytest.approx((1.0 + 0.75) / 2)
    assert "| LV | 87.5 ± 12.5 |" in (out / "summary.md").read_text(encoding="utf-8")
    with (out / "metrics_per_case.csv").open(newline="") as f:
        assert len(list(csv.DictReader(f))) == 4


def test_a_model_is_evaluated_on_a_png_dataset_with_predictions_it_can_write(untrained_model,
                                                                             tmp_path):
    """The tester's finding 5: a PNG dataset trained, then `evaluate --model` failed after the
    first case ('unsupported extension .png'): predictions now go in .nii.gz there."""
    import torch

    from arcoseg.data.dataset import load_dataset
    from arcoseg.evaluation.model_eval import evaluate_model_on_cases

    root = tmp_path / "Dataset002_Png"
    for folder in ("imagesTr", "labelsTr"):
        (root / folder).mkdir(parents=True)
    for case in ("c0", "c1"):
        label = np.zeros((32, 32), np.uint8)
        label[8:20, 10:24] = 1
        image = sitk.GetImageFromArray(label * 200)
        sitk.WriteImage(image, str(root / f"imagesTr/{case}_0000.png"))
        sitk.WriteImage(sitk.GetImageFromArray(label), str(root / f"labelsTr/{case}.png"))
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "x"}, "labels": {"background": 0, "a": 1, "b": 2},
        "file_ending": ".png", "numTraining": 2}))
    dataset = load_dataset(root)
    summary = evaluate_model_on_cases(untrained_model, dataset, list(dataset.cases),
                                      tmp_path / "ev", torch.device("cpu"), Reporter(quiet=True))
    assert sorted(p.name for p in (tmp_path / "ev" / "predictions").iterdir()) == \
        ["c0.nii.gz", "c1.nii.gz"]
    assert summary["n_cases"] == 2


def test_voxels_of_the_ignore_label_are_left_out_of_every_metric(tmp_path):
    """The tester's finding 3: a dataset with nnU-Net's 'ignore' label trained, but could not
    be evaluated ('value(s) [3] not in the evaluated classes')."""
    truth = phantom(second_class=False)
    truth[:, 2:6, 2:4] = 3  # half of class 1 was never annotated
    pred = phantom(second_class=False)
    pred[:, 2:6, 2:4] = 0  # the model leaves it out there: no error, since nobody drew it
    pred[:, 0, 0] = 1  # one wrong voxel (2 slices) outside the unannotated part
    pairs = [("c", write_label(tmp_path / "p.nii.gz", pred),
              write_label(tmp_path / "g.nii.gz", truth))]
    [row] = evaluate_pairs(pairs, {"a": 1, "ignore": 3})
    scored = truth == 1  # 2 slices x 4 x 2 = 16 voxels; the prediction has them and 2 more
    assert row["class"] == "a"
    assert row["dice"] == pytest.approx(2 * scored.sum() / (2 * scored.sum() + 2))
    with pytest.raises(InputError, match=r"value\(s\) \[3\]"):
        evaluate_pairs(pairs, {"a": 1})  # without it, 3 is an unknown value


def test_a_slicer_segmentation_ground_truth_with_an_ignore_segment_is_scored_without_it(
        tmp_path):
    """The reviewer's finding: --labels a=1,ignore=9 with a .seg.nrrd ground truth holding an
    'ignore' segment was refused ('matches none of the classes')."""
    from arcoseg.io.segnrrd import write_segmentation

    truth = np.zeros((8, 32, 32), np.uint8)
    truth[2:6, 4:12, 4:12] = 1
    truth[:, :, 20:] = 9  # never annotated
    pred = np.zeros_like(truth)
    pred[2:6, 4:12, 4:10] = 1  # 192 of the 256 voxels of a
    pred[:, 10:20, 22:30] = 1  # only where nobody annotated: not counted
    image = sitk.GetImageFromArray(truth)
    gt = tmp_path / "case.seg.nrrd"
    write_segmentation(image, [{"name": "background", "value": 0, "color": [0, 0, 0]},
                               {"name": "a", "value": 1, "color": [255, 0, 0]},
                               {"name": "ignore", "value": 9, "color": [0, 255, 0]}], gt)
    pairs = [("case", write_label(tmp_path / "pred.nii.gz", pred, (1.0, 1.0, 1.0)), gt)]
    [row] = evaluate_pairs(pairs, {"a": 1, "ignore": 9})
    assert row["dice"] == pytest.approx(2 * 192 / (256 + 192))


def test_a_model_whose_label_values_differ_from_the_datasets_is_scored_by_class_name(
        phantom_dataset, tmp_path):
    """A hunter's finding: the same classes coded otherwise (class2 = 2 in the model, 5 in the
    dataset) were refused after every case had been segmented, advising a --labels that does
    not go with --model; a coding that passed the value check scored the wrong structures."""
    import torch
    from tiny_models import save_tiny

    from arcoseg.data.dataset import load_dataset
    from arcoseg.evaluation.model_eval import evaluate_model_on_cases

    model = save_tiny(tmp_path / "model", classes=("background", "class1", "class2"),
                      seed=11)  # untrained weights that predict all three classes here
    recoded = tmp_path / "recoded"
    shutil.copytree(phantom_dataset, recoded)
    meta = json.loads((recoded / "dataset.json").read_text())
    meta["labels"]["class2"] = 5
    (recoded / "dataset.json").write_text(json.dumps(meta))
    for path in (recoded / "labelsTr").iterdir():
        label = sitk.ReadImage(str(path))
        sitk.WriteImage(sitk.ChangeLabel(label, {2: 5}), str(path))
    summaries = {}
    for name, root in (("original", phantom_dataset), ("recoded", recoded)):
        dataset = load_dataset(root)
        summaries[name] = evaluate_model_on_cases(model, dataset, list(dataset.cases),
                                                  tmp_path / name, torch.device("cpu"),
                                                  Reporter(quiet=True))
    assert summaries["recoded"]["classes"] == summaries["original"]["classes"]
    written = np.unique(np.concatenate([
        sitk.GetArrayFromImage(sitk.ReadImage(str(p))).ravel()
        for p in (tmp_path / "recoded" / "predictions").iterdir()]))
    assert set(written) <= {0, 1, 5} and 5 in written  # the dataset's values, as its labels


def test_a_stop_ends_the_evaluation_before_the_next_case_with_no_metrics_file(tmp_path):
    """A hunter's finding: a serve cancel of `evaluate PRED GT` was acknowledged, then ignored
    (the run went on to the end, exit 0): only `evaluate --model` looked at the stop flag."""
    from arcoseg.errors import Cancelled

    for cid in ("a", "b", "c"):
        write_label(tmp_path / "gt" / f"{cid}.nii.gz", phantom())
        write_label(tmp_path / "pred" / f"{cid}.nii.gz", phantom())
    asked = iter([False, True])
    with pytest.raises(Cancelled, match="cancelled after 1 of 3 cases; no metrics file"):
        evaluate(tmp_path / "pred", tmp_path / "gt", None, tmp_path / "out",
                 should_stop=lambda: next(asked))
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_a_prediction_path_that_is_the_ground_truth_is_said(tmp_path):
    """A hunter's finding: `evaluate gt gt` scored a perfect 1.0 without a word."""
    gt = write_label(tmp_path / "gt" / "a.nii.gz", phantom())
    for same, kind in ((gt.parent, "folder"), (gt, "file")):
        log = io.StringIO()
        pair_files(same, same, Reporter(log))
        assert f"Warning: the predictions and the ground truth are the same {kind}" in \
            log.getvalue()
