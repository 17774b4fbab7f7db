"""Specification of arcoseg.io.outputs: the output-path rule every command shares."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from arcoseg.io.outputs import names_file, output_path


@pytest.mark.parametrize("text", ["", " ", "\t \n"])
def test_an_empty_or_blank_output_is_refused(text):
    """An unset shell variable (`-o "$OUT"`) must not become the current folder."""
    with pytest.raises(argparse.ArgumentTypeError, match="^-o is empty; give a file or folder$"):
        output_path(text)


def test_an_output_path_is_the_path_given_with_the_home_folder_expanded():
    assert output_path("out/seg.nii.gz") == Path("out/seg.nii.gz")
    assert output_path("~/seg.nrrd") == Path.home() / "seg.nrrd"


def test_a_trailing_slash_after_a_files_suffix_is_refused_not_dropped():
    """A hunter's finding: `-o slash.nrrd/` (a folder, said the slash) wrote a file slash.nrrd."""
    with pytest.raises(argparse.ArgumentTypeError, match=r"ends with '/' \(a folder\) but its "
                                                         r"name ends in .nrrd \(a file\)"):
        output_path("slash.nrrd/")
    assert output_path("results.v2/") == Path("results.v2")  # no file suffix: a folder name
    assert output_path("out/") == Path("out")


def test_a_trailing_slash_after_an_existing_folders_suffix_names_that_folder(tmp_path,
                                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results.nrrd").mkdir()
    assert output_path("results.nrrd/") == Path("results.nrrd")


def test_an_empty_output_ends_any_parser_with_exit_2_naming_the_option(capsys):
    parser = argparse.ArgumentParser(prog="arcoseg x")
    parser.add_argument("-o", "--out", type=output_path)
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["-o", ""])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == \
        "arcoseg x: error: argument -o/--out: -o is empty; give a file or folder"


@pytest.mark.parametrize("argv", [
    ["train", "data", "--out", ""], ["evaluate", "a", "b", "-o", " "], ["demo", "-o", ""],
    ["models", "export", "m", ""], ["segment", "m", "x.nii.gz", "-o", ""],
    ["adapt", "--image", "a", "--annotations", "b", "-o", ""]])
def test_every_command_refuses_an_empty_output_before_any_work(argv, capsys, monkeypatch,
                                                               tmp_path):
    """An unset $OUT made train, evaluate, demo and models export write into the current
    folder."""
    from arcoseg.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2 and "is empty; give a file or folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_name_with_a_suffix_names_a_file_unless_it_is_an_existing_folder(tmp_path):
    assert names_file(tmp_path / "seg.nii.gz") and names_file(tmp_path / "seg.png")
    assert not names_file(tmp_path / "results")
    (tmp_path / "case.v2").mkdir()
    assert not names_file(tmp_path / "case.v2")


def test_outputs_differing_only_in_letter_case_are_one_file_as_on_macos_and_windows(tmp_path):
    """A hunter's finding: Patient1.nrrd and patient1.nrrd gave two results that a macOS or
    Windows disk holds as one file (the second replaced the first). An output onto an input is
    found by identity where the output exists (a hard link; another letter case there)."""
    from arcoseg.errors import OutputError
    from arcoseg.io.outputs import check_distinct

    with pytest.raises(OutputError, match="patient1.nii.gz and .*Patient1.nii.gz \\(one file "
                                          "where letter case is ignored"):
        check_distinct([tmp_path / "Patient1.nii.gz", tmp_path / "patient1.nii.gz"])
    image = tmp_path / "scan.nrrd"
    image.write_text("image")
    check_distinct([tmp_path / "Scan.nrrd"], [image])  # another file here (Linux): fine
    (tmp_path / "link.nrrd").hardlink_to(image)
    with pytest.raises(OutputError, match="which is one of the input files"):
        check_distinct([tmp_path / "link.nrrd"], [image])
    check_distinct([tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"], [image])  # distinct: fine
