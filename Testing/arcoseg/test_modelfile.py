"""Model folders: save/load round trip, atomic replacement, and every refusal of a bad folder."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import pytest
import safetensors.torch
import torch

from arcoseg import modelfile
from arcoseg.errors import DeviceError, ModelFileError, OutputError
from arcoseg.model_metadata import FORMAT_VERSION, ModelMetadata, default_colors, make_classes
from arcoseg.modelfile import check_classes, load_metadata, load_model, model_info, save_model
from arcoseg.networks import NetworkConfig, build_model

CLASSES = ["background", "RV", "myocardium", "LV"]
PLAN = {"dims": 2, "target_spacing": [5.0, 1.5, 1.5], "normalization": "zscore",
        "label_values": [0, 1, 2, 3], "patch_size": [32, 32], "slice_axis": 0}


def _config(**changes) -> NetworkConfig:
    settings = dict(arch="unet2d", in_channels=1, num_classes=4, features=(4, 8, 16, 32, 64),
                    head_dim=8)
    return NetworkConfig(**{**settings, **changes})


def _metadata(config: NetworkConfig | None = None) -> ModelMetadata:
    return ModelMetadata(network=config or _config(), classes=make_classes(CLASSES),
                         plan=PLAN,
                         provenance={"dataset": "ACDC", "labelled_cases": 3, "dice": float("nan")})


def _trained_model(config: NetworkConfig | None = None):
    torch.manual_seed(0)
    model = build_model(config or _config())
    model.train()
    model(torch.randn(2, 1, 32, 32))  # moves the BatchNorm running statistics off their init
    return model.eval()


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    save_model(folder, _trained_model(), _metadata())
    return folder


def _rewrite_json(folder: Path, **changes) -> None:
    path = folder / "model.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


# --------------------------------------------------------------------------------- round trips


def test_saved_model_loads_with_identical_outputs_and_embeddings(tmp_path: Path) -> None:
    model = _trained_model()
    save_model(tmp_path / "m", model, _metadata())
    loaded, metadata = load_model(tmp_path / "m")
    assert not loaded.training
    x = torch.randn(1, 1, 32, 32)
    for mine, theirs in zip(model.forward_train(x), loaded.forward_train(x)):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0)
    assert metadata.class_names == CLASSES


def test_metadata_round_trips_and_gains_checksum_and_provenance_stamp(saved: Path) -> None:
    metadata = load_metadata(saved)
    expected = _metadata()
    assert metadata.network == expected.network == _config().to_dict()
    assert metadata.network_config == _config()
    assert metadata.classes == expected.classes and metadata.plan == expected.plan
    assert metadata.format_version == FORMAT_VERSION
    assert len(metadata.weights_sha256) == 64
    assert metadata.provenance["dataset"] == "ACDC"
    assert metadata.provenance["dice"] is None  # NaN is written as null: strict JSON
    assert {"arcoseg_version", "created"} <= metadata.provenance.keys()
    assert ModelMetadata.from_dict(metadata.to_dict()) == metadata


def test_a_state_dict_can_be_saved_instead_of_a_model(tmp_path: Path) -> None:
    model = _trained_model()
    save_model(tmp_path / "m", model.state_dict(), _metadata())
    loaded, _ = load_model(tmp_path / "m")
    x = torch.randn(1, 1, 32, 32)
    torch.testing.assert_close(model(x), loaded(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["model.json", "model.safetensors"])
def test_a_model_file_path_stands_for_its_folder(saved: Path, name: str) -> None:
    _, metadata = load_model(saved / name)
    assert metadata.class_names == CLASSES


def test_saving_over_a_model_replaces_it(saved: Path) -> None:
    config = _config(head_dim=None)
    save_model(saved, _trained_model(config), _metadata(config))
    assert load_metadata(saved).network_config.head_dim is None
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model"]


def test_model_info_summarises_the_folder(saved: Path) -> None:
    info = model_info(saved)
    assert info["arch"] == "unet2d" and info["spatial_dims"] == 2 and info["head_dim"] == 8
    assert [c["name"] for c in info["classes"]] == CLASSES
    assert info["parameters"] == sum(p.numel() for p in build_model(_config()).parameters())
    assert info["weights_bytes"] == (saved / "model.safetensors").stat().st_size
    json.dumps(info)


def test_default_colors_start_black_and_stay_distinct() -> None:
    colors = default_colors(40)
    assert colors[0] == [0, 0, 0] and colors[1] == [255, 0, 0]
    assert len({tuple(c) for c in colors}) == 40
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in colors)
    assert default_colors(3) == colors[:3]


# ------------------------------------------------------------------------------ metadata rules


def test_metadata_accepts_a_network_config_or_its_dict() -> None:
    by_config = ModelMetadata(network=_config(), classes=make_classes(CLASSES))
    by_dict = ModelMetadata(network=_config().to_dict(), classes=make_classes(CLASSES))
    assert by_config == by_dict and by_dict.network["in_channels"] == 1


def test_metadata_rejects_a_bad_network() -> None:
    with pytest.raises(ModelFileError, match="Unknown network architecture"):
        ModelMetadata(network={"arch": "x", "in_channels": 1, "num_classes": 4},
                      classes=make_classes(CLASSES))


@pytest.mark.parametrize("classes, message", [
    (make_classes(CLASSES[:3]), "3 classes are described"),
    (make_classes(["bg", "a", "a", "b"]), "names must be unique"),
    (make_classes(CLASSES, values=[0, 1, 1, 2]), "values must be unique"),
    ([{"name": "bg", "value": 0}] + make_classes(CLASSES)[1:], "exactly the keys"),
    (make_classes(CLASSES, colors=[[0, 0, 0], [256, 0, 0], [0, 0, 1], [0, 1, 0]]), "'color'"),
])
def test_metadata_rejects_inconsistent_classes(classes, message: str) -> None:
    with pytest.raises(ModelFileError, match=message):
        ModelMetadata(network=_config(), classes=classes)


def test_check_classes_names_both_lists_on_mismatch() -> None:
    metadata = _metadata()
    check_classes(metadata, CLASSES, "Fine-tuning")
    with pytest.raises(ModelFileError, match=r"Fine-tuning: .*'LV'\].*\['background', 'LA'\]"):
        check_classes(metadata, ["background", "LA"], "Fine-tuning")


# ------------------------------------------------------------------------------------ refusals


def test_missing_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "nowhere")


def test_folder_without_model_files_is_refused_and_pickles_in_it_are_named(tmp_path: Path) -> None:
    (tmp_path / "best.pth").write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"model.safetensors, model.json missing.*best.pth"
                                             r".*not loaded, for safety"):
        load_model(tmp_path)


def test_pickle_checkpoint_given_as_the_model_is_refused(tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(1)}, tmp_path / "model.pt")
    with pytest.raises(ModelFileError, match="is a pickle checkpoint.*convert|Convert"):
        load_model(tmp_path / "model.pt")


def test_other_file_given_as_the_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ModelFileError, match="is a file, not a model folder"):
        load_model(tmp_path / "notes.txt")


def test_invalid_json_is_refused(saved: Path) -> None:
    (saved / "model.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="model.json is not valid JSON"):
        load_metadata(saved)


def test_metadata_missing_a_key_is_refused(saved: Path) -> None:
    data = json.loads((saved / "model.json").read_text())
    del data["classes"]
    (saved / "model.json").write_text(json.dumps(data))
    with pytest.raises(ModelFileError, match=r"lacks \['classes'\]"):
        load_model(saved)


@pytest.mark.parametrize("change,message", [
    ({"target_spacing": [2.0, float("inf"), 1.0]}, "Target spacing must be 3 positive"),
    ({"target_spacing": [float("nan"), 1.0, 1.0]}, "Target spacing must be 3 positive"),
    ({"normalization": "ct", "ct_clip": [100, -100], "ct_mean": 0, "ct_std": 1},
     "ct_clip must be two finite numbers, low < high"),
    ({"normalization": "ct", "ct_clip": [-100, 100], "ct_mean": 0, "ct_std": 0},
     "ct_std finite and > 0"),
    ({"label_values": [0, 2, 1, 3]}, r"label_values \[0, 2, 1, 3\] disagree with the classes"),
    ({"label_values": [0, 1, 1, 3]}, "label_values must be distinct values 0..254"),
    ({"patch_size": [20, 20]}, r"patch_size \(20, 20\) is not a multiple of 16"),
    # the tester's R5: hand-edited types were converted (dims 2.7 read as 2), now refused
    ({"dims": 2.7}, "dims must be a whole number, not 2.7"),
    ({"patch_size": [48.9, 48]}, "patch_size must be a whole number, not 48.9"),
    ({"slice_axis": "1"}, "slice_axis must be a whole number, not '1'"),
    ({"target_spacing": ["1", 1.0, 1.0]}, "target_spacing must be a number, not '1'"),
    # the tester's R5: a 3D plan on a 2D network crashed segment (exit 1)
    ({"dims": 3, "patch_size": [16, 32, 32]}, r"plan is for 3D input but the network \(unet2d\)"),
])
def test_a_plan_that_cannot_preprocess_or_contradicts_the_classes_is_refused(saved, change,
                                                                              message):
    """A hand-edited plan gave an all-background segmentation (inf spacing), a traceback (nan,
    a patch the network cannot take) or garbage (an inverted CT window) with exit 0; each is
    refused when the file is read, so `models import` refuses it too."""
    _rewrite_json(saved, plan={**PLAN, **change})
    with pytest.raises(ModelFileError, match=message):
        load_model(saved)


def test_a_model_json_saved_with_a_byte_order_mark_is_read(saved: Path) -> None:
    """The tester's R5 (LOW): Windows Notepad's UTF-8 BOM made model.json 'not valid JSON'."""
    path = saved / "model.json"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_model(saved)[1].class_names == CLASSES


def test_the_checksum_is_read_in_either_case_and_must_be_hexadecimal(saved: Path) -> None:
    """An upper-case checksum (written by another tool) is the same digest, not a corrupt
    file; 64 characters that are no hex digits are refused as what they are."""
    digest = json.loads((saved / "model.json").read_text())["weights_sha256"]
    _rewrite_json(saved, weights_sha256=digest.upper())
    assert load_model(saved)[1].weights_sha256 == digest
    _rewrite_json(saved, weights_sha256="g" * 64)
    with pytest.raises(ModelFileError, match="'weights_sha256' must be a 64-digit hex string"):
        load_model(saved)


def test_a_class_value_that_marks_unannotated_voxels_is_refused(saved: Path) -> None:
    classes = make_classes(CLASSES, [0, 1, 2, 255])
    _rewrite_json(saved, classes=classes, plan={**PLAN, "label_values": [0, 1, 2, 255]})
    with pytest.raises(ModelFileError, match=r"'value' must be an integer 0..254 \(255 marks"):
        load_model(saved)


def test_newer_format_version_asks_for_an_upgrade(saved: Path) -> None:
    _rewrite_json(saved, format_version=FORMAT_VERSION + 1, network={"arch": "future"})
    with pytest.raises(ModelFileError, match="newer ARCOSegment.*Upgrade"):
        load_model(saved)


def test_one_changed_byte_in_the_weights_is_detected(saved: Path) -> None:
    weights = saved / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="corrupt or was modified"):
        load_model(saved)


class _Exploit:
    """Unpickling this creates the marker file: proof that something was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("writer", [
    lambda obj, path: path.write_bytes(pickle.dumps(obj)),
    lambda obj, path: torch.save({"state_dict": obj}, path),
], ids=["raw-pickle", "torch-save-zip"])
def test_pickle_in_place_of_safetensors_is_refused_without_unpickling(
        saved: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer) -> None:
    marker = tmp_path / "unpickled"
    writer(_Exploit(marker), saved / "model.safetensors")

    def forbidden(*args, **kwargs):
        raise AssertionError("something was unpickled")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    with pytest.raises(ModelFileError, match="not a safetensors file.*not loaded"):
        load_model(saved)
    assert not marker.exists()


