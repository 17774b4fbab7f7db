"""Issue 17 items 7 and 8: output never fails after the work is done (non-UTF-8 stdout, a reader
that leaves early), and running out of memory inside torch is a clean error with a remedy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from arcoseg.cli import main
from arcoseg import inference
from arcoseg.data.synthetic import make_phantom
from arcoseg.io.images import write_image

ENGINE = [sys.executable, "-m", "arcoseg"]


def environment(**extra: str) -> dict[str, str]:
    training = str(Path(__import__("arcoseg").__file__).parents[1])
    return {**os.environ, "PYTHONPATH": training, **extra}


@pytest.fixture
def labels(tmp_path: Path) -> Path:
    _, labels = make_phantom((4, 16, 16), seed=0)
    write_image(labels, tmp_path / "gt.nii.gz")
    return tmp_path / "gt.nii.gz"


def test_an_ascii_stdout_still_gets_the_result_of_a_chinese_output_folder(labels, tmp_path):
    out = tmp_path / "评估"
    done = subprocess.run([*ENGINE, "evaluate", str(labels), str(labels), "-o", str(out)],
                          capture_output=True, env=environment(PYTHONIOENCODING="ascii"),
                          timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert sorted(p.name for p in out.iterdir()) == ["metrics_per_case.csv", "summary.json",
                                                      "summary.md"]
    assert "\\u8bc4\\u4f30".encode() in done.stdout  # the folder name, escaped
    assert b"Traceback" not in done.stderr


def test_a_reader_that_leaves_early_ends_the_run_quietly(labels, tmp_path):
    """`arcoseg evaluate … | head -0`: the result has nowhere to go; no 'Internal error'."""
    proc = subprocess.Popen([*ENGINE, "evaluate", str(labels), str(labels), "-o",
                             str(tmp_path / "ev")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=environment())
    proc.stdout.close()  # the reader is gone before the result is printed
    stderr = proc.stderr.read()
    assert proc.wait(timeout=300) == 0
    assert b"Internal error" not in stderr and b"BrokenPipe" not in stderr, stderr.decode()
    assert (tmp_path / "ev" / "summary.json").is_file()


@pytest.mark.parametrize("error", [
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
                 "memory: you tried to allocate 1390000000 bytes. Error code 12"),
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    MemoryError()])
def test_out_of_memory_is_a_clean_error_with_a_remedy_for_segment(untrained_model, tmp_path,
                                                                  capsys, monkeypatch, error):
    def exhausted(*args, **kwargs):
        raise error

    monkeypatch.setattr(inference, "segment_file", exhausted)
    image, _ = make_phantom((4, 16, 16), seed=0)
    write_image(image, tmp_path / "ct.nii.gz")
    code = main(["segment", str(untrained_model), str(tmp_path / "ct.nii.gz"), "-o",
                 str(tmp_path / "seg.nii.gz"), "--device", "cpu", "--progress", "json"])
    captured = capsys.readouterr()
    event = json.loads(captured.out.splitlines()[-1])
    assert code == 2 and event["kind"] == "OutOfMemory"
    assert event["message"].startswith("Out of memory") and "--batch 1" in event["message"]
    assert "Traceback" not in captured.err and "please report" not in event["message"].lower()


def test_other_runtime_errors_are_still_reported_as_bugs(untrained_model, tmp_path, capsys,
                                                         monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(inference, "segment_file", broken)
    image, _ = make_phantom((4, 16, 16), seed=0)
    write_image(image, tmp_path / "ct.nii.gz")
    assert main(["segment", str(untrained_model), str(tmp_path / "ct.nii.gz"), "-o",
                 str(tmp_path / "seg.nii.gz"), "--device", "cpu", "--progress", "none"]) == 1
    assert "Internal error" in capsys.readouterr().err
