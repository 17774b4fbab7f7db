"""Engine command lines and jobs (process + finishing step + work folder) with a real child."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ARCOSegmentLib import engine
from ARCOSegmentLib.process import EngineError, engine_command
from standins import ADAPT_RESULT


def test_segment_command_line_follows_the_engine_contract():
    args = engine.segment_args(Path("/m"), "/tmp/in.nii.gz", "/tmp/out.nii.gz", entropy=True,
                               cpu_only=True)
    assert args == ["segment", "/m", "/tmp/in.nii.gz", "-o", "/tmp/out.nii.gz", "--entropy",
                    "--device", "cpu"]
    assert engine.segment_args("m", "i", "o")[-2:] == ["--device", "auto"]


def test_adapt_command_line_from_a_model_or_from_scratch():
    args = engine.adapt_args("img.nii.gz", "ann.nii.gz", "seg.nii.gz", model="liver@v3", axis=0,
                             unlabelled=["u1.nii.gz", "u2.nii.gz"], budget_seconds=299.6)
    assert args == ["adapt", "--image", "img.nii.gz", "--annotations", "ann.nii.gz", "--axis", "0",
                    "--unlabelled", "u1.nii.gz", "u2.nii.gz", "--model", "liver@v3",
                    "--budget", "300", "-o", "seg.nii.gz", "--device", "auto"]
    scratch = engine.adapt_args("i", "a", "o", new_classes=["Liver", "Spleen"], name="Liver-Spleen",
                                iterations=3, cpu_only=True)
    assert scratch == ["adapt", "--image", "i", "--annotations", "a", "--axis", "auto",
                       "--from-scratch", "--classes", "Liver,Spleen", "--name", "Liver-Spleen",
                       "--iterations", "3", "-o", "o", "--device", "cpu"]
    with pytest.raises(ValueError, match="either a model"):
        engine.adapt_args("i", "a", "o")
    for bad in (["a,b"], [" "], []):
        with pytest.raises(ValueError, match="no comma"):
            engine.adapt_args("i", "a", "o", new_classes=bad)


def test_adapt_command_line_is_accepted_by_the_engines_parser():
    """The engine's own argparse (training/arcoseg/commands/adapt.py) reads what we build."""
    from arcoseg.cli import build_parser
    args = engine.adapt_args("i.nii.gz", "a.nii.gz", "o.nii.gz", new_classes=["a", "b"],
                             name="a-b", axis=0, unlabelled=["u.nii.gz"], budget_seconds=60,
                             iterations=3, cpu_only=True)
    parsed = build_parser().parse_args([*args, "--progress", "json"])
    assert (parsed.command, parsed.from_scratch, parsed.classes, parsed.name) == \
        ("adapt", True, "a,b", "a-b")
    assert [str(p) for p in parsed.image + parsed.annotations + parsed.unlabelled] == \
        ["i.nii.gz", "a.nii.gz", "u.nii.gz"]
    assert (parsed.axis, parsed.budget, parsed.iterations, parsed.device, str(parsed.out)) == \
        ("0", 60.0, 3, "cpu", "o.nii.gz")
    parsed = build_parser().parse_args(engine.adapt_args("i", "a", "o", model="liver@v3"))
    assert parsed.model == "liver@v3" and not parsed.from_scratch and parsed.axis == "auto"


def test_segment_registry_and_device_command_lines_are_accepted_by_the_engines_parser():
    from arcoseg.cli import build_parser
    from ARCOSegmentLib.device import device_args
    from ARCOSegmentLib.models import models_args
    parse = build_parser().parse_args
    seg = parse(engine.segment_args("/m", "/i.nii.gz", "/o.nii.gz", entropy=True, cpu_only=True))
    assert (str(seg.model), [str(i) for i in seg.images], str(seg.out), seg.entropy, seg.device) \
        == ("/m", ["/i.nii.gz"], "/o.nii.gz", True, "cpu")
    assert parse(device_args(cpu_only=True)).device == "cpu"
    assert str(parse(models_args("import", "/models/liver")).path) == "/models/liver"
    for action, spec in (("show", "liver@v2"), ("rollback", "liver"), ("list", None)):
        parsed = parse([*models_args(action, *([spec] if spec else [])), "--progress", "json"])
        assert parsed.action == action and parsed.progress == "json"


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
    out = engine.parse_adapt_result(ADAPT_RESULT)
    assert (out.model.ref, out.model.kind, out.model.parent, out.model.path) == \
        ("liver@v4", "adapted", "liver@v3", "/r/models/liver/versions/v4")
    assert (out.heldout_slice, out.parent_dice, out.adapted_dice, out.activated) == \
        (17, 0.71, 0.802, True)
    assert out.axis == 0 and out.suggested_slices == [23, 7, 41]
    assert out.labels == Path("/w/labels.nii.gz") and (out.iterations, out.seconds) == (400, 118.4)
    assert out.summary() == "liver@v4: held-out slice 17, Dice 0.710 → 0.802 (activated)"


def test_adapt_summary_says_when_a_version_was_not_activated_or_not_checked():
    worse = dict(ADAPT_RESULT, heldout={"slice": 17, "parent_dice": 0.8, "adapted_dice": 0.7,
                                        "activated": False})
    assert engine.parse_adapt_result(worse).summary().endswith(
        "Dice 0.800 → 0.700 (saved, previous version kept active)")
    single = dict(ADAPT_RESULT, heldout={"slice": None, "parent_dice": None,
                                         "adapted_dice": None, "activated": True})
    assert "no held-out check" in engine.parse_adapt_result(single).summary()
    scratch = dict(ADAPT_RESULT, heldout=dict(ADAPT_RESULT["heldout"], parent_dice=None))
    assert "Dice n/a → 0.802" in engine.parse_adapt_result(scratch).summary()


def test_adapt_summary_names_the_nearest_slice_copy_and_a_from_scratch_model_left_inactive():
    beaten = dict(ADAPT_RESULT, heldout={"slice": 17, "parent_dice": None, "copy_dice": 0.65,
                                         "adapted_dice": 0.6, "output_dice": 0.7,
                                         "activated": False})
    out = engine.parse_adapt_result(beaten)
    assert out.copy_dice == 0.65 and out.output_dice == 0.7
    assert out.summary() == ("liver@v4: held-out slice 17, Dice n/a → 0.600; nearest-slice copy "
                             "0.650; segmentation (model + drawing) 0.700 (saved, not active: "
                             "copying the nearest drawn slice scored higher)")
    alone = dict(ADAPT_RESULT, heldout={"slice": 38, "parent_dice": None, "copy_dice": 0.26,
                                        "adapted_dice": 0.91, "output_dice": 0.83,
                                        "fusion_weight": 0.0, "activated": True})
    assert engine.parse_adapt_result(alone).summary().endswith(
        "model + drawing 0.830; the segmentation is the model alone (activated)")


def test_an_adapt_result_without_a_model_version_is_an_engine_error():
    for model in (None, "liver", {"name": "liver"}):
        with pytest.raises(EngineError, match="names no model version"):
            engine.parse_adapt_result(dict(ADAPT_RESULT, model=model))


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
