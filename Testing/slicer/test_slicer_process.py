"""The engine process runner against real child processes speaking the JSON-lines protocol."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ARCOSegmentLib.process import (EXIT_CANCELLED, EngineCallbacks, EngineError, EngineProcess,
                                    engine_command, engine_environment, parse_line,
                                    python_executable)

posix_only = pytest.mark.skipif(os.name == "nt", reason="process-group checks use /proc and signals")


class Recorder:
    """Collects every callback with the thread it ran on."""

    def __init__(self) -> None:
        self.progress, self.logs, self.results, self.errors, self.threads = [], [], [], [], set()
        self.callbacks = EngineCallbacks(progress=self._on(self.progress), log=self._on(self.logs),
                                         result=self._on(self.results), error=self._on(self.errors))

    def _on(self, sink):
        def record(value):
            import threading
            self.threads.add(threading.get_ident())
            sink.append(value)
        return record


def alive(pid: int) -> bool:
    """A process exists and is not a zombie (an unreaped zombie has already stopped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def wait_until(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_json_lines_become_events_and_anything_else_a_log_line():
    assert parse_line('{"event": "progress", "step": 1, "total": 2}\n')["event"] == "progress"
    assert parse_line("plain text\n") == {"event": "log", "message": "plain text"}
    assert parse_line('{"no_event": 1}') == {"event": "log", "message": '{"no_event": 1}'}
    assert parse_line("[1, 2]") == {"event": "log", "message": "[1, 2]"}


@pytest.mark.parametrize("line,bad", [
    ('{"event": "result", "id": ["r1"], "exit_code": 0}', "id"),
    ('{"event": "result", "id": "r1", "exit_code": "0"}', "exit_code"),
    ('{"event": "error", "id": "r1", "exit_code": null}', "exit_code"),
    ('{"event": "progress", "id": "r1", "step": 1, "total": "ten"}', "total"),
])
def test_events_with_fields_of_the_wrong_type_become_errors_of_their_run(line, bad):
    """The tester's finding 8: a list id killed the worker's reader thread (every run hung), a
    string exit code made poll() raise and the run never end."""
    event = parse_line(line)
    assert event["event"] == "error" and event["exit_code"] == 1
    assert event["id"] == ("r1" if bad != "id" else None)
    assert f"missing or invalid {bad}" in event["message"]


def test_a_final_event_without_the_required_fields_is_an_error():
    line = '{"event": "result", "id": "r1", "answer": 42}'
    assert parse_line(line)["event"] == "result"  # the one-shot protocol has no exit_code
    assert parse_line(line, final_fields=("exit_code",))["event"] == "error"


def test_engine_command_runs_the_package_with_json_progress():
    command = engine_command(["segment", Path("m"), "img.nii.gz"], python="/py")
    assert command == ["/py", "-m", "arcoseg", "segment", "m", "img.nii.gz", "--progress", "json"]
    assert python_executable()  # outside Slicer: this interpreter
    assert engine_command(["device"])[0] == python_executable()


def test_cpu_override_hides_gpus_and_overrides_can_remove_variables():
    env = engine_environment({"A": "1", "B": None}, cpu_only=True, base={"B": "x", "C": "y"})
    assert env["CUDA_VISIBLE_DEVICES"] == "-1" and env["A"] == "1" and env["C"] == "y"
    assert "B" not in env
    assert "CUDA_VISIBLE_DEVICES" not in engine_environment(base={})


def test_successful_run_dispatches_progress_logs_and_the_result_on_the_waiting_thread(fake_engine):
    import threading
    rec = Recorder()
    result = EngineProcess([*fake_engine, "ok"], callbacks=rec.callbacks).wait(timeout=30)
    assert result["answer"] == 42 and "event" not in result
    assert [p["step"] for p in rec.progress] == [1, 2, 3]
    assert rec.progress[0]["message"] == "step 1" and rec.progress[0]["loss"] == 0.5
    assert "starting" in rec.logs
    assert "this line is not JSON" in rec.logs and '{"no_event_key": 1}' in rec.logs
    assert "a warning on stderr" in rec.logs
    assert rec.results == [result] and rec.errors == []
    assert rec.threads == {threading.get_ident()}


def test_poll_dispatches_nothing_until_called_then_reports_completion(fake_engine):
    rec = Recorder()
    proc = EngineProcess([*fake_engine, "ok"], callbacks=rec.callbacks).start()
    assert wait_until(lambda: proc._proc.poll() is not None)
    assert rec.progress == [] and rec.results == []  # events wait for the GUI thread
    assert wait_until(lambda: not proc.poll())
    assert proc.finished and rec.results[0]["answer"] == 42
    assert proc.outcome()["answer"] == 42


def test_engine_error_event_surfaces_with_its_message_exit_code_and_kind(fake_engine):
    rec = Recorder()
    with pytest.raises(EngineError) as info:
        EngineProcess([*fake_engine, "error"], callbacks=rec.callbacks).wait(timeout=30)
    assert str(info.value) == "Input x.nii.gz does not exist. Check the path."
    assert info.value.exit_code == 2 and info.value.kind == "InputError"
    assert not info.value.cancelled
    assert rec.errors == [info.value] and rec.results == []


def test_crash_without_error_event_reports_exit_code_and_stderr_tail(fake_engine):
    with pytest.raises(EngineError) as info:
        EngineProcess([*fake_engine, "crash"]).wait(timeout=30)
    assert info.value.exit_code == 1
    assert "exit code 1" in str(info.value) and "ZeroDivisionError" in str(info.value)


def test_clean_exit_without_result_is_an_error(fake_engine):
    with pytest.raises(EngineError, match="without reporting a result"):
        EngineProcess([*fake_engine, "noresult"]).wait(timeout=30)


def test_missing_interpreter_is_a_readable_error():
    with pytest.raises(EngineError, match="Cannot start the segmentation engine"):
        EngineProcess(["/nonexistent/PythonSlicer", "-m", "arcoseg"]).start()


def test_environment_reaches_the_child(fake_engine):
    env = engine_environment({"ARCOSEG_TEST_VAR": "hello"}, cpu_only=True)
    result = EngineProcess([*fake_engine, "env"], env=env).wait(timeout=30)
    assert result == {"cuda": "-1", "extra": "hello", "unbuffered": "1"}


def _start_tree(fake_engine, mode: str, grace: float) -> tuple[EngineProcess, Recorder, int]:
    rec = Recorder()
    proc = EngineProcess([*fake_engine, mode], callbacks=rec.callbacks, grace_seconds=grace).start()
    assert wait_until(lambda: (proc.poll(), len(rec.progress) >= 2)[1])
    grandchild = int(next(m for m in rec.logs if m.startswith("grandchild")).split()[1])
    assert alive(proc.pid) and alive(grandchild)
    return proc, rec, grandchild


@posix_only
def test_cancel_stops_a_cooperative_engine_and_kills_its_whole_tree(fake_engine):
    proc, rec, grandchild = _start_tree(fake_engine, "tree", grace=0.5)
    started = time.monotonic()
    proc.cancel()
    assert time.monotonic() - started < 0.5  # cancel never blocks the GUI
    with pytest.raises(EngineError) as info:
        proc.wait(timeout=30)
    assert info.value.cancelled and info.value.exit_code == EXIT_CANCELLED
    assert rec.errors == [info.value]
    assert wait_until(lambda: not alive(grandchild))
    assert not alive(proc.pid)


@posix_only
def test_cancel_kills_an_engine_that_ignores_sigterm_after_the_grace_period(fake_engine):
    proc, _, grandchild = _start_tree(fake_engine, "stubborn", grace=0.5)
    proc.cancel()
    time.sleep(0.2)
    assert alive(proc.pid)  # still in its grace period
    with pytest.raises(EngineError) as info:
        proc.wait(timeout=30)
    assert info.value.cancelled
    assert wait_until(lambda: not alive(grandchild))


def test_wait_timeout_cancels_the_run(fake_engine):
    proc = EngineProcess([*fake_engine, "tree"], grace_seconds=0.5)
    with pytest.raises(EngineError) as info:
        proc.wait(timeout=1.0)
    assert info.value.cancelled


def test_cancel_before_start_or_after_the_end_is_harmless(fake_engine):
    proc = EngineProcess([*fake_engine, "ok"])
    proc.cancel()
    assert proc.wait(timeout=30)["answer"] == 42
    proc.cancel()
    assert proc.outcome()["answer"] == 42


def test_cancel_after_the_result_arrived_keeps_the_result(fake_engine):
    """The tester's finding 9: Cancel pressed while the engine tore down after its result said
    'Cancelled.' and dropped it, though Adapt had already registered the new version."""
    logs: list[str] = []
    proc = EngineProcess([*fake_engine, "slow_exit"], grace_seconds=0.5,
                         callbacks=EngineCallbacks(log=logs.append)).start()
    assert wait_until(lambda: (proc.poll(), "tearing down" in logs)[1])  # the result came first
    proc.cancel()
    assert proc.wait(timeout=30)["answer"] == 42


def test_a_process_cannot_be_started_twice(fake_engine):
    proc = EngineProcess([*fake_engine, "ok"]).start()
    with pytest.raises(RuntimeError):
        proc.start()
    proc.wait(timeout=30)
