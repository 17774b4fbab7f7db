"""`arcoseg models …` on the command line with --progress json (what the Slicer module reads)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_models import save_tiny

from arcoseg.cli import main
from arcoseg.errors import EXIT_USER
from arcoseg.registry import Registry, VersionRef

HELD_OUT = {"parent_dice": 0.5, "adapted_dice": 0.7}


def run_json(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, list[dict]]:
    """Run `arcoseg models ARGV --progress json`; return (exit code, parsed events)."""
    code = main(["models", *argv, "--progress", "json"])
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def result_of(events: list[dict]) -> dict:
    return next(e for e in events if e["event"] == "result")


def error_of(events: list[dict]) -> dict:
    return next(e for e in events if e["event"] == "error")


@pytest.fixture
def two_versions(tmp_path: Path, capsys: pytest.CaptureFixture) -> Path:
    """brain@v1 imported through the CLI, brain@v2 adapted from it (active)."""
    code, events = run_json(capsys, "import", str(save_tiny(tmp_path / "base")), "--name", "brain")
    assert code == 0 and result_of(events)["imported"] == "brain@v1"
    registry = Registry()
    with registry.stage_version("brain", VersionRef("brain", "v1")) as staged:
        save_tiny(staged.path, seed=1, provenance={"method": "arco-adapt", "held_out": HELD_OUT})
    return tmp_path


def test_list_gives_every_version_newest_first_with_what_the_panel_shows(
        two_versions: Path, capsys: pytest.CaptureFixture, home: Path) -> None:
    code, events = run_json(capsys, "list")
    assert code == 0
    result = result_of(events)
    assert result["home"] == str(home)
    adapted, base = result["versions"]
    assert {k: adapted[k] for k in ("name", "version", "kind", "parent", "active", "method",
                                    "held_out", "classes")} == {
        "name": "brain", "version": "v2", "kind": "adapted", "parent": "brain@v1",
        "active": True, "method": "arco-adapt", "held_out": HELD_OUT,
        "classes": ["background", "organ"]}
    assert adapted["created"] and (base["version"], base["kind"], base["active"]) == \
        ("v1", "base", False)
    assert "held_out" not in base


def test_progress_json_may_also_come_before_the_action(two_versions: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "--progress", "json", "list"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(result_of(events)["versions"]) == 2


def test_show_activate_and_rollback(two_versions: Path, capsys: pytest.CaptureFixture) -> None:
    code, events = run_json(capsys, "show", "brain@v1")
    shown = result_of(events)
    assert code == 0 and shown["ref"] == "brain@v1" and shown["children"] == ["brain@v2"]
    assert shown["arch"] == "unet2d" and shown["classes"][1]["name"] == "organ"
    assert result_of(run_json(capsys, "activate", "brain@v1")[1])["active"] == "brain@v1"
    assert result_of(run_json(capsys, "rollback", "brain")[1])["active"] == "brain@v2"
    code, events = run_json(capsys, "activate", "brain")
    assert code == EXIT_USER and "brain@v2 is active now" in error_of(events)["message"]


def test_export_import_and_remove(two_versions: Path, capsys: pytest.CaptureFixture) -> None:
    archive = two_versions / "shared.zip"
    code, events = run_json(capsys, "export", "brain", str(archive))
    assert code == 0 and result_of(events)["exported"] == str(archive) and archive.is_file()
    code, events = run_json(capsys, "import", str(archive), "--name", "colleague")
    assert code == 0 and result_of(events)["imported"] == "colleague@v1"
    assert Path(result_of(events)["path"]).is_dir()
    code, events = run_json(capsys, "remove", "brain@v2")
    assert code == EXIT_USER and "active version" in error_of(events)["message"]
    code, events = run_json(capsys, "remove", "brain", "--force")
    assert code == 0 and result_of(events)["removed"] == ["brain@v1", "brain@v2"]
    assert [v["ref"] for v in result_of(run_json(capsys, "list")[1])["versions"]] == \
        ["colleague@v1"]


def test_bad_requests_are_error_events_with_the_user_exit_code(
        two_versions: Path, capsys: pytest.CaptureFixture) -> None:
    for argv, message in ((["show", "liver"], "neither a model in the registry"),
                          (["activate", "brain@v9"], "has no version 'v9'"),
                          (["import", str(two_versions / "missing")], "does not exist"),
                          (["import", str(two_versions / "base"), "--name", "a b"],
                           "Invalid model name")):
        code, events = run_json(capsys, *argv)
        assert code == EXIT_USER and message in error_of(events)["message"], argv


def test_list_of_an_empty_registry_is_empty_and_creates_nothing(
        capsys: pytest.CaptureFixture, home: Path) -> None:
    code, events = run_json(capsys, "list")
    assert code == 0 and result_of(events)["versions"] == [] and not home.exists()


@pytest.mark.parametrize("argv", [["remove", "brain@", "--force"], ["show", "brain@"],
                                  ["activate", "brain@"], ["export", "brain@", "out.zip"],
                                  ["remove", "brain@v1@v2", "--force"]])
def test_a_malformed_version_reference_is_a_user_error_that_changes_nothing(
        two_versions: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
        argv: list[str]) -> None:
    # 'brain@' is not 'brain': `remove brain@ --force` must not remove the whole model
    monkeypatch.chdir(two_versions)
    code, events = run_json(capsys, *argv)
    assert code == EXIT_USER and error_of(events)["message"] == (
        f"Malformed model version {argv[1]!r}: write NAME@VERSION with a name, one '@' and a "
        "version (e.g. 'brain@v1'). Run `arcoseg models list` to see the versions.")
    assert [v["ref"] for v in result_of(run_json(capsys, "list")[1])["versions"]] == \
        ["brain@v2", "brain@v1"]
    assert not (two_versions / "out.zip").exists()


def test_list_as_text_gives_the_held_out_check_in_words_and_json_keeps_every_field(
        two_versions: Path, capsys: pytest.CaptureFixture) -> None:
    registry = Registry()
    check = {"slice": 17, "parent_dice": 0.876, "copy_dice": 0.8, "adapted_dice": 0.912,
             "output_dice": 0.93, "activated": True, "note": "adapted 0.912 Dice ..."}
    with registry.stage_version("brain", VersionRef("brain", "v2")) as staged:
        save_tiny(staged.path, seed=2, provenance={"method": "arco-adapt", "held_out": check})
    with registry.stage_version("brain", VersionRef("brain", "v3")) as staged:
        save_tiny(staged.path, seed=3, provenance={"method": "arco-adapt", "held_out": {
            "slice": None, "parent_dice": None, "copy_dice": None, "adapted_dice": None}})
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    tails = {line[2:].split()[0]: line.split("arco-adapt")[-1] for line in lines
             if "arco-adapt" in line}
    assert tails == {"brain@v4": "  no held-out check",
                     "brain@v3": "  held-out Dice 0.91 (parent 0.88, copy 0.80)",
                     "brain@v2": "  held-out Dice 0.70 (parent 0.50)"}
    assert result_of(run_json(capsys, "list")[1])["versions"][1]["held_out"] == check


def test_check_loads_the_model_and_runs_one_blank_batch_of_windows(tmp_path, capsys):
    folder = save_tiny(tmp_path / "m")
    code, events = run_json(capsys, "check", str(folder), "--batch", "2", "--threads", "1")
    result = result_of(events)
    assert code == 0 and result["classes"] == ["background", "organ"]
    assert Path(result["model"]).resolve() == folder.resolve() and result["device"] == "CPU"
    assert result["load_seconds"] >= 0 and result["first_pass_seconds"] > 0


def test_check_of_a_damaged_model_is_a_user_error_naming_the_file(tmp_path, capsys):
    folder = save_tiny(tmp_path / "m")
    (folder / "model.safetensors").write_bytes(b"not weights")
    code, events = run_json(capsys, "check", str(folder))
    assert code == EXIT_USER and "model.safetensors" in error_of(events)["message"]


@pytest.mark.parametrize("command", ["check", "segment", "evaluate"])
def test_a_model_folder_without_a_plan_is_refused_naming_its_model_json(tmp_path, capsys,
                                                                        command, msd_dataset):
    """The tester's T8: the only plan error that did not name the file."""
    folder = save_tiny(tmp_path / "planless")
    data = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**data, "plan": {}}))
    argv = {"check": ["models", "check", str(folder)],
            "segment": ["segment", str(folder), str(tmp_path), "-o", str(tmp_path / "s.nii.gz")],
            "evaluate": ["evaluate", "--model", str(folder), "--dataset", str(msd_dataset),
                         "--split", "all", "-o", str(tmp_path / "ev")]}[command]
    code = main([*argv, "--progress", "json"])
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == EXIT_USER
    assert f"{folder / 'model.json'} has an empty 'plan'" in error_of(events)["message"]


def test_in_the_serve_worker_check_leaves_the_model_loaded_and_fused_for_segment(
        tmp_path, capsys, monkeypatch):
    from arcoseg import serve_cache
    from arcoseg.networks import fused

    cache = serve_cache.ModelCache(capacity=2)
    monkeypatch.setattr(serve_cache, "_CACHE", cache)  # as `arcoseg serve` installs it
    folder = save_tiny(tmp_path / "m")
    assert run_json(capsys, "check", str(folder), "--threads", "1")[0] == 0
    model, _ = serve_cache.load_model(folder, device=torch.device("cpu"))  # what segment does
    assert (cache.loads, cache.hits) == (1, 1)
    assert fused._KEPT[model] is not None  # its fused copy was made by the check, and kept
