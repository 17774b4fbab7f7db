"""Panel entries and segment naming: model list, device line, CPU warning, classes ↔ segments."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ARCOSegmentLib import device, models, segments


# -- device ----------------------------------------------------------------------------------

GPU = device.DeviceInfo("cuda", "NVIDIA H100 80GB HBM3", "2.13.0", "12.8", False)
CPU = device.DeviceInfo.from_result({"device": "cpu", "name": "CPU", "torch": "2.13.0+cpu",
                                     "cuda_version": "", "is_cpu": True})


def test_device_line_shows_gpu_name_torch_and_cuda_versions():
    assert device.describe(GPU) == "NVIDIA H100 80GB HBM3 (cuda) · torch 2.13.0 · CUDA 12.8"
    assert device.describe(CPU) == "CPU · torch 2.13.0+cpu"


def test_cpu_runs_get_a_loud_warning_that_says_why_and_gpu_runs_none():
    assert device.cpu_warning(GPU) == ""
    assert "no GPU support" in device.cpu_warning(CPU)
    cuda_build = device.DeviceInfo("cpu", "CPU", "2.13.0", "12.8", True)
    warning = device.cpu_warning(cuda_build)
    assert "CUDA 12.8" in warning and "driver" in warning
    assert "override" in device.cpu_warning(CPU, forced=True)


def test_cpu_override_forces_the_cpu_in_arguments_and_environment():
    assert device.device_args(cpu_only=True) == ["device", "--device", "cpu"]
    assert device.device_args() == ["device", "--device", "auto"]


# -- models ----------------------------------------------------------------------------------

LISTING = {"home": "/r", "versions": [
    {"name": "liver", "version": "v1", "created": "2026-01-01T10:00:00", "kind": "base",
     "path": "/r/liver/v1"},
    {"name": "liver", "version": "v3", "created": "2026-01-05T14:03:09", "parent": "liver@v2",
     "kind": "adapted", "active": True, "path": "/r/liver/v3"},
    {"name": "liver", "version": "v2", "created": "2026-01-03T09:00:00", "parent": "liver@v1"},
]}


def test_model_list_is_newest_first_with_the_active_version_marked():
    entries = models.parse_models_list(LISTING)
    assert [e.version for e in entries] == ["v3", "v2", "v1"]
    assert entries[1].kind == "adapted"  # implied by the parent
    lines = [models.format_entry(e) for e in entries]
    assert lines[0] == "★ liver v3 · adapted from liver@v2 · 2026-01-05 14:03 · active"
    assert lines[2] == "liver v1 · base · 2026-01-01 10:00"
    assert models.active_entry(entries).ref == "liver@v3"
    assert models.active_entry(entries).path == "/r/liver/v3"


def test_versions_without_dates_sort_numerically():
    entries = models.sort_newest_first(models.ModelEntry("m", v) for v in ("v2", "v10", "v9"))
    assert [e.version for e in entries] == ["v10", "v9", "v2"]


def test_registry_commands_are_checked():
    assert models.models_args("rollback", "liver") == ["models", "rollback", "liver"]
    with pytest.raises(ValueError, match="Unknown models action"):
        models.models_args("delete", "liver")


def test_new_models_are_named_after_their_classes_within_the_registrys_rules():
    assert models.model_name_for(["Left kidney", "Liver"]) == "Left_kidney-Liver"
    assert models.model_name_for([" Blob "]) == "Blob"
    assert models.model_name_for([".hidden", "Léber/2"]) == "hidden-L_ber_2"
    # names the engine's registry refuses: a leading '-', a Windows device name
    assert models.model_name_for(["-", "LV"]) == "LV" and models.model_name_for(["-LV"]) == "LV"
    assert models.model_name_for(["Con"]) == "Con-model"
    assert models.model_name_for(["LV", "RV."]) == "LV-RV"  # no trailing '.' (Windows drops it)
    assert models.model_name_for(["aux", "x"]) == "aux-x"
    assert models.model_name_for(["?"]) == "model"
    assert len(models.model_name_for(["x" * 80, "y" * 80])) == 100


def write_model_json(folder, classes):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(json.dumps({"classes": classes}))
    return folder


def test_model_folders_are_recognised_by_their_model_json(tmp_path):
    assert models.is_model_folder(write_model_json(tmp_path / "m", []))
    assert not models.is_model_folder(tmp_path) and not models.is_model_folder(None)
    assert not models.is_model_folder(models.ModelEntry("m", "v1"))


# -- segments --------------------------------------------------------------------------------

CLASSES = [{"name": "background", "value": 0, "color": [0, 0, 0]},
           {"name": "Left kidney", "value": 3, "color": [255, 0, 0]},
           {"name": "Liver", "value": 7, "color": [0, 255, 51]}]


def test_model_classes_are_read_without_background_and_with_colours_in_0_1(tmp_path):
    classes = segments.read_model_classes(write_model_json(tmp_path / "m", CLASSES))
    assert [(c.name, c.value) for c in classes] == [("Left kidney", 3), ("Liver", 7)]
    assert classes[1].color == pytest.approx((0.0, 1.0, 0.2))
    with pytest.raises(ValueError, match="Cannot read the classes"):
        segments.read_model_classes(tmp_path)


def test_segment_ids_are_stable_and_existing_segments_with_the_class_name_are_reused(tmp_path):
    classes = segments.read_model_classes(write_model_json(tmp_path / "m", CLASSES))
    assert segments.segment_id_for("Left kidney") == "ARCOSegment_Left_kidney"
    first = segments.plan_segments(classes, existing={})
    assert [(s.segment_id, s.exists) for s in first] == [("ARCOSegment_Left_kidney", False),
                                                         ("ARCOSegment_Liver", False)]
    rerun = segments.plan_segments(classes, {s.segment_id: s.name for s in first})
    assert [s.segment_id for s in rerun] == [s.segment_id for s in first]
    assert all(s.exists for s in rerun)
    drawn = segments.plan_segments(classes, {"Segment_1": "liver "})
    assert drawn[1].segment_id == "Segment_1" and drawn[1].name == "Liver"


def test_classes_whose_ids_would_clash_get_segments_of_their_own():
    """The tester's finding 1: 'Left kidney' / 'Left-kidney' (and any two non-Latin names) got
    one ID, so the first import put no voxel in either segment."""
    red = (1.0, 0.0, 0.0)
    for names in (["Left kidney", "Left-kidney"], ["肝臓", "脾臓"]):
        classes = [segments.ClassInfo(name, value, red) for value, name in enumerate(names, 1)]
        ids = [s.segment_id for s in segments.plan_segments(classes, existing={})]
        assert ids[1] == ids[0] + "_2", ids
    classes = [segments.ClassInfo(name, value, red) for value, name in enumerate(names, 1)]
    rerun = segments.plan_segments(classes, {"ARCOSegment_class": "肝臓",
                                             "ARCOSegment_class_2": "脾臓"})
    assert [(s.segment_id, s.exists) for s in rerun] == [("ARCOSegment_class", True),
                                                         ("ARCOSegment_class_2", True)]


def test_a_result_segment_the_user_renamed_is_kept_not_overwritten():
    """The tester's finding 12: 'Liver - first run (keep)' was reused by its ID and renamed
    back to 'Liver' by the next Segment."""
    liver = segments.ClassInfo("Liver", 7, (0.0, 1.0, 0.2))
    spec, = segments.plan_segments([liver], {"ARCOSegment_Liver": "Liver - first run (keep)"})
    assert (spec.segment_id, spec.exists) == ("ARCOSegment_Liver_2", False)


def test_result_label_values_map_to_segment_order(tmp_path):
    classes = segments.read_model_classes(write_model_json(tmp_path / "m", CLASSES))
    labels = np.array([[[0, 3, 7, 7]]], np.uint8)
    assert segments.labels_to_indices(labels, classes).tolist() == [[[0, 1, 2, 2]]]


def test_exported_segment_indices_become_the_classes_label_values(tmp_path):
    classes = segments.read_model_classes(write_model_json(tmp_path / "m", CLASSES))
    existing = {"ARCOSegment_Liver": "Liver", "Segment_1": "left kidney", "x": "Tumour"}
    values = segments.segment_values(classes, existing)
    assert values == [("Segment_1", 3), ("ARCOSegment_Liver", 7)]
    indices = np.array([[[0, 1, 2, 2]]], np.uint8)
    assert segments.indices_to_values(indices, [3, 7]).tolist() == [[[0, 3, 7, 7]]]
    assert segments.indices_to_values(indices, [3, 300]).dtype == np.uint16
    with pytest.raises(ValueError, match="segment index 2"):
        segments.indices_to_values(indices, [3])


def test_annotation_segments_match_classes_by_name():
    matched = segments.match_annotation_segments({"s1": "liver", "s2": "Left Kidney"},
                                                 ["Left kidney", "Liver"])
    assert matched == [("s1", 2), ("s2", 1)]
    with pytest.raises(ValueError, match="'Tumour' match no class"):
        segments.match_annotation_segments({"s1": "Liver", "s2": "Tumour"}, ["Liver"])
    with pytest.raises(ValueError, match="no segment named"):
        segments.match_annotation_segments({}, ["Liver"])