def test_unparseable_weights_with_matching_checksum_are_refused(saved: Path) -> None:
    weights = saved / "model.safetensors"
    data = weights.read_bytes()[:200]
    weights.write_bytes(data)
    _rewrite_json(saved, weights_sha256=hashlib.sha256(data).hexdigest())
    with pytest.raises(ModelFileError, match="not a valid safetensors file"):
        load_model(saved)


def test_weights_not_fitting_the_network_are_refused(saved: Path) -> None:
    _rewrite_json(saved, network=_config(num_classes=3, head_dim=None).to_dict(),
                  classes=make_classes(CLASSES[:3]), plan={**PLAN, "label_values": [0, 1, 2]})
    with pytest.raises(ModelFileError, match=r"do not fit.*unexpected 19 .*wrong shape 2 "
                                             r"\(backbone.out_conv.conv.weight \(4, 4, 3, 3\) "
                                             r"instead of \(3, 4, 3, 3\)"):
        load_model(saved)


def test_saving_weights_that_do_not_fit_the_metadata_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="The weights to save do not fit.*missing 19"):
        save_model(tmp_path / "m", _trained_model(_config(head_dim=None)), _metadata())
    assert not (tmp_path / "m").exists()


def test_loading_on_an_unknown_device_is_a_device_error(saved: Path) -> None:
    with pytest.raises(DeviceError, match="Cannot put the model on device 'nodevice'"):
        load_model(saved, device="nodevice")


