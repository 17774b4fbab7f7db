"""Run the engine (`python -m arcoseg …`) as a child process and turn its output into events.

The engine prints one JSON object per line on stdout when given `--progress json`:
``{"event": "progress" | "log" | "result" | "error", ...}``. Any other line (stdout or stderr:
warnings, tracebacks) becomes a log event. Reader threads only queue events; `poll()` (called
from a Qt timer in the GUI) or `wait()` (blocking use) dispatches them on the caller's thread, so
callbacks may touch the scene and widgets.

The child runs in its own process group (POSIX session / Windows process group) so that `cancel()`
can stop the whole tree, including any worker processes the engine started. No Slicer import.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ARCOSegmentLib.events import (EXIT_CANCELLED, EXIT_INTERNAL, EXIT_OK, EngineCallbacks,
                                   EngineError, parse_line)

_STDERR_TAIL_LINES = 20
_READER_DRAIN_SECONDS = 5.0


def python_executable() -> str:
    """The interpreter for the engine: PythonSlicer inside Slicer, else the running Python.

    Inside Slicer `sys.executable` is the application itself; PythonSlicer (next to Python's
    scripts) is the launcher that runs Slicer's Python with the right environment.
    """
    name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
    candidate = Path(sysconfig.get_path("scripts")) / name
    return str(candidate) if candidate.is_file() else sys.executable


def engine_command(args: Sequence[str], python: str | None = None) -> list[str]:
    """`python -m arcoseg ARGS --progress json`."""
    return [python or python_executable(), "-m", "arcoseg", *map(str, args), "--progress", "json"]


def engine_environment(overrides: Mapping[str, str | None] | None = None, cpu_only: bool = False,
                       base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: `base` (default os.environ) plus overrides (None removes a
    variable); `cpu_only` hides every GPU (CUDA_VISIBLE_DEVICES=-1)."""
    env = dict(os.environ if base is None else base)
    for key, value in (overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    if cpu_only:
        env["CUDA_VISIBLE_DEVICES"] = "-1"
    return env


@dataclass
class _Exited:
    returncode: int


class EngineProcess:
    """One engine run: start, follow its events, cancel, and get its result or EngineError."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str] | None = None,
                 callbacks: EngineCallbacks | None = None, grace_seconds: float = 5.0) -> None:
        self.command = [str(c) for c in command]
        self.env = dict(env) if env is not None else None
        self.callbacks = callbacks or EngineCallbacks()
        self.grace_seconds = grace_seconds
        self._queue: queue.Queue = queue.Queue()
        self._proc: subprocess.Popen | None = None
        self._stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
        self._result: dict[str, Any] | None = None
        self._error_event: dict[str, Any] | None = None
        self._cancel_requested = False
        self._outcome: tuple[dict[str, Any] | None, EngineError | None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> EngineProcess:
        """Launch the child and its reader threads; EngineError if it cannot be started."""
        if self._proc is not None:
            raise RuntimeError("This engine process was already started.")
        try:
            self._proc = launch(self.command, self.env, stdin=subprocess.DEVNULL)
        except OSError as err:
            raise EngineError(f"Cannot start the segmentation engine ({self.command[0]}): "
                              f"{err.strerror or err}. Check that Slicer's Python is installed "
                              "and the ARCOSegment dependencies are set up.") from err
        start_readers([lambda: self._read(self._proc.stdout, False),
                       lambda: self._read(self._proc.stderr, True)], self._watch)
        return self

    @property
    def pid(self) -> int | None:
        """The child's process id (also its process-group id on POSIX)."""
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        """The child's exit status once it has exited (EXIT_CANCELLED: it stopped by itself)."""
        return self._proc.returncode if self._proc else None

    @property
    def started(self) -> bool:
        """True once `start()` has launched the run."""
        return self._proc is not None

    @property
    def finished(self) -> bool:
        """True once the outcome is known and every event has been dispatched."""
        return self._outcome is not None

    def poll(self) -> bool:
        """Dispatch the events received so far; return True while the run is still going."""
        self._dispatch(block_seconds=0.0)
        return not self.finished

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until the run ends, dispatching events; return the result or raise EngineError.

        Starts the process if needed. After `timeout` seconds the run is cancelled."""
        if not self.started:
            self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.finished:
            if deadline is not None and time.monotonic() >= deadline:
                self.cancel()
                deadline = None
            self._dispatch(block_seconds=0.1)
        return self.outcome()

    def outcome(self) -> dict[str, Any]:
        """The result of a finished run, or raise its EngineError."""
        if self._outcome is None:
            raise RuntimeError("The engine process has not finished yet.")
        result, error = self._outcome
        if error is not None:
            raise error
        return result  # type: ignore[return-value]

    def cancel(self) -> None:
        """Stop the whole process tree: a polite signal now, a kill after `grace_seconds`."""
        if self._proc is None or self._cancel_requested or self._proc.poll() is not None:
            return
        self._cancel_requested = True
        _terminate_tree(self._proc, force=False)
        threading.Thread(target=self._kill_after_grace, daemon=True).start()

    # -- threads ---------------------------------------------------------------------------------

    def _read(self, stream, is_stderr: bool) -> None:
        for line in stream:
            if is_stderr:
                self._stderr_tail.append(line.rstrip())
                self._queue.put({"event": "log", "message": line.rstrip("\r\n"), "stream": "stderr"})
            else:
                self._queue.put(parse_line(line))
        stream.close()

    def _watch(self, readers: list[threading.Thread]) -> None:
        returncode = self._proc.wait()
        for reader in readers:  # a grandchild holding the pipes open must not block the outcome
            reader.join(_READER_DRAIN_SECONDS)
        self._queue.put(_Exited(returncode))

    def _kill_after_grace(self) -> None:
        try:
            self._proc.wait(self.grace_seconds)
        except subprocess.TimeoutExpired:
            pass
        _terminate_tree(self._proc, force=True)  # also reaps workers left behind by the child

    # -- dispatching (caller's thread) -----------------------------------------------------------

    def _dispatch(self, block_seconds: float) -> None:
        block = block_seconds > 0
        while not self.finished:
            try:
                item = self._queue.get(block=block, timeout=block_seconds if block else None)
            except queue.Empty:
                return
            block = False  # after the first item, take only what is already there
            if isinstance(item, _Exited):
                self._finish(item.returncode)
            else:
                self._handle(item)

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "progress" and self.callbacks.progress:
            self.callbacks.progress(event)
        elif kind == "log" and self.callbacks.log:
            self.callbacks.log(str(event.get("message", "")))
        elif kind == "result":
            self._result = {k: v for k, v in event.items() if k != "event"}
        elif kind == "error":
            self._error_event = event
            if self.callbacks.log:
                self.callbacks.log(f"Error: {event.get('message', '')}")

    def _finish(self, returncode: int) -> None:
        error = self._error_for(returncode)
        self._outcome = (None if error else self._result, error)
        if error is not None and self.callbacks.error:
            self.callbacks.error(error)
        elif error is None and self.callbacks.result:
            self.callbacks.result(self._result)

    def _error_for(self, returncode: int) -> EngineError | None:
        if self._cancel_requested and (self._result is None or self._error_event is not None):
            return EngineError("Cancelled.", EXIT_CANCELLED, "Cancelled")
        if self._cancel_requested:  # the result came before the cancel: the work is done
            return None  # (an adapted model is already registered: never hide it)
        if self._error_event is not None:
            event = self._error_event
            code = event.get("exit_code")
            return EngineError(str(event.get("message") or "The engine reported an error."),
                               code if isinstance(code, int) else (returncode or EXIT_INTERNAL),
                               str(event.get("kind") or "internal"))
        if returncode == EXIT_OK and self._result is not None:
            return None
        if returncode == EXIT_OK:
            return EngineError("The engine finished without reporting a result. "
                               + self._stderr_hint(), EXIT_INTERNAL)
        how = (f"was stopped by signal {-returncode}" if returncode < 0
               else f"stopped with exit code {returncode}")
        return EngineError(f"The segmentation engine {how}. {self._stderr_hint()}",
                           returncode if returncode > 0 else EXIT_INTERNAL)

    def _stderr_hint(self) -> str:
        if not self._stderr_tail:
            return "It printed nothing on stderr."
        return "Last messages:\n" + "\n".join(self._stderr_tail)


def start_readers(readers: Sequence[Callable[[], None]],
                  watch: Callable[[list[threading.Thread]], None]) -> None:
    """Run each reader on a daemon thread, and `watch(threads)` on one more (it joins them and
    settles the outcome once the child's pipes are drained)."""
    threads = [threading.Thread(target=reader, daemon=True) for reader in readers]
    for thread in threads:
        thread.start()
    threading.Thread(target=watch, args=(threads,), daemon=True).start()


def launch(command: Sequence[str], env: Mapping[str, str] | None, stdin: int) -> subprocess.Popen:
    """A child in its own process group, stdout and stderr as UTF-8 text pipes; OSError if it
    cannot start."""
    return subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, encoding="utf-8", errors="replace", bufsize=1, env=env,
                            **_new_group_kwargs())


def _new_group_kwargs() -> dict[str, Any]:
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP
                | getattr(subprocess, "CREATE_NO_WINDOW", 0)}
    return {"start_new_session": True}


def _terminate_tree(proc: subprocess.Popen, force: bool) -> None:
    """SIGTERM (or SIGKILL) to the child's whole process group; on Windows `taskkill /T`."""
    if os.name == "nt":
        # Windows has no process-group signals a console-less child can handle: taskkill /T
        # walks the tree from the child; /F on the forced pass.
        subprocess.run(["taskkill", "/PID", str(proc.pid), "/T", *(["/F"] if force else [])],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL if force else signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass  # the whole group is gone already
