"""Specification of arcoseg.data.dataset: nnU-Net v2 / MSD layouts, splits, labelled subsets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from arcoseg.constants import IGNORE_LABEL
from arcoseg.data.dataset import load_dataset
from arcoseg.errors import InputError

TRAIN = ["case_000", "case_001", "case_002", "case_003"]
VAL = ["case_004", "case_005"]


def _edit(root: Path, drop: tuple[str, ...] = (), **changes) -> None:
    path = root / "dataset.json"
    meta = json.loads(path.read_text())
    for key in drop:
        del meta[key]
    meta.update(changes)
    path.write_text(json.dumps(meta))


def _ids(cases) -> list[str]:
    return [c.id for c in cases]


def _acdc_like(root: Path) -> Path:
    """Rename the phantom cases to ACDC's patient/frame ids: 3 patients x 2 frames."""
    names = {f"case_{i:03d}": f"patient{p:03d}_frame0{f}"
             for i, (p, f) in enumerate((p, f) for p in (99, 38, 10) for f in (1, 2))}
    for old, new in names.items():
        (root / "imagesTr" / f"{old}_0000.nii.gz").rename(root / "imagesTr" / f"{new}_0000.nii.gz")
        (root / "labelsTr" / f"{old}.nii.gz").rename(root / "labelsTr" / f"{new}.nii.gz")
    _edit(root, splits={"train": list(names.values())[:4], "val": list(names.values())[4:]},
          labelled_order=["patient099", "patient038"])
    return root


# --- nnU-Net v2 and MSD layouts ---------------------------------------------------------------

def test_nnunet_dataset_is_loaded_with_cases_labels_and_splits(phantom_dataset):
    ds = load_dataset(phantom_dataset)
    assert _ids(ds.cases) == TRAIN + VAL
    case = ds.cases[0]
    assert case.images == [phantom_dataset / "imagesTr" / "case_000_0000.nii.gz"]
    assert case.label == phantom_dataset / "labelsTr" / "case_000.nii.gz"
    assert ds.class_names == ["background", "class1", "class2"]
    assert ds.class_values == [0, 1, 2] and ds.num_classes == 3
    assert ds.num_channels == 1 and ds.file_ending == ".nii.gz" and not ds.is_ct
    assert ds.splits == {"train": TRAIN, "val": VAL}
    assert _ids(ds.split_cases("val")) == VAL


def test_msd_dataset_is_loaded_with_value_to_name_labels(msd_dataset):
    ds = load_dataset(msd_dataset)
    assert _ids(ds.cases) == TRAIN + VAL
    assert ds.cases[0].images == [msd_dataset / "imagesTr" / "case_000.nii.gz"]
    assert ds.cases[0].label == msd_dataset / "labelsTr" / "case_000.nii.gz"
    assert ds.labels == {"background": 0, "class1": 1, "class2": 2}
    assert ds.channel_names == {"0": "MRI"} and ds.splits is None and ds.labelled_order is None


def test_msd_with_several_modalities_is_rejected_with_a_conversion_hint(msd_dataset):
    _edit(msd_dataset, modality={"0": "FLAIR", "1": "T1w"})
    with pytest.raises(InputError, match="nnUNetv2_convert_MSD_dataset"):
        load_dataset(msd_dataset)


def test_a_channel_file_that_dataset_json_does_not_list_is_rejected(phantom_dataset):
    """The tester's finding: an extra case_000_0001 file was ignored silently."""
    first = phantom_dataset / "imagesTr" / "case_000_0000.nii.gz"
    first.with_name("case_000_0001.nii.gz").write_bytes(first.read_bytes())
    with pytest.raises(InputError, match=r"Case 'case_000' has channel 1 file .*lists 1 "
                                         r"channel\(s\) in 'channel_names'"):
        load_dataset(phantom_dataset)


def test_msd_labels_giving_one_name_to_two_values_are_rejected(msd_dataset):
    """The tester's finding: they were merged silently, then value 1 was 'not in dataset.json'."""
    _edit(msd_dataset, labels={"0": "background", "1": "tumour", "2": "tumour"})
    with pytest.raises(InputError, match=r"name\(s\) \['tumour'\] to more than one value"):
        load_dataset(msd_dataset)