# ------------------------------------------------------------------------------- atomic saving


def _fail(*args, **kwargs):
    raise OSError(28, "No space left on device")


def test_failed_save_keeps_the_previous_model_and_leaves_no_temporary_folder(
        saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    monkeypatch.setattr(modelfile.safetensors.torch, "save", _fail)
    with pytest.raises(OutputError, match="No space left"):
        save_model(saved, _trained_model(), _metadata())
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model"]


def test_failed_swap_puts_the_previous_model_back(saved: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    real_rename = os.rename

    def rename(src, dst):
        if str(src).endswith(".tmp"):  # the new folder moving into place
            _fail()
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OutputError):
        save_model(saved, _trained_model(), _metadata())
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model"]


def _run_folder(tmp_path: Path) -> Path:
    """A training run folder: other content next to the model files."""
    run = tmp_path / "run"
    (run / "training").mkdir(parents=True)
    (run / "training" / "metrics.jsonl").write_text("{}\n")
    (run / "checkpoint.json").write_text("{}")
    return run


def test_saving_into_a_run_folder_replaces_only_the_model_files(tmp_path: Path) -> None:
    run = _run_folder(tmp_path)
    save_model(run, _trained_model(), _metadata())
    config = _config(head_dim=None)
    save_model(run, _trained_model(config), _metadata(config))
    assert load_model(run)[1].network_config.head_dim is None
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint.json", "model.json", "model.safetensors", "training"]
    assert (run / "training" / "metrics.jsonl").read_text() == "{}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_failed_save_into_a_run_folder_puts_the_previous_model_files_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _run_folder(tmp_path)
    save_model(run, _trained_model(), _metadata())
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    real_rename = os.rename

    def rename(src, dst):
        if Path(src).name == "model.json" and Path(src).parent != run:  # the last step
            _fail()
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OutputError):
        save_model(run, _trained_model(_config(head_dim=None)), _metadata(_config(head_dim=None)))
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    load_model(run)


