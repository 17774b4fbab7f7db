"""The command line end to end: train → segment → evaluate, JSON progress, clean failures."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from arcoseg.cli import main
from arcoseg.data.synthetic import make_phantom, make_phantom_dataset


def run_json(capsys, *argv):
    """Run a command with --progress json; return (exit code, parsed events)."""
    code = main([*argv, "--progress", "json"])
    lines = capsys.readouterr().out.splitlines()
    return code, [json.loads(line) for line in lines]


def result_of(events):
    return next(e for e in events if e["event"] == "result")


def error_of(events):
    return next(e for e in events if e["event"] == "error")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_phantom_dataset(tmp_path_factory.mktemp("cli") / "Phantom", num_cases=4,
                                shape_zyx=(6, 32, 32), val_cases=1)


@pytest.fixture(scope="module")
def model(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "m"
    cache = tmp_path_factory.mktemp("cache")
    code = main(["train", str(dataset), "--dims", "2", "--iterations", "3", "--batch", "2",
                 "--patch", "32", "32", "--device", "cpu", "--val-every", "3", "--out", str(out),
                 "--cache-dir", str(cache), "--progress", "none"])
    assert code == 0
    return out


@pytest.fixture
def oblique_image(tmp_path):
    """A phantom with anisotropic spacing, a non-zero origin and a rotated direction."""
    image, _ = make_phantom((5, 30, 34), seed=3, spacing_zyx=(3.0, 0.8, 0.9))
    c, s = np.cos(0.3), np.sin(0.3)
    image.SetDirection((c, -s, 0, s, c, 0, 0, 0, 1))
    path = tmp_path / "oblique.nrrd"
    sitk.WriteImage(image, str(path))
    return path


def test_help_documents_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for command in ("train", "segment", "evaluate", "demo", "device"):
        assert command in text


def test_train_emits_json_progress_and_a_result(dataset, tmp_path, capsys):
    code, events = run_json(capsys, "train", str(dataset), "--iterations", "2", "--batch", "2",
                            "--patch", "32", "32", "--device", "cpu", "--out",
                            str(tmp_path / "m"), "--cache-dir", str(tmp_path / "c"))
    assert code == 0
    kinds = {e["event"] for e in events}
    assert {"progress", "log", "result"} <= kinds
    progress = [e for e in events if e["event"] == "progress"]
    assert progress[-1]["step"] == progress[-1]["total"] == 2
    assert result_of(events)["iterations"] == 2


def test_segment_keeps_the_input_geometry(model, oblique_image, tmp_path, capsys):
    out = tmp_path / "seg.nii.gz"
    code, events = run_json(capsys, "segment", str(model), str(oblique_image), "-o", str(out),
                            "--entropy", "--device", "cpu")
    assert code == 0, events
    src, seg = sitk.ReadImage(str(oblique_image)), sitk.ReadImage(str(out))
    assert seg.GetSize() == src.GetSize()
    assert np.allclose(seg.GetSpacing(), src.GetSpacing())
    assert np.allclose(seg.GetOrigin(), src.GetOrigin(), atol=1e-4)
    assert np.allclose(seg.GetDirection(), src.GetDirection(), atol=1e-5)
    assert set(np.unique(sitk.GetArrayFromImage(seg))) <= {0, 1, 2}
    entropy = sitk.GetArrayFromImage(sitk.ReadImage(result_of(events)["outputs"][0]["entropy"]))
    assert entropy.shape == sitk.GetArrayFromImage(src).shape
    assert 0 <= entropy.min() and entropy.max() <= 1


def test_segment_a_folder_writes_one_file_per_image(model, dataset, tmp_path, capsys):
    out = tmp_path / "segs"
    code, events = run_json(capsys, "segment", str(model), str(dataset / "imagesTr"),
                            "-o", str(out), "--ext", ".nrrd", "--device", "cpu")
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [f"case_{i:03d}.nrrd" for i in range(4)]


def test_evaluate_model_on_split_and_files(model, dataset, tmp_path, capsys):
    code, events = run_json(capsys, "evaluate", "--model", str(model), "--dataset", str(dataset),
                            "--split", "val", "-o", str(tmp_path / "ev"), "--device", "cpu")
    assert code == 0, events
    assert (tmp_path / "ev" / "metrics_per_case.csv").is_file()
    assert (tmp_path / "ev" / "summary.md").is_file()
    pred = next((tmp_path / "ev" / "predictions").iterdir())
    gt = dataset / "labelsTr" / pred.name
    code, events = run_json(capsys, "evaluate", str(pred), str(gt), "--labels",
                            str(dataset / "dataset.json"), "-o", str(tmp_path / "ev2"))
    assert code == 0
    assert set(result_of(events)["summary"]["classes"]) == {"class1", "class2"}


@pytest.mark.parametrize("layout", [
    {"labels": {"background": 0, "RV": 1, "LV": 3, "ignore": 9}, "file_ending": ".nii.gz"},
    {"labels": {"0": "background", "1": "RV", "3": "LV"}, "training": []}])
def test_evaluate_labels_from_a_dataset_json_alone(tmp_path, layout):
    """A hunter's finding: `--labels x/dataset.json` needed the whole dataset beside it
    ('Dataset folder …/imagesTr does not exist')."""
    from arcoseg.commands.evaluate import parse_labels

    (tmp_path / "dataset.json").write_text(json.dumps(layout))
    expected = {"RV": 1, "LV": 3, **({"ignore": 9} if "ignore" in layout["labels"] else {})}
    assert parse_labels(str(tmp_path / "dataset.json")) == expected


@pytest.mark.parametrize("spec,message", [
    ("lv=1,lv=2", "unique \\(ignoring case\\)"), ("lv=1,LV=2", "unique \\(ignoring case\\)"),
    ("lv=1,myo=1", "its own label value from 1 to 254"), ("lv=300", "from 1 to 254"),
    ("lv=-1", "from 1 to 254"), ("lv", "neither a dataset.json"),
])
def test_evaluate_labels_a_label_map_cannot_hold_are_refused(spec, message, tmp_path, capsys):
    """They were collapsed into a dict (the error then blamed the label map) or accepted."""
    code, events = run_json(capsys, "evaluate", str(tmp_path), str(tmp_path), "--labels", spec,
                            "-o", str(tmp_path / "ev"))
    assert code == 2 and re.search(message, events[-1]["message"]), events[-1]
    assert not (tmp_path / "ev").exists()


def test_evaluate_labels_can_name_a_registered_model(model, tmp_path):
    from arcoseg.commands.evaluate import parse_labels
    from arcoseg.registry import Registry

    Registry().import_model(model, name="heart")
    assert parse_labels("heart") == parse_labels(str(model)) == {"class1": 1, "class2": 2}


# --- bad input: a clear message naming the file, exit code 2, no partial output -------------

def _corrupt_nifti(tmp_path):
    path = tmp_path / "corrupt.nii.gz"
    image, _ = make_phantom((4, 16, 16))
    sitk.WriteImage(image, str(path))
    path.write_bytes(path.read_bytes()[:200])
    return path


def _nan_image(tmp_path):
    image, _ = make_phantom((4, 16, 16))
    array = sitk.GetArrayFromImage(image)
    array[0, 0, 0] = np.nan
    bad = sitk.GetImageFromArray(array)
    path = tmp_path / "nan.mha"  # ITK's NIfTI reader itself turns NaN into 0
    sitk.WriteImage(bad, str(path))
    return path


def _image_4d(tmp_path):
    path = tmp_path / "four_d.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 8, 8), np.float32)), str(path))
    return path


@pytest.mark.parametrize("make_input, message", [
    (lambda t: t / "missing.nii.gz", "missing.nii.gz"),
    (_corrupt_nifti, "corrupt.nii.gz"),
    (_nan_image, "nan.mha"),
    (_image_4d, "four_d.nii.gz"),
])
def test_bad_image_is_refused_without_output(model, tmp_path, capsys, make_input, message):
    out = tmp_path / "out" / "seg.nii.gz"
    code, events = run_json(capsys, "segment", str(model), str(make_input(tmp_path)),
                            "-o", str(out), "--device", "cpu")
    assert code == 2
    assert message in error_of(events)["message"]
    assert not out.exists()


def test_unwritable_output_is_refused(model, oblique_image, tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    code, events = run_json(capsys, "segment", str(model), str(oblique_image),
                            "-o", str(blocker / "seg.nii.gz"), "--device", "cpu")
    assert code == 2 and "file.txt" in error_of(events)["message"]


def test_a_folder_that_is_not_a_model_is_refused(oblique_image, tmp_path, capsys):
    (tmp_path / "notamodel").mkdir()
    code, events = run_json(capsys, "segment", str(tmp_path / "notamodel"), str(oblique_image),
                            "-o", str(tmp_path / "s.nii.gz"), "--device", "cpu")
    assert code == 2 and "model.json" in error_of(events)["message"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu_is_refused(model, oblique_image, tmp_path, capsys):
    code, events = run_json(capsys, "segment", str(model), str(oblique_image),
                            "-o", str(tmp_path / "s.nii.gz"), "--device", "cuda")
    assert code == 2 and "no CUDA GPU" in error_of(events)["message"]


def test_evaluate_refuses_mismatched_geometry(dataset, tmp_path, capsys):
    gt = dataset / "labelsTr" / "case_000.nii.gz"
    moved = sitk.ReadImage(str(gt))
    moved.SetOrigin((1.0, 2.0, 3.0))
    pred = tmp_path / "case_000.nii.gz"
    sitk.WriteImage(moved, str(pred))
    code, events = run_json(capsys, "evaluate", str(pred), str(gt), "-o", str(tmp_path / "ev"))
    assert code == 2 and "origin" in error_of(events)["message"].lower()
    assert not (tmp_path / "ev" / "summary.md").exists()


def test_threads_limits_torch_to_that_many_cpu_threads(capsys):
    before = torch.get_num_threads()
    try:
        code, _ = run_json(capsys, "device", "--device", "cpu", "--threads", "1")
        assert code == 0 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("value", ["0", "two"])
def test_threads_must_be_a_positive_whole_number(capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["device", "--threads", value])
    assert exit_info.value.code == 2 and "--threads" in capsys.readouterr().err


def test_module_entry_point_exits_with_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "arcoseg", "segment", str(tmp_path / "nomodel"),
                           str(tmp_path / "x.nii.gz"), "-o", str(tmp_path / "o.nii.gz")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "nomodel" in proc.stderr


def test_segment_accepts_a_registry_name(model, oblique_image, tmp_path, capsys):
    assert main(["models", "import", str(model), "--name", "phantom", "--progress", "none"]) == 0
    capsys.readouterr()
    code, events = run_json(capsys, "segment", "phantom", str(oblique_image),
                            "-o", str(tmp_path / "s.nii.gz"), "--device", "cpu")
    assert code == 0 and (tmp_path / "s.nii.gz").is_file()


def test_importing_the_command_line_loads_no_torch_or_monai():
    """`arcoseg --help`, `--version` and `models list` must answer without torch and MONAI
    (seconds of import time); the commands import them when they run."""
    code = ("import sys, arcoseg.cli; arcoseg.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'monai') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_models_list_prints_its_table_on_stdout(model, capsys, home):
    assert main(["models", "import", str(model), "--name", "heart", "--progress", "none"]) == 0
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    captured = capsys.readouterr()
    first = captured.out.splitlines()[0]
    assert first.startswith("* heart@v1") and "base" in first
    assert f"home: {home}" in captured.out
    assert "versions" not in captured.out  # the table above is their text form
    assert "heart@v1" not in captured.err


def test_train_with_context_slices_writes_a_2_5d_model_that_segment_uses(dataset, tmp_path,
                                                                         capsys):
    out = tmp_path / "m25"
    code = main(["train", str(dataset), "--dims", "2", "--context-slices", "2", "--iterations",
                 "2", "--batch", "2", "--patch", "32", "32", "--device", "cpu", "--out",
                 str(out), "--cache-dir", str(tmp_path / "c"), "--progress", "none"])
    assert code == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["plan"]["context_slices"] == 2 and meta["network"]["in_channels"] == 5
    image = next((dataset / "imagesTr").iterdir())
    assert main(["segment", str(out), str(image), "-o", str(tmp_path / "seg.nii.gz"),
                 "--device", "cpu", "--progress", "none"]) == 0
    assert sitk.ReadImage(str(tmp_path / "seg.nii.gz")).GetSize() == \
        sitk.ReadImage(str(image)).GetSize()


def test_context_slices_are_refused_for_3d_models(dataset, tmp_path, capsys):
    code, events = run_json(capsys, "train", str(dataset), "--dims", "3", "--context-slices",
                            "1", "--device", "cpu", "--out", str(tmp_path / "m"))
    assert code == 2 and "--context-slices goes with 2D models" in error_of(events)["message"]
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("argv", [["models", "show", "NAME"],
                                  ["segment", "NAME", "image.nii.gz", "-o", "seg.nii.gz"],
                                  ["segment", "MODEL", "NAME", "-o", "seg.nii.gz"]])
def test_a_name_too_long_for_the_file_system_is_a_user_error_not_a_crash(capsys, argv,
                                                                         untrained_model):
    """A hunter's finding: Path.exists raises ENAMETOOLONG (a 300-character model name gave
    'Internal error', exit 1, and a traceback; in `serve` the whole name came back)."""
    name = "a" * 300
    values = {"NAME": name, "MODEL": str(untrained_model)}
    code, events = run_json(capsys, *[values.get(a, a) for a in argv])
    message = error_of(events)["message"]
    assert code == 2 and message.startswith("A file or folder name is too long")
    assert "(300 characters)" in message and len(message) < 250


@pytest.mark.parametrize("error", [
    OSError(28, "No space left on device", "/data/out/model.safetensors"),
    RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"),
])
def test_a_full_disk_is_a_user_error_not_an_internal_one(capsys, monkeypatch, error):
    """A hunter's finding: train and models import on a full disk said 'Internal error …
    Please report this', exit 1 (safetensors reports ENOSPC as its own error type)."""
    from arcoseg.commands import device

    def full(*args):
        raise error

    monkeypatch.setattr(device, "run", full)
    code, events = run_json(capsys, "device")
    event = error_of(events)
    assert code == 2 and event["kind"] == "OutputError"
    assert event["message"].startswith("The disk is full (or your quota is used up)")
    assert "Internal error" not in event["message"]
