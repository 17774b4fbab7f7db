"""Item 6 of issue 17: every file the engine writes gets the permissions a plain open() would give
under the current umask (atomic writes go through 0600 temporary files and 0700 temporary
folders, which must not survive the rename)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from arcoseg.cli import main
from arcoseg.data.synthetic import make_phantom
from arcoseg.fileutil import atomic_path, write_text_atomic
from arcoseg.io.images import write_image


@pytest.fixture
def umask_002():
    old = os.umask(0o002)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_text_file_gets_the_umask_mode(tmp_path, umask_002):
    write_text_atomic(tmp_path / "a.txt", "x")
    assert mode(tmp_path / "a.txt") == 0o664


def test_atomic_write_keeps_the_mode_of_the_file_it_replaces(tmp_path, umask_002):
    dest = tmp_path / "a.txt"
    dest.write_text("old")
    dest.chmod(0o640)
    with atomic_path(dest) as tmp:
        tmp.write_text("new")
    assert dest.read_text() == "new" and mode(dest) == 0o640


def test_image_writer_gets_the_umask_mode(tmp_path):
    image, _ = make_phantom((4, 8, 8), seed=0)
    old = os.umask(0o027)
    try:
        write_image(image, tmp_path / "img.nii.gz")
    finally:
        os.umask(old)
    assert mode(tmp_path / "img.nii.gz") == 0o640


def test_segment_and_evaluate_outputs_are_readable_by_the_group(untrained_model, tmp_path,
                                                                 umask_002):
    image, labels = make_phantom((4, 24, 24), seed=1)
    write_image(image, tmp_path / "case.nii.gz")
    write_image(labels, tmp_path / "gt.nii.gz")
    out = tmp_path / "seg.nii.gz"
    assert main(["segment", str(untrained_model), str(tmp_path / "case.nii.gz"), "-o", str(out),
                 "--probabilities", "--entropy", "--device", "cpu", "--progress", "none"]) == 0
    assert main(["evaluate", str(out), str(tmp_path / "gt.nii.gz"), "-o",
                 str(tmp_path / "ev"), "--progress", "none"]) == 0
    written = [out, tmp_path / "seg_probabilities.nii.gz", tmp_path / "seg_entropy.nii.gz",
               *sorted((tmp_path / "ev").iterdir())]
    assert {p.name: mode(p) for p in written} == {p.name: 0o664 for p in written}


def test_saved_model_folder_and_files_get_the_umask_mode(untrained_model, tmp_path, umask_002):
    from arcoseg.modelfile import load_model, save_model

    model, metadata = load_model(untrained_model)
    dest = tmp_path / "copy"
    save_model(dest, model, metadata)
    assert mode(dest) == 0o775
    assert sorted(mode(p) for p in dest.iterdir()) == [0o664, 0o664]
    assert np.all(np.asarray([p.stat().st_size for p in dest.iterdir()]) > 0)