def test_a_file_at_the_model_path_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        save_model(tmp_path / "m", _trained_model(), _metadata())


# ----------------------------------------------------------------------- non-finite weights


def _poison(folder: Path, value: float) -> str:
    """Put `value` into one weight and record the new checksum, as a corrupt copy would."""
    weights = folder / "model.safetensors"
    tensors = safetensors.torch.load(weights.read_bytes())
    name = sorted(k for k, v in tensors.items() if v.is_floating_point())[3]
    tensors[name].view(-1)[0] = value
    data = safetensors.torch.save(tensors, metadata={"format": "pt"})
    weights.write_bytes(data)
    _rewrite_json(folder, weights_sha256=hashlib.sha256(data).hexdigest())
    return name


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_like_any_corrupt_model(saved: Path, value) -> None:
    """Issue 17 item 11: they loaded and segmented with exit 0."""
    name = _poison(saved, value)
    for read in (load_model, modelfile.model_info):
        with pytest.raises(ModelFileError, match=rf"model.safetensors hold NaN or infinite "
                                                 rf"values in 1 tensor\(s\) \({name}\)\. The "
                                                 "model is corrupt"):
            read(saved)


def test_non_finite_weights_are_never_saved(tmp_path: Path) -> None:
    model = _trained_model()
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(ModelFileError, match="weights to save hold NaN.*Training diverged"):
        save_model(tmp_path / "m", model, _metadata())
    assert not (tmp_path / "m").exists()
