"""The module's client of the warm engine (ARCOSegmentLib.worker, EngineLogic) against a real
`python -m arcoseg serve` worker: reuse, restart after a crash, cancel, fallback, shutdown."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ARCOSegmentLib.engine import EngineJob, segment_args
from ARCOSegmentLib.logic import EngineLogic
from ARCOSegmentLib.process import EXIT_CANCELLED, EngineError, engine_command
from ARCOSegmentLib.worker import EngineWorker

posix_only = pytest.mark.skipif(os.name == "nt", reason="signals and process groups")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A tiny untrained 2D model folder, a small image, and annotations on three slices."""
    import torch

    from arcoseg.data.plan import Plan
    from arcoseg.data.synthetic import make_phantom
    from arcoseg.model_metadata import ModelMetadata, make_classes
    from arcoseg.modelfile import save_model
    from arcoseg.networks import NetworkConfig, build_model

    root = tmp_path_factory.mktemp("worker")
    config = NetworkConfig(arch="unet2d", in_channels=1, num_classes=3, features=(4, 8, 16, 32, 64))
    torch.manual_seed(0)
    plan = Plan(dims=2, target_spacing=(1.0, 1.0, 1.0), normalization="zscore",
                label_values=[0, 1, 2], patch_size=(32, 32))
    save_model(root / "model", build_model(config).eval(),
               ModelMetadata(network=config, classes=make_classes(["background", "a", "b"]),
                             plan=plan.to_dict()))
    image, labels = make_phantom((6, 32, 32), seed=2)
    drawn = np.zeros_like(sitk.GetArrayFromImage(labels))
    drawn[:, [10, 16, 22], :] = sitk.GetArrayFromImage(labels)[:, [10, 16, 22], :]
    annotations = sitk.GetImageFromArray(drawn)
    annotations.CopyInformation(labels)
    sitk.WriteImage(image, str(root / "img.nii.gz"))
    sitk.WriteImage(annotations, str(root / "ann.nii.gz"))
    return {"model": root / "model", "image": root / "img.nii.gz", "ann": root / "ann.nii.gz"}


@pytest.fixture
def logic(tmp_path):
    logic = EngineLogic(engineEnvironment={"ARCOSEG_HOME": str(tmp_path / "home")},
                        python=sys.executable)
    yield logic
    logic.stopWorker()


def segment(logic, files, out: Path, log=None) -> dict:
    return logic.engine(segment_args(files["model"], files["image"], out, cpu_only=True),
                        log=log)


def long_adapt(files, out: Path) -> list[str]:
    return ["adapt", "--image", str(files["image"]), "--annotations", str(files["ann"]),
            "--from-scratch", "--classes", "a,b", "--iterations", "100000", "--budget", "600",
            "--device", "cpu", "--threads", "1", "-o", str(out)]


def test_every_command_reuses_one_worker_and_gets_the_one_shot_results(logic, files, tmp_path):
    first = segment(logic, files, tmp_path / "1.nii.gz")
    pid = logic.worker.pid
    second = segment(logic, files, tmp_path / "2.nii.gz")
    listed = logic.engine(["models", "list"])
    assert logic.worker.pid == pid and logic.worker.alive
    assert first["classes"] == second["classes"] == ["background", "a", "b"]
    assert "exit_code" in second and listed["versions"] == []
    read = [sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / f"{i}.nii.gz"))) for i in (1, 2)]
    assert np.array_equal(*read) and read[0].shape == (6, 32, 32)


def test_only_the_modules_own_settings_restart_the_worker(logic, files, tmp_path,
                                                           monkeypatch):
    """A hunter's finding: any variable set in Slicer's process (another extension, a script)
    made the next query close the worker, cancelling the Adapt it ran."""
    segment(logic, files, tmp_path / "1.nii.gz")
    pid = logic.worker.pid
    monkeypatch.setenv("SOME_UNRELATED_VARIABLE", "1")
    logic.engine(["models", "list"])
    assert logic.worker.pid == pid
    logic.engineEnvironment["ARCOSEG_HOME"] = str(tmp_path / "other home")
    assert logic.engine(["models", "list"])["home"] == str(tmp_path / "other home")
    assert logic.worker.pid != pid


@posix_only
def test_a_worker_killed_mid_run_fails_that_run_and_the_next_run_restarts_it(logic, files,
                                                                            tmp_path):
    logs: list[str] = []
    job = logic.engine(long_adapt(files, tmp_path / "seg.nii.gz"), wait=False, log=logs.append,
                       progress=lambda e: logs.append(e.get("message", "")))
    deadline = time.monotonic() + 300
    while "training" not in logs and time.monotonic() < deadline:
        job.poll()
        time.sleep(0.05)
    killed = logic.worker.pid
    os.kill(killed, signal.SIGKILL)
    with pytest.raises(EngineError, match="engine worker was stopped by signal 9") as info:
        job.wait(timeout=30)
    assert not info.value.cancelled and not (tmp_path / "seg.nii.gz").exists()
    assert segment(logic, files, tmp_path / "after.nii.gz", log=logs.append)["outputs"]
    assert logic.worker.pid != killed
    assert any("engine worker had stopped" in line for line in logs)


