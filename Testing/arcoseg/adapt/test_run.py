"""`arcoseg adapt` end to end: a new version from a few slices, checked, cancellable."""

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import arcoseg.adapt.check as check_module
import arcoseg.io.images as images_module
import arcoseg.registry.store as registry_store
import arcoseg.registry.versions as registry_versions
from arcoseg.adapt import schedule
from arcoseg.adapt.prior import ParentPriorSettings, PriorSettings
from arcoseg.adapt.run import AdaptRequest, adapt, fingerprint
from arcoseg.cli import main
from arcoseg.data.intensity import DEFAULT_JITTER
from arcoseg.errors import Cancelled, InputError, ModelFileError, OutputError
from arcoseg.progress import Reporter
from arcoseg.registry import Registry, RegistryError
from arcoseg.train.trainer import Trainer


def _request(case, tmp_path, **kw):
    base = dict(images=[case["image"]], annotations=[case["ann"]], classes=["a", "b"],
                budget=600, iterations=3, device="cpu", output=tmp_path / "seg.nii.gz")
    return AdaptRequest(**(base | kw))


def test_adapt_from_scratch_writes_a_version_a_segmentation_and_suggestions(case, tmp_path):
    log = io.StringIO()
    result = adapt(_request(case, tmp_path), Reporter(log), lambda: False)
    assert "on 3 annotated slice(s) (slice 16 held out for the check until late)" in log.getvalue()
    assert result["axis"] == 1 and result["annotated_slices"] == [[10, 16, 22]]
    # Adapt's new head: 64-dim at 1/2 of the input (arcoseg train's 2D heads are at 1/4)
    assert (result["model"]["head_dim"], result["model"]["head_stride"]) == (64, 2)
    check = result["heldout"]
    assert check["slice"] == 16 and check["parent_dice"] is None
    assert 0 <= check["adapted_dice"] < check["copy_dice"] <= 1  # 3 iterations: worse than a copy
    assert check["activated"] is False and "not activated" in check["note"]
    # the written segmentation fuses the model with the drawing: at least as good as the model
    # alone on the held-out slice, and the drawn slices are the drawing itself
    assert check["output_dice"] >= check["adapted_dice"]
    assert "model and drawing fused" in check["note"]
    assert len(result["suggested_slices"]) <= 3
    assert not set(result["suggested_slices"]) & {10, 16, 22}
    seg = sitk.ReadImage(str(tmp_path / "seg.nii.gz"))
    src = sitk.ReadImage(str(case["image"]))
    assert seg.GetSize() == src.GetSize() and seg.GetOrigin() == src.GetOrigin()
    # every drawn slice as drawn, the held-out one (16) too: it is the user's drawing
    drawn = sitk.GetArrayFromImage(sitk.ReadImage(str(case["ann"])))[:, [10, 16, 22]]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(seg)[:, [10, 16, 22]], drawn)
    versions = Registry().list()
    assert [(v["name"], v["version"], v["active"]) for v in versions] == [("adapted", "v1", False)]
    meta = json.loads((Registry().resolve("adapted@v1") / "model.json").read_text())
    assert meta["plan"]["slice_axis"] == 1
    assert meta["provenance"]["images"][0]["annotated_slices"] == [10, 16, 22]
    assert meta["provenance"]["held_out"]["slice"] == 16


def test_the_held_out_slice_joins_training_after_the_check_is_taken(case, tmp_path):
    result = adapt(_request(case, tmp_path, iterations=20, early_stop=False),
                   Reporter(quiet=True), lambda: False)
    check = result["heldout"]
    # scored with the weights of iteration 15 (3/4 of 20), then trained on slices 10, 16, 22
    assert check["joined_training_at"] == 15 and result["iterations"] == 20
    assert "before the held-out slice joined training" in check["note"]
    meta = json.loads((Registry().resolve("adapted@v1") / "model.json").read_text())
    assert meta["provenance"]["held_out"]["joined_training_at"] == 15