def test_msd_training_entry_without_image_file_is_rejected(msd_dataset):
    (msd_dataset / "imagesTr" / "case_002.nii.gz").unlink()
    with pytest.raises(InputError, match=r"case_002.nii.gz.*dataset.json.*does not exist"):
        load_dataset(msd_dataset)


def test_non_contiguous_label_values_are_kept_and_mapped_to_class_indices(phantom_dataset):
    _edit(phantom_dataset, labels={"background": 0, "liver": 1, "tumour": 3})
    ds = load_dataset(phantom_dataset)
    assert ds.class_values == [0, 1, 3] and ds.class_names == ["background", "liver", "tumour"]
    assert ds.label_mapping() == {0: 0, 1: 1, 3: 2}


def test_ignore_label_maps_to_ignore_and_is_not_a_class(phantom_dataset):
    _edit(phantom_dataset, labels={"background": 0, "a": 1, "b": 2, "ignore": 3})
    ds = load_dataset(phantom_dataset)
    assert ds.class_names == ["background", "a", "b"] and ds.num_classes == 3
    assert ds.label_mapping() == {0: 0, 1: 1, 2: 2, 3: IGNORE_LABEL}
    assert ds.evaluated_labels == {"a": 1, "b": 2, "ignore": 3}  # scored: a, b; 3 left out


@pytest.mark.parametrize("name, expected", [("CT", True), ("ct", True), ("MRI", False)])
def test_ct_is_detected_from_the_channel_name(phantom_dataset, name, expected):
    _edit(phantom_dataset, channel_names={"0": name})
    assert load_dataset(phantom_dataset).is_ct is expected


def test_legacy_modality_key_gives_the_channels(phantom_dataset):
    _edit(phantom_dataset, drop=("channel_names",), modality={"0": "CT"})
    assert load_dataset(phantom_dataset).is_ct


def test_multi_channel_cases_list_one_file_per_channel_in_order(phantom_dataset):
    images = phantom_dataset / "imagesTr"
    for case in TRAIN + VAL:
        shutil.copy(images / f"{case}_0000.nii.gz", images / f"{case}_0001.nii.gz")
    _edit(phantom_dataset, channel_names={"0": "T1", "1": "T2"})
    ds = load_dataset(phantom_dataset)
    assert ds.num_channels == 2
    assert [p.name for p in ds.cases[1].images] == ["case_001_0000.nii.gz", "case_001_0001.nii.gz"]


def test_case_without_a_channel_file_is_named(phantom_dataset):
    _edit(phantom_dataset, channel_names={"0": "T1", "1": "T2"})
    with pytest.raises(InputError, match=r"no channel 1 file .*case_000_0001.nii.gz"):
        load_dataset(phantom_dataset)


def test_case_without_its_label_file_is_named(phantom_dataset):
    (phantom_dataset / "labelsTr" / "case_003.nii.gz").unlink()
    with pytest.raises(InputError, match=r"labelsTr/case_003.nii.gz does not exist"):
        load_dataset(phantom_dataset)


def test_label_file_without_an_image_is_named(phantom_dataset):
    (phantom_dataset / "imagesTr" / "case_003_0000.nii.gz").unlink()
    _edit(phantom_dataset, drop=("splits", "labelled_order"))
    with pytest.raises(InputError, match=r"case_003.nii.gz has no image"):
        load_dataset(phantom_dataset)


