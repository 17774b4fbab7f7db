"""Temporary files and folders never outlive their run for good (issue 17 item 19): deleted on
every exit path, and those of killed processes deleted by the next run."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from arcoseg.fileutil import write_text_atomic
from arcoseg.tempfiles import work_folder


@pytest.fixture
def tmpdir_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The id of a process that has ended."""
    out = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                         capture_output=True, text=True, check=True).stdout
    return int(out)


def _aged(path: Path, seconds: float = 600) -> Path:
    past = time.time() - seconds
    os.utime(path, (past, past))
    return path


@pytest.mark.skipif(os.name != "posix", reason="process check is POSIX only (age elsewhere)")
def test_work_folders_of_killed_runs_are_removed_at_the_next_start(tmpdir_root, dead_pid):
    killed = tmpdir_root / f"arcoseg-adapt-{dead_pid}-abc"
    (killed / "training").mkdir(parents=True)
    (killed / "training" / "checkpoint.safetensors").write_bytes(b"x" * 1000)
    _aged(killed)
    running = tmpdir_root / f"arcoseg-adapt-{os.getpid()}-def"
    running.mkdir()
    _aged(running)
    fresh = tmpdir_root / f"arcoseg-adapt-{dead_pid}-new"  # too new to judge
    fresh.mkdir()
    other = tmpdir_root / "somebody-else"
    other.mkdir()
    with work_folder("arcoseg-adapt") as work:
        assert work.parent == tmpdir_root and work.name.startswith(f"arcoseg-adapt-{os.getpid()}-")
        assert not killed.exists() and running.exists() and fresh.exists() and other.exists()
    assert not work.exists()


def test_a_work_folder_is_deleted_on_errors_and_ctrl_c(tmpdir_root):
    for error in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(error)):
            with work_folder("arcoseg-adapt") as work:
                (work / "file").write_text("x")
                raise error
        assert not work.exists()
    assert list(tmpdir_root.iterdir()) == []


@pytest.mark.skipif(os.name != "posix", reason="process check is POSIX only (age elsewhere)")
def test_temp_files_a_killed_write_left_beside_an_output_are_removed(tmp_path, dead_pid):
    out = tmp_path / "seg.nii.gz"
    killed = tmp_path / f".seg.nii.gz.{dead_pid}.k2j4.tmp.nii.gz"  # 0 bytes, as a kill left it
    killed.touch()
    _aged(killed)
    live = tmp_path / f".seg.nii.gz.{os.getpid()}.zz99.tmp.nii.gz"
    live.touch()
    _aged(live)
    other = tmp_path / f".other.nii.gz.{dead_pid}.aa.tmp.nii.gz"
    other.touch()
    _aged(other)
    write_text_atomic(out, "labels")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, live.name, other.name])


def test_an_interrupted_atomic_write_leaves_nothing_beside_the_output(tmp_path):
    from arcoseg.fileutil import atomic_path

    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "seg.nii.gz") as tmp:
            assert tmp.name.startswith(f".seg.nii.gz.{os.getpid()}.")
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