def test_adapting_a_registry_model_adds_a_child_and_leaves_the_parent_untouched(case, tmp_path):
    first = adapt(_request(case, tmp_path, holdout=False), Reporter(quiet=True), lambda: False)
    assert first["heldout"]["note"] == ("no held-out check (--no-holdout): every annotated "
                                        "slice was trained on")  # not "single annotated slice"
    parent_dir = Registry().resolve("adapted@v1")
    before = (parent_dir / "model.safetensors").read_bytes()
    result = adapt(_request(case, tmp_path, classes=None, model="adapted"), Reporter(quiet=True),
                   lambda: False)
    assert result["model"]["version"] == "v2" and result["model"]["parent"] == "adapted@v1"
    assert result["heldout"]["parent_dice"] is not None
    assert (parent_dir / "model.safetensors").read_bytes() == before


def test_from_scratch_half_is_supervised_and_from_a_parent_none_both_with_adamw(case, tmp_path):
    def options(name):
        meta = json.loads((Registry().resolve(name) / "model.json").read_text())
        found = meta["provenance"]["options"]
        return found["warmup_fraction"], found["optimizer"], found["lr"]

    adapt(_request(case, tmp_path, holdout=False), Reporter(quiet=True), lambda: False)
    assert options("adapted@v1") == (schedule.SCRATCH_WARMUP, "adamw", 0.001)
    assert schedule.SCRATCH_WARMUP == 0.5
    adapt(_request(case, tmp_path, classes=None, model="adapted"), Reporter(quiet=True),
          lambda: False)
    assert options("adapted@v2") == (0.0, "adamw", 0.001)
    adapt(_request(case, tmp_path, name="sup", method="supervised"), Reporter(quiet=True),
          lambda: False)
    assert options("sup@v1")[0] == 0.0  # nothing semi-supervised to warm up for
    adapt(_request(case, tmp_path, name="asked", warmup=0.25, optimizer="sgd", lr=0.02),
          Reporter(quiet=True), lambda: False)
    assert options("asked@v1") == (0.25, "sgd", 0.02)


def test_intensity_augmentation_is_off_unless_the_request_asks_for_it(case, tmp_path):
    for name, jitter in (("plain", None), ("jittered", DEFAULT_JITTER)):
        extra = {} if jitter is None else {"jitter": jitter}
        adapt(_request(case, tmp_path, name=name, **extra), Reporter(quiet=True), lambda: False)
    for name, expected in (("plain", 0.0), ("jittered", DEFAULT_JITTER)):
        meta = json.loads((Registry().resolve(f"{name}@v1") / "model.json").read_text())
        assert meta["provenance"]["options"]["jitter"] == expected


def test_a_model_worse_than_copying_is_saved_but_not_activated(case, tmp_path, monkeypatch):
    adapt(_request(case, tmp_path, holdout=False), Reporter(quiet=True), lambda: False)
    monkeypatch.setattr(check_module, "copy_dice", lambda *a: 1.0)  # a perfect copy
    result = adapt(_request(case, tmp_path, classes=None, model="adapted"), Reporter(quiet=True),
                   lambda: False)
    assert result["heldout"]["activated"] is False and result["heldout"]["copy_dice"] == 1.0
    assert str(Registry().active("adapted")) == "adapted@v1"
    assert {v["version"] for v in Registry().list()} == {"v1", "v2"}


def test_from_a_model_the_copys_weight_and_the_parents_margin_follow_the_check(
        case, tmp_path, monkeypatch):
    monkeypatch.setattr(check_module, "slice_dice", lambda *a: 0.9)  # the model (and parent)
    monkeypatch.setattr(check_module, "copy_dice", lambda *a: 0.8)  # misses twice as much
    margins = []
    compare = check_module.compare
    monkeypatch.setattr(check_module, "compare", lambda *a, **kw: margins.append(a[-1]) or
                        compare(*a, **kw))
    scratch = adapt(_request(case, tmp_path), Reporter(quiet=True), lambda: False)
    assert scratch["heldout"]["fusion_weight"] == 0.5  # from scratch: the fixed weight
    child = adapt(_request(case, tmp_path, classes=None, model="adapted"), Reporter(quiet=True),
                  lambda: False)
    assert child["heldout"]["fusion_weight"] == pytest.approx(0.1 / (0.1 + 0.2))
    meta = json.loads((Registry().resolve("adapted@v2") / "model.json").read_text())
    assert meta["provenance"]["held_out"]["fusion_weight"] == pytest.approx(1 / 3)
    adapt(_request(case, tmp_path, classes=None, model="adapted",
                   parent_prior=ParentPriorSettings(strength=0.0)),
          Reporter(quiet=True), lambda: False)
    # the margin only from a parent and with the parent prior on (check.PARENT_MARGIN)
    assert margins == [0.0, check_module.PARENT_MARGIN, 0.0]


