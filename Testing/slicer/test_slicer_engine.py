"""Engine command lines and jobs (process + finishing step + work folder) with a real child."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ARCOSegmentLib import engine
from ARCOSegmentLib.process import EngineError, engine_command


def test_segment_command_line_follows_the_engine_contract():
    args = engine.segment_args(Path("/m"), "/tmp/in.nii.gz", "/tmp/out.nii.gz", entropy=True,
                               cpu_only=True)
    assert args == ["segment", "/m", "/tmp/in.nii.gz", "-o", "/tmp/out.nii.gz", "--entropy",
                    "--device", "cpu"]
    assert engine.segment_args("m", "i", "o")[-2:] == ["--device", "auto"]


def test_adapt_command_line_from_a_model_or_from_scratch():
    args = engine.adapt_args("img.nii.gz", "ann.nii.gz", "seg.nii.gz", model="liver@3", axis=0,
                             unlabelled=["u1.nii.gz", "u2.nii.gz"], budget_seconds=299.6)
    assert args == ["adapt", "--image", "img.nii.gz", "--annotations", "ann.nii.gz", "--axis", "0",
                    "--unlabelled", "u1.nii.gz", "u2.nii.gz", "--model", "liver@3",
                    "--budget", "300", "-o", "seg.nii.gz", "--device", "auto"]
    scratch = engine.adapt_args("i", "a", "o", new_classes=["Liver", "Spleen"], cpu_only=True)
    assert scratch[scratch.index("--axis") + 1] == "auto"
    assert "--from-scratch" in scratch and scratch[scratch.index("--classes") + 1] == "Liver,Spleen"
    with pytest.raises(ValueError, match="either a model"):
        engine.adapt_args("i", "a", "o")
    with pytest.raises(ValueError, match="no comma"):
        engine.adapt_args("i", "a", "o", new_classes=["a,b"])


def test_segment_result_is_parsed():
    output = {"case": "c", "labels": "/o/c.nii.gz", "seconds": 1.5,
              "entropy": "/o/c_entropy.nii.gz"}
    out = engine.parse_segment_result({"outputs": [output], "device": "cuda",
                                       "classes": ["background", "Liver"]})
    assert out.labels == Path("/o/c.nii.gz") and out.entropy == Path("/o/c_entropy.nii.gz")
    assert out.classes == ["background", "Liver"] and out.seconds == 1.5
    assert engine.parse_segment_result({"outputs": [{"labels": "x"}]}).entropy is None
    with pytest.raises(EngineError, match="no segmentation output"):
        engine.parse_segment_result({"outputs": []})


def test_adapt_result_is_parsed_and_summarised():
    out = engine.parse_adapt_result({
        "model": {"name": "liver", "version": 4, "parent": "liver@3", "path": "/r/liver/4"},
        "heldout": {"parent_dice": 0.71, "adapted_dice": 0.802, "activated": True},
        "suggested_slices": [30, 7], "axis": 0})
    assert out.model.ref == "liver@4" and out.model.path == "/r/liver/4"
    assert out.suggested_slices == [30, 7] and out.activated
    assert out.summary() == "liver@4: held-out Dice 0.710 → 0.802 (activated)"
    bare = engine.parse_adapt_result({"model": "scratch", "heldout": {}})
    assert "n/a" in bare.summary() and "kept the previous" in bare.summary()


def fake(fake_engine, mode):
    return [*fake_engine, mode]


def test_job_finishes_with_the_processed_result_and_removes_its_work_folder(fake_engine, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    done, logs = [], []
    job = engine.EngineJob(fake(fake_engine, "ok"), lambda r: r["answer"] * 2, work_dir=work,
                           log=logs.append, on_done=lambda v, e: done.append((v, e)))
    assert job.wait(timeout=30) == 84
    assert done == [(84, None)] and not work.exists() and "starting" in logs


def test_job_polled_from_a_timer_reports_through_on_done(fake_engine):
    done = []
    job = engine.EngineJob(fake(fake_engine, "ok"), lambda r: r["answer"],
                           on_done=lambda v, e: done.append((v, e))).start()
    while job.poll():
        pass
    assert job.finished and done == [(42, None)]


def test_job_reports_engine_errors_and_failures_of_the_finishing_step(fake_engine, tmp_path):
    done = []
    job = engine.EngineJob(fake(fake_engine, "error"), lambda r: r, work_dir=tmp_path / "w",
                           on_done=lambda v, e: done.append(e))
    with pytest.raises(EngineError, match="does not exist"):
        job.wait(timeout=30)
    assert done and isinstance(done[0], EngineError)

    def broken(result):
        raise ValueError("Cannot read the engine output out.nii.gz")
    with pytest.raises(ValueError, match="Cannot read the engine output"):
        engine.EngineJob(fake(fake_engine, "ok"), broken).wait(timeout=30)


def test_job_that_cannot_start_raises_at_once_and_removes_its_work_folder(tmp_path):
    done, work = [], tmp_path / "work"
    work.mkdir()
    job = engine.EngineJob(["/nonexistent/python"], lambda r: r, work_dir=work,
                           on_done=lambda v, e: done.append(e))
    with pytest.raises(EngineError, match="Cannot start"):
        job.start()
    assert done == [] and not work.exists()
    with pytest.raises(EngineError, match="Cannot start"):
        engine.EngineJob(["/nonexistent/python"], lambda r: r).wait()


def test_cancelled_job_reports_cancellation(fake_engine):
    job = engine.EngineJob(fake(fake_engine, "tree"), lambda r: r, grace_seconds=0.5).start()
    job.cancel()
    with pytest.raises(EngineError) as info:
        job.wait(timeout=30)
    assert info.value.cancelled


def test_real_engine_reports_a_missing_model_as_a_user_error(tmp_path):
    """`python -m arcoseg segment` with a model folder that does not exist: exit code 2."""
    command = engine_command(engine.segment_args(tmp_path / "no-model", tmp_path / "in.nii.gz",
                                                 tmp_path / "out.nii.gz", cpu_only=True),
                             python=sys.executable)
    with pytest.raises(EngineError) as info:
        engine.EngineJob(command, engine.parse_segment_result).wait(timeout=120)
    assert info.value.exit_code == 2 and "no-model" in str(info.value)
