"""Atomic writes: a destination is either the old file or the complete new one."""

import os
from pathlib import Path

import pytest

from arcoseg.errors import OutputError
from arcoseg.fileutil import atomic_path, atomic_paths, full_suffix, write_text_atomic


def test_full_suffix_keeps_compound_extensions():
    assert full_suffix("a/b.nii.gz") == ".nii.gz"
    assert full_suffix("b.NRRD") == ".nrrd"
    assert full_suffix("x.seg.nrrd") == ".seg.nrrd"


def test_failed_write_leaves_previous_file_and_no_temporary(tmp_path):
    dest = tmp_path / "out.txt"
    dest.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert dest.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_temporary_keeps_the_format_suffix(tmp_path):
    with atomic_path(tmp_path / "seg.nii.gz") as tmp:
        assert tmp.name.endswith(".nii.gz")
        tmp.write_bytes(b"x")
    assert (tmp_path / "seg.nii.gz").read_bytes() == b"x"


def test_unwritable_destination_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("I am a file")
    with pytest.raises(OutputError, match="Cannot create output folder"):
        write_text_atomic(blocker / "sub" / "out.txt", "data")


def test_a_folder_is_not_an_output_file(tmp_path):
    with pytest.raises(OutputError, match="is a folder"):
        write_text_atomic(tmp_path, "data")


def _failing_on(name, real=os.replace):
    """os.replace that fails when asked to rename onto a file called `name`."""
    def replace(src, dst):
        if Path(dst).name == name:
            raise IsADirectoryError(21, "Is a directory", str(src), None, str(dst))
        real(src, dst)
    return replace


@pytest.mark.parametrize("had_files", [True, False], ids=["over old files", "new files"])
def test_files_that_belong_together_take_their_names_all_or_none(tmp_path, monkeypatch,
                                                                 had_files):
    paths = [tmp_path / "seg.nii.gz", tmp_path / "seg_probabilities.nii.gz", tmp_path / "e.nrrd"]
    if had_files:
        for path in paths:
            path.write_text(f"old {path.name}")
    monkeypatch.setattr(os, "replace", _failing_on("e.nrrd"))  # the third rename fails
    with pytest.raises(OutputError, match=r"Could not write .*e\.nrrd: Is a directory; "
                                          r".*seg\.nii\.gz, .* are as before"):
        with atomic_paths(paths) as temps:
            for tmp in temps:
                tmp.write_text("new")
    if had_files:
        assert [p.read_text() for p in paths] == [f"old {p.name}" for p in paths]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in paths if had_files)  # no temporary files or backups left


def test_files_that_belong_together_all_take_their_names(tmp_path):
    paths = [tmp_path / "a.txt", tmp_path / "b.txt"]
    paths[0].write_text("old")
    with atomic_paths(paths) as temps:
        for tmp, text in zip(temps, ("new a", "new b")):
            tmp.write_text(text)
    assert [p.read_text() for p in paths] == ["new a", "new b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_files_whose_old_version_cannot_be_backed_up_are_still_written(tmp_path, monkeypatch):
    """The tester's T5: another user's unreadable file in a shared folder can be replaced (as a
    single file is) but not linked or copied; the write used to fail for it."""
    import shutil

    paths = [tmp_path / "a.txt", tmp_path / "b.txt"]
    for path in paths:
        path.write_text("old")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(os, "link", refuse)
    monkeypatch.setattr(shutil, "copy2", refuse)
    with atomic_paths(paths) as temps:
        for tmp in temps:
            tmp.write_text("new")
    assert [p.read_text() for p in paths] == ["new", "new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]