def test_name_puts_the_adapted_version_under_its_own_model_and_the_parent_stays_active(
        case, tmp_path):
    adapt(_request(case, tmp_path, holdout=False), Reporter(quiet=True), lambda: False)
    result = adapt(_request(case, tmp_path, classes=None, model="adapted", name="trial",
                            holdout=False), Reporter(quiet=True), lambda: False)
    model = result["model"]
    assert (model["name"], model["version"], model["parent"]) == ("trial", "v1", "adapted@v1")
    assert str(Registry().active("adapted")) == "adapted@v1"
    assert str(Registry().active("trial")) == "trial@v1"


def _no_training(monkeypatch):
    def refuse(self):
        raise AssertionError("training started")
    monkeypatch.setattr(Trainer, "run", refuse)


def test_a_name_that_holds_other_classes_is_refused_before_training(case, tmp_path,
                                                                    monkeypatch):
    adapt(_request(case, tmp_path, holdout=False), Reporter(quiet=True), lambda: False)
    _no_training(monkeypatch)
    with pytest.raises(ModelFileError, match=r"classes \['background', 'a', 'b'\] differ"):
        adapt(_request(case, tmp_path, classes=["x", "y"]), Reporter(quiet=True), lambda: False)
    assert [v["ref"] for v in Registry().list()] == ["adapted@v1"]


def test_an_empty_name_is_refused_not_taken_for_the_default(case, tmp_path, monkeypatch):
    adapt(_request(case, tmp_path, holdout=False), Reporter(quiet=True), lambda: False)
    _no_training(monkeypatch)
    with pytest.raises(RegistryError, match="name"):
        adapt(_request(case, tmp_path, classes=None, model="adapted", name=""),
              Reporter(quiet=True), lambda: False)
    assert [v["ref"] for v in Registry().list()] == ["adapted@v1"]


@pytest.mark.parametrize("broken", ["probe", "lock"])
def test_a_registry_that_cannot_be_written_is_refused_before_training(case, tmp_path,
                                                                      monkeypatch, broken):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    # simulated: the tests may run as root, who can write into a read-only folder
    if broken == "probe":
        mkstemp = registry_versions.tempfile.mkstemp
        monkeypatch.setattr(registry_versions.tempfile, "mkstemp", lambda *args, **kw: (
            denied() if Path(kw["dir"]) == Registry().home else mkstemp(*args, **kw)))
    else:
        monkeypatch.setattr(registry_store.FileLock, "acquire", denied)
    _no_training(monkeypatch)
    with pytest.raises(OutputError, match="Cannot write in the model registry folder .*"
                                          "ARCOSEG_HOME"):
        adapt(_request(case, tmp_path), Reporter(quiet=True), lambda: False)
    assert not (tmp_path / "seg.nii.gz").exists()


def test_more_classes_than_a_label_map_holds_are_refused(case, tmp_path):
    with pytest.raises(InputError, match="at most 254 besides background"):
        _request(case, tmp_path, classes=[f"k{i}" for i in range(255)])
    assert len(_request(case, tmp_path, classes=[f"k{i}" for i in range(254)]).classes) == 254


@pytest.mark.parametrize("classes", ["a,a", "LV,lv", "a,", "background,a", "Background,a", "",
                                     "lv\nx,myo"])
def test_class_names_a_model_cannot_hold_are_refused_before_any_work(case, tmp_path, capsys,
                                                                     monkeypatch, classes):
    _no_training(monkeypatch)
    code = main(["adapt", "--image", str(case["image"]), "--annotations", str(case["ann"]),
                 "--from-scratch", "--classes", classes, "--progress", "json",
                 "-o", str(tmp_path / "seg.nii.gz")])
    error = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 2 and error["event"] == "error" and f"--classes {classes}" in error["message"]
    assert Registry().list() == [] and not (tmp_path / "seg.nii.gz").exists()