def test_image_not_following_the_nnunet_naming_is_rejected(phantom_dataset):
    (phantom_dataset / "imagesTr" / "stray.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match=r"stray.nii.gz does not follow the nnU-Net naming"):
        load_dataset(phantom_dataset)


# --- bad dataset folders ----------------------------------------------------------------------

def test_missing_dataset_folder_is_reported(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_dataset(tmp_path / "nope")


def test_missing_dataset_json_is_reported(tmp_path):
    with pytest.raises(InputError, match=r"dataset.json not found"):
        load_dataset(tmp_path)


def test_invalid_json_is_reported(phantom_dataset):
    (phantom_dataset / "dataset.json").write_text('{"labels": ')
    with pytest.raises(InputError, match=r"dataset.json is not valid JSON"):
        load_dataset(phantom_dataset)


@pytest.mark.parametrize("key", ["labels", "channel_names"])
def test_missing_key_is_named(phantom_dataset, key):
    _edit(phantom_dataset, drop=(key,))
    with pytest.raises(InputError, match=rf"dataset.json is missing the key '{key}'"):
        load_dataset(phantom_dataset)


def test_json_without_layout_keys_is_rejected(phantom_dataset):
    _edit(phantom_dataset, drop=("file_ending",))
    with pytest.raises(InputError, match=r"neither 'file_ending' .* nor 'training'"):
        load_dataset(phantom_dataset)


@pytest.mark.parametrize("labels, message", [
    ({"a": 1, "b": 2}, "background = 0"),
    ({"background": 0}, "at least one class"),
    ({"background": 0, "region": [1, 2]}, "region-based"),
    # the MSD way round in an nnU-Net dataset.json: was blamed on region-based labels
    ({"0": "background", "1": "lv"}, "maps values to names .*write 'background': 0"),
    ({"background": 0, "a": 1, "b": 1}, "share a value"),
    ({"background": 0, "a": 300}, "outside 0..254"),
    ({"background": 0, "LV": 1, "lv": 2}, "unique \\(ignoring case\\).*Rename one"),
    ({"background": 0, "LV\nx": 1}, "control character"),
])
def test_invalid_labels_are_rejected(phantom_dataset, labels, message):
    _edit(phantom_dataset, labels=labels)
    with pytest.raises(InputError, match=message):
        load_dataset(phantom_dataset)


def test_dataset_without_cases_is_rejected(phantom_dataset):
    for f in (phantom_dataset / "imagesTr").iterdir():
        f.unlink()
    shutil.rmtree(phantom_dataset / "labelsTr")
    (phantom_dataset / "labelsTr").mkdir()
    with pytest.raises(InputError, match="has no cases"):
        load_dataset(phantom_dataset)


@pytest.mark.parametrize("key", ["splits", "labelled_order"])
def test_unknown_case_ids_in_splits_or_labelled_order_are_named(phantom_dataset, key):
    value = {"train": TRAIN, "val": ["case_999"]} if key == "splits" else ["case_999"]
    _edit(phantom_dataset, **{key: value})
    with pytest.raises(InputError, match=rf"dataset.json: '{key}.*unknown case\(s\) case_999"):
        load_dataset(phantom_dataset)


def test_case_in_both_train_and_val_is_rejected(phantom_dataset):
    _edit(phantom_dataset, splits={"train": TRAIN + ["case_004"], "val": VAL})
    with pytest.raises(InputError, match="case_004 are in both 'splits.train' and 'splits.val'"):
        load_dataset(phantom_dataset)


# --- splits -----------------------------------------------------------------------------------

def test_unknown_split_lists_the_available_ones(phantom_dataset):
    with pytest.raises(InputError, match="Split 'test'.*available: train, val"):
        load_dataset(phantom_dataset).split_cases("test")


def test_empty_split_is_rejected(phantom_dataset):
    _edit(phantom_dataset, splits={"train": TRAIN + VAL, "val": []})
    with pytest.raises(InputError, match="Split 'val'.*is empty"):
        load_dataset(phantom_dataset).split_cases("val")


def test_without_splits_a_deterministic_fraction_is_held_out(msd_dataset):
    ds = load_dataset(msd_dataset)
    train, val = _ids(ds.split_cases("train")), _ids(ds.split_cases("val"))
    assert len(val) == 1 and sorted(train + val) == TRAIN + VAL
    assert _ids(load_dataset(msd_dataset).split_cases("val")) == val
    other_seeds = {tuple(_ids(ds.split_cases("val", seed=s))) for s in range(10)}
    assert len(other_seeds) > 1
    assert len(ds.split_cases("val", val_fraction=0.5)) == 3


def test_split_entries_may_be_patient_prefixes(phantom_dataset):
    _acdc_like(phantom_dataset)
    _edit(phantom_dataset, splits={"train": ["patient099", "patient038"], "val": ["patient010"]})
    ds = load_dataset(phantom_dataset)
    assert _ids(ds.split_cases("val")) == ["patient010_frame01", "patient010_frame02"]


# --- labelled / unlabelled subsets ------------------------------------------------------------

def test_labelled_cases_follow_labelled_order(phantom_dataset):
    ds = load_dataset(phantom_dataset)
    order = ds.labelled_order
    assert _ids(ds.labelled_cases(2)) == order[:2]
    assert _ids(ds.labelled_cases()) == order
    assert _ids(ds.unlabelled_cases(ds.labelled_cases(1))) == sorted(set(TRAIN) - {order[0]})


def test_patient_id_in_labelled_order_selects_all_its_frames(phantom_dataset):
    ds = load_dataset(_acdc_like(phantom_dataset))
    assert _ids(ds.labelled_cases(1)) == ["patient099_frame01", "patient099_frame02"]
    assert _ids(ds.unlabelled_cases(ds.labelled_cases(1))) == [
        "patient038_frame01", "patient038_frame02"]


def test_prefix_match_needs_the_underscore(phantom_dataset):
    _acdc_like(phantom_dataset)
    _edit(phantom_dataset, labelled_order=["patient09"])
    with pytest.raises(InputError, match="unknown case"):
        load_dataset(phantom_dataset)


def test_labelled_ids_outside_the_train_split_are_rejected(phantom_dataset):
    _edit(phantom_dataset, labelled_order=["case_004", "case_000"])
    with pytest.raises(InputError, match="'case_004'.*matches no case of the train split"):
        load_dataset(phantom_dataset).labelled_cases(1)


def test_asking_for_more_labelled_cases_than_listed_is_rejected(phantom_dataset):
    with pytest.raises(InputError, match="Asked for 5 labelled cases.*only 4"):
        load_dataset(phantom_dataset).labelled_cases(5)


def test_without_labelled_order_the_first_train_cases_by_id_are_labelled(msd_dataset):
    ds = load_dataset(msd_dataset)
    train = _ids(ds.split_cases("train"))
    assert _ids(ds.labelled_cases(2)) == train[:2]


def test_labelled_list_file_with_comments(phantom_dataset, tmp_path):
    list_file = tmp_path / "labelled.txt"
    list_file.write_text("# chosen by the radiologist\ncase_003  # best case\n\ncase_001\n")
    ds = load_dataset(phantom_dataset)
    assert _ids(ds.labelled_cases(list_file=list_file)) == ["case_003", "case_001"]
    assert _ids(ds.labelled_cases(1, list_file=list_file)) == ["case_003"]


def test_labelled_list_file_with_an_unknown_id_is_rejected(phantom_dataset, tmp_path):
    list_file = tmp_path / "labelled.txt"
    list_file.write_text("case_001\ncase_042\n")
    with pytest.raises(InputError, match=r"'case_042' from .*labelled.txt matches no case"):
        load_dataset(phantom_dataset).labelled_cases(list_file=list_file)


def test_a_case_listed_twice_is_refused_in_dataset_json_and_in_a_list_file(phantom_dataset,
                                                                           tmp_path):
    """A hunter's finding: labelled_order ['case_002', 'case_002', …] with --labelled 2 trained
    on one labelled case, exit 0."""
    _edit(phantom_dataset, labelled_order=["case_002", "case_002", "case_000"])
    with pytest.raises(InputError, match="'labelled_order' lists case id 'case_002' twice"):
        load_dataset(phantom_dataset)
    _edit(phantom_dataset, labelled_order=["case_002", "case_000"])
    list_file = tmp_path / "labelled.txt"
    list_file.write_text("case_001\ncase_003\ncase_001\n")
    with pytest.raises(InputError, match=r"labelled.txt lists case id 'case_001' twice"):
        load_dataset(phantom_dataset).labelled_cases(list_file=list_file)


def test_a_list_file_saved_with_a_byte_order_mark_is_read(phantom_dataset, tmp_path):
    """A hunter's finding: Notepad's BOM made 'case_000' an id matching no case."""
    list_file = tmp_path / "labelled.txt"
    list_file.write_bytes("\ufeffcase_000\ncase_001\n".encode("utf-8"))
    ds = load_dataset(phantom_dataset)
    assert _ids(ds.labelled_cases(list_file=list_file)) == ["case_000", "case_001"]