def test_cancel_stops_the_run_cooperatively_and_the_worker_keeps_serving(logic, files, tmp_path):
    progress: list[dict] = []
    job = logic.engine(long_adapt(files, tmp_path / "seg.nii.gz"), wait=False,
                       progress=progress.append)
    deadline = time.monotonic() + 300
    while not any(p.get("message") == "training" for p in progress):
        assert time.monotonic() < deadline
        job.poll()
        time.sleep(0.05)
    pid, asked = logic.worker.pid, time.monotonic()
    job.cancel()
    with pytest.raises(EngineError) as info:
        job.wait(timeout=30)
    assert info.value.cancelled and time.monotonic() - asked < 10
    assert logic.worker.pid == pid and logic.worker.alive  # stopped by itself, not killed
    assert logic.engine(["models", "list"])["versions"] == []  # no half-made version


def _fake_worker(tmp_path: Path, body: str) -> list[str]:
    script = tmp_path / "fake_serve.py"
    script.write_text(textwrap.dedent(body))
    return [sys.executable, str(script)]


@posix_only
def test_a_worker_that_ignores_cancel_is_killed_after_the_grace_period(tmp_path):
    command = _fake_worker(tmp_path, """
        import json, sys
        print(json.dumps({"event": "ready"}), flush=True)
        for line in sys.stdin:  # accepts requests, never answers, ignores cancel and SIGTERM
            import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)
    """)
    worker = EngineWorker(sys.executable, grace_seconds=0.5, command=command).start()
    assert worker.ready.wait(30)
    job = EngineJob([], lambda result: result, runner=lambda cb: worker.run(["device"], cb))
    job.start()
    time.sleep(0.2)
    job.cancel()
    with pytest.raises(EngineError) as info:
        job.wait(timeout=20)
    assert info.value.exit_code == EXIT_CANCELLED and not worker.alive


@pytest.mark.parametrize("answer,then_end", [
    ({"event": "result", "id": ["r1"], "exit_code": 0}, True),  # killed the reader thread
    ({"event": "result", "id": "r1", "exit_code": "0"}, False),
    ({"event": "result", "id": "r1", "answer": 42}, False),  # no exit_code
])
def test_a_malformed_answer_ends_the_run_with_an_error_and_the_worker_still_serves(
        tmp_path, answer, then_end):
    """The tester's finding 8: these hung the run (or every later run) for good."""
    command = _fake_worker(tmp_path, f"""
        import json, sys
        print(json.dumps({{"event": "ready"}}), flush=True)
        for line in sys.stdin:
            request = json.loads(line)
            if request.get("id") == "r1":
                print(json.dumps({answer!r}), flush=True)
                if {then_end!r}:
                    print(json.dumps({{"event": "error", "id": "r1", "exit_code": 2,
                                      "message": "the real end"}}), flush=True)
            elif "argv" in request:
                print(json.dumps({{"event": "result", "id": request["id"], "exit_code": 0,
                                  "answer": 7}}), flush=True)
    """)
    worker = EngineWorker(sys.executable, command=command).start()
    assert worker.ready.wait(30)
    first = EngineJob([], lambda result: result, runner=lambda cb: worker.run(["device"], cb))
    with pytest.raises(EngineError) as info:
        first.wait(timeout=20)
    assert not info.value.cancelled
    second = EngineJob([], lambda result: result, runner=lambda cb: worker.run(["device"], cb))
    assert second.wait(timeout=20)["answer"] == 7
    worker.close()


def test_runs_fall_back_to_one_shot_processes_when_the_worker_cannot_start(tmp_path):
    command = _fake_worker(tmp_path, "import sys; sys.exit(2)  # an engine without `serve`\n")
    worker = EngineWorker(sys.executable, command=command).start()
    runs = []

    def runner(callbacks):
        runs.append(worker.run(["device", "--device", "cpu"], callbacks))
        return runs[-1]
    result = EngineJob([], lambda result: result, runner=runner).wait(timeout=120)
    assert result["device"] == "cpu" and runs[0].fallback is not None
    assert runs[0].fallback.command == engine_command(["device", "--device", "cpu"],
                                                      sys.executable)


def test_stop_worker_ends_the_worker_even_while_it_runs(logic, files, tmp_path):
    job = logic.engine(long_adapt(files, tmp_path / "seg.nii.gz"), wait=False)
    worker = logic.worker
    time.sleep(1.0)
    logic.stopWorker()
    assert not worker.alive and logic.worker is None
    with pytest.raises(EngineError):
        job.wait(timeout=30)