def test_a_segmentation_that_cannot_be_written_leaves_no_model_version(case, tmp_path,
                                                                      monkeypatch):
    def broken(image, path):
        raise RuntimeError("disk full")
    monkeypatch.setitem(images_module._IMAGE_WRITERS, ".nii.gz", broken)
    with pytest.raises(OutputError, match="disk full"):
        adapt(_request(case, tmp_path), Reporter(quiet=True), lambda: False)
    assert Registry().list() == [] and list(tmp_path.glob("seg*")) == []


def test_a_version_that_cannot_be_committed_leaves_no_segmentation(case, tmp_path, monkeypatch):
    def broken(self, *args, **kwargs):
        raise OSError("index not writable")
    monkeypatch.setattr(Registry, "_commit", broken)
    with pytest.raises(OSError, match="index not writable"):
        adapt(_request(case, tmp_path), Reporter(quiet=True), lambda: False)
    assert list(tmp_path.glob("seg*")) == []


def test_a_dicom_series_folder_is_fingerprinted_by_its_files(tmp_path):
    series = tmp_path / "series"
    series.mkdir()
    for name, data in (("b.dcm", b"slice 2"), ("a.dcm", b"slice 1")):
        (series / name).write_bytes(data)
    first = fingerprint(series)
    assert first == fingerprint(series) and len(first) == 64
    (series / "b.dcm").write_bytes(b"slice 2, changed")
    assert fingerprint(series) != first
    (tmp_path / "one.nii.gz").write_bytes(b"x")
    assert fingerprint(tmp_path / "one.nii.gz") == hashlib.sha256(b"x").hexdigest()


def test_cancel_leaves_the_registry_unchanged(case, tmp_path):
    with pytest.raises(Cancelled):
        adapt(_request(case, tmp_path), Reporter(quiet=True), lambda: True)
    assert Registry().list() == []
    assert not (tmp_path / "seg.nii.gz").exists()


def test_a_stop_after_training_still_leaves_the_registry_and_outputs_unchanged(
        case, tmp_path, monkeypatch):
    """The tester's finding: Ctrl-C while the adapted model segmented (after its last
    iteration) was ignored: exit 0, a new version, the output written."""
    import arcoseg.adapt.run as run_module

    asked = []
    segment_and_check = run_module.segment_and_check

    def stop_asked_while_segmenting(*args, **kwargs):
        asked.append(True)  # Ctrl-C now
        return segment_and_check(*args, **kwargs)
    monkeypatch.setattr(run_module, "segment_and_check", stop_asked_while_segmenting)
    with pytest.raises(Cancelled, match="registry is unchanged"):
        adapt(_request(case, tmp_path), Reporter(quiet=True), lambda: bool(asked))
    assert asked and Registry().list() == []
    assert not (tmp_path / "seg.nii.gz").exists()


