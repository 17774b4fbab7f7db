"""Atomic writes: a destination is either the old file or the complete new one."""

import pytest

from arcoseg.errors import OutputError
from arcoseg.fileutil import atomic_path, full_suffix, write_text_atomic


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
