"""Model registry: export/import as folder and zip, and more than one process at a time (the
inter-process lock; a killed process leaves no partial version)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from filelock import FileLock
from registry_helpers import adapt, snapshot, staging_areas

from arcoseg.errors import OutputError
from arcoseg.registry import Registry, RegistryError, VersionRef


# --------------------------------------------------------------------------------- export/import


def test_export_and_import_round_trip_as_folder_and_zip(
        registry: Registry, imported: VersionRef, tmp_path: Path) -> None:
    version = snapshot(registry.resolve("brain"))
    assert snapshot(registry.export("brain", tmp_path / "copy")) == version
    (tmp_path / "shelf").mkdir()
    assert registry.export("brain@v1", tmp_path / "shelf") == tmp_path / "shelf" / "brain-v1"
    archive = registry.export("brain", tmp_path / "brain-export.zip")
    assert zipfile.ZipFile(archive).namelist() == ["brain-v1/model.json",
                                                   "brain-v1/model.safetensors"]
    ref = registry.import_model(archive)
    assert ref == VersionRef("brain-export", "v1")
    assert snapshot(registry.resolve(str(ref))) == version
    assert registry.show(str(ref))["kind"] == "base"


def test_export_never_overwrites_a_folder(registry: Registry, imported: VersionRef,
                                          tmp_path: Path) -> None:
    (tmp_path / "shelf").mkdir()
    registry.export("brain", tmp_path / "shelf")
    with pytest.raises(OutputError, match="brain-v1 already exists"):
        registry.export("brain", tmp_path / "shelf")


# --------------------------------------------------------------------------------- processes


def test_a_busy_registry_fails_after_the_timeout_with_a_clear_message(
        imported: VersionRef, home: Path) -> None:
    with FileLock(home / "registry.lock"):
        with pytest.raises(RegistryError, match="Another ARCOSegment process is using"):
            Registry(lock_timeout=0.1).activate("brain", "v1")


_CHILD = textwrap.dedent("""
    import shutil, sys, time
    from pathlib import Path
    from arcoseg.registry import Registry
    src, go, count, mode = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.01)
    write_index = Registry._write_index
    def slow_write_index(self, index):  # a slow disk widens the read-modify-write window
        time.sleep(0.05)
        write_index(self, index)
    Registry._write_index = slow_write_index
    registry = Registry()
    for _ in range(count):
        with registry.stage_version("shared") as staged:
            shutil.copytree(src, staged.path)
            if mode == "hang":
                print("staged", flush=True)
                time.sleep(120)
""")


def _start_children(number: int, src: Path, go: Path, count: int, mode: str
                    ) -> list[subprocess.Popen]:
    """Child processes running `_CHILD`, started together, each ready once this returns."""
    children = [subprocess.Popen([sys.executable, "-c", _CHILD, str(src), str(go), str(count),
                                  mode], stdout=subprocess.PIPE, text=True)
                for _ in range(number)]
    for child in children:
        assert child.stdout.readline().strip() == "ready"
    return children


def test_two_processes_adding_versions_at_once_both_succeed_with_distinct_ids(
        registry: Registry, base: Path, tmp_path: Path, home: Path) -> None:
    go, count = tmp_path / "go", 4
    children = _start_children(2, base, go, count, "add")
    go.touch()
    for child in children:
        assert child.wait(timeout=60) == 0
    versions = registry.list()
    assert sorted(int(v["version"][1:]) for v in versions) == list(range(1, 2 * count + 1))
    assert json.loads((home / "registry.json").read_text())["models"]["shared"]["next"] == 9
    assert staging_areas(home) == []


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_process_killed_mid_stage_leaves_no_version_and_its_staging_is_cleaned_later(
        registry: Registry, imported: VersionRef, base: Path, tmp_path: Path,
        home: Path) -> None:
    index = (home / "registry.json").read_bytes()
    go = tmp_path / "go"
    go.touch()
    [child] = _start_children(1, base, go, 1, "hang")
    assert child.stdout.readline().strip() == "staged"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert (home / "registry.json").read_bytes() == index
    assert [v["ref"] for v in registry.list()] == ["brain@v1"]
    assert not (home / "models" / "shared").exists()
    assert len(staging_areas(home)) == 1  # the dead process's files, invisible to the registry
    adapt(registry, "brain", imported)  # the next writer deletes them
    assert staging_areas(home) == []


def test_export_holds_the_model_and_history_only_when_asked(
        registry: Registry, base: Path, tmp_path: Path) -> None:
    """Issue 17 item 22: a trained model's export packed its whole training/ folder."""
    (base / "training").mkdir()
    (base / "training" / "metrics.jsonl").write_text('{"iteration": 1}\n')
    (base / "training" / "checkpoint.safetensors").write_bytes(b"x" * 100_000)
    (base / "training" / "checkpoint.json").write_text("{}")
    archive = registry.export(base, tmp_path / "brain.zip")
    assert zipfile.ZipFile(archive).namelist() == ["brain/model.json", "brain/model.safetensors"]
    assert archive.stat().st_size < (base / "model.safetensors").stat().st_size + 5_000
    with_history = registry.export(base, tmp_path / "full.zip", with_history=True)
    assert zipfile.ZipFile(with_history).namelist() == [
        "brain/model.json", "brain/model.safetensors", "brain/training/metrics.jsonl"]
    folder = registry.export(base, tmp_path / "copy")
    assert sorted(p.name for p in folder.rglob("*")) == ["model.json", "model.safetensors"]
    assert registry.import_model(with_history) == VersionRef("full", "v1")