def test_sigint_stops_the_command_with_the_cancel_exit_code(case, tmp_path):
    cmd = [sys.executable, "-m", "arcoseg", "adapt", "--image", str(case["image"]),
           "--annotations", str(case["ann"]), "--from-scratch", "--classes", "a,b",
           "--iterations", "100000", "--budget", "3600", "--device", "cpu",
           "-o", str(tmp_path / "seg.nii.gz"), "--progress", "json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    for line in proc.stdout:
        if json.loads(line)["event"] == "progress":
            break
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rest = proc.stdout.read()
    assert proc.wait(timeout=30) == 3
    assert time.monotonic() - sent < 10
    assert json.loads(rest.strip().splitlines()[-1])["event"] == "error"
    assert Registry().list() == [] and not (tmp_path / "seg.nii.gz").exists()


@pytest.mark.parametrize("options,message", [
    (["--model", "x", "--classes", "a"], "--classes goes with --from-scratch only"),
    (["--from-scratch"], "--from-scratch needs --classes NAME,NAME"),
    (["--from-scratch", "--classes", "a", "--parent-prior", "0.5"],
     "--parent-prior goes with --model only"),
])
def test_cli_refuses_options_of_the_other_source(case, capsys, options, message):
    code = main(["adapt", "--image", str(case["image"]), "--annotations", str(case["ann"]),
                 *options, "--progress", "json"])
    error = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 2 and message in error["message"]


@pytest.mark.parametrize("warmup", ["1", "-0.2"])
def test_cli_refuses_a_warm_up_that_is_not_a_fraction(case, capsys, warmup):
    with pytest.raises(SystemExit) as exit_info:  # refused by argparse, before any work
        main(["adapt", "--image", str(case["image"]), "--annotations", str(case["ann"]),
              "--from-scratch", "--classes", "a,b", "--warmup", warmup, "--progress", "json"])
    assert exit_info.value.code == 2 and "--warmup" in capsys.readouterr().out
    assert Registry().list() == []


def test_a_folder_parent_is_imported_once_and_reused(case, tmp_path):
    first = adapt(_request(case, tmp_path), Reporter(quiet=True), lambda: False)
    folder = tmp_path / "exported"
    Registry().export("adapted@v1", folder)
    for _ in range(2):
        adapt(_request(case, tmp_path, classes=None, model=str(folder)), Reporter(quiet=True),
              lambda: False)
    versions = {(v["name"], v["version"], v.get("parent")) for v in Registry().list()}
    assert first["model"]["ref"] == "adapted@v1"
    assert {v for _, v, _ in versions} == {"v1", "v2", "v3"}  # no second import of the folder


def test_a_folder_with_the_same_weights_but_an_edited_model_json_is_its_own_parent(case,
                                                                                   tmp_path):
    """The tester's finding: a copy with classes renamed in model.json was taken for the
    registered model with the same weights, and the child got the registered classes."""
    adapt(_request(case, tmp_path), Reporter(quiet=True), lambda: False)
    folder = tmp_path / "renamed"
    Registry().export("adapted@v1", folder)
    meta = json.loads((folder / "model.json").read_text())
    meta["classes"][1]["name"], meta["classes"][2]["name"] = "b2", "a2"
    (folder / "model.json").write_text(json.dumps(meta))
    result = adapt(_request(case, tmp_path, classes=None, model=str(folder), name="renamed"),
                   Reporter(quiet=True), lambda: False)
    assert result["model"]["ref"] == "renamed@v2"  # v1: the folder, imported
    assert [c["name"] for c in result["model"]["classes"]] == ["background", "b2", "a2"]


def test_a_3d_parent_is_fine_tuned_on_patches_around_the_annotated_slices(case, tmp_path):
    from arcoseg.data.synthetic import make_phantom_dataset
    from arcoseg.train.options import TrainOptions
    from arcoseg.train.run import train

    dataset = make_phantom_dataset(tmp_path / "Phantom3D", num_cases=3, shape_zyx=(8, 32, 32),
                                   val_cases=1)
    parent = tmp_path / "parent3d"
    train(dataset, TrainOptions(dims=3, iterations=2, batch=1, patch=(16, 32, 32), device="cpu",
                                val_every=10**6, cache_dir=tmp_path / "cache"),
          parent, Reporter(quiet=True))
    result = adapt(_request(case, tmp_path, classes=None, model=str(parent), method="arco",
                            prior=PriorSettings(mode="nearest")),  # weights ride in 3D patches too
                   Reporter(quiet=True), lambda: False)
    assert result["axis"] == 1 and result["iterations"] == 3
    meta = json.loads((Path(result["model"]["path"]) / "model.json").read_text())
    assert meta["plan"]["dims"] == 3 and meta["network"]["arch"] == "vnet3d"
    assert meta["provenance"]["parent"] == result["model"]["parent"]
    seg = sitk.ReadImage(str(tmp_path / "seg.nii.gz"))
    assert seg.GetSize() == sitk.ReadImage(str(case["image"])).GetSize()


@pytest.mark.parametrize("mode", ["nearest", "interpolate"])
def test_the_propagation_prior_trains_and_is_recorded_with_the_model(case, tmp_path, mode):
    result = adapt(_request(case, tmp_path, prior=PriorSettings(mode=mode)), Reporter(quiet=True),
                   lambda: False)
    meta = json.loads((Path(result["model"]["path"]) / "model.json").read_text())
    assert meta["provenance"]["prior"]["mode"] == mode and result["iterations"] == 3
