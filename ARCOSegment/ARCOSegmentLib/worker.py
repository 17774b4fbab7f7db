"""A warm engine: one `python -m arcoseg serve` child reused for every run. No Slicer import.

The worker reads JSON-lines requests ({"id": …, "argv": [...]}, {"cancel": id},
{"shutdown": true}) and answers with the one-shot `--progress json` events, each carrying its
request's id; a request's last event holds its "exit_code" (training/arcoseg/serve.py). A
`WorkerRun` is one request: it has EngineProcess's interface (start, poll, wait, cancel, outcome),
so an EngineJob runs on either. Cancel asks the worker first and kills its process tree if the
run has not ended `grace_seconds` later. A worker that exits before its `ready` event (an engine
without `serve`, a broken install) is not used: its runs are started as one-shot processes.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections import deque
from typing import Any, Mapping, Sequence

from ARCOSegmentLib.events import EXIT_INTERNAL, EngineCallbacks, EngineError, parse_line
from ARCOSegmentLib.process import (EngineProcess, _Exited, _terminate_tree, engine_command,
                                    launch, start_readers)

_STDERR_TAIL_LINES = 20


class EngineWorker:
    """The `arcoseg serve` child: starts it, routes its events to the runs, stops it."""

    def __init__(self, python: str, env: Mapping[str, str] | None = None,
                 grace_seconds: float = 5.0, command: Sequence[str] | None = None) -> None:
        """`command` defaults to `python -m arcoseg serve`; `python` also runs the one-shot
        fallback."""
        self.python, self.env = python, dict(env) if env is not None else None
        self.command = list(command or [python, "-m", "arcoseg", "serve"])
        self.grace_seconds = grace_seconds
        self.ready = threading.Event()  # the worker has announced itself
        self.stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
        self._proc: subprocess.Popen | None = None
        self._runs: dict[str, WorkerRun] = {}
        self._lock = threading.Lock()
        self._next_id = 0

    def start(self) -> EngineWorker:
        """Launch the worker; EngineError if it cannot be started."""
        try:
            self._proc = launch(self.command, self.env, stdin=subprocess.PIPE)
        except OSError as err:
            raise EngineError(f"Cannot start the engine worker ({self.python}): "
                              f"{err.strerror or err}.") from err
        start_readers([self._read_events, self._read_stderr], self._watch)
        return self

    @property
    def pid(self) -> int | None:
        """The worker's process id (also its process-group id on POSIX)."""
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        """True while the worker process runs."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """The worker's exit status once it has exited."""
        return self._proc.returncode if self._proc else None

    def run(self, args: Sequence[str], callbacks: EngineCallbacks | None = None,
            fallback_env: Mapping[str, str] | None = None) -> WorkerRun:
        """A (not yet started) run of `arcoseg ARGS` in this worker."""
        with self._lock:
            self._next_id += 1
            run_id = f"r{self._next_id}"
        return WorkerRun(self, run_id, [str(a) for a in args], callbacks, fallback_env)

    def close(self, timeout: float = 3.0) -> None:
        """Cancel everything, ask the worker to exit, and kill its tree if it has not after
        `timeout` seconds (Slicer is closing)."""
        if not self.alive:
            return
        try:
            self.send({"shutdown": True})
            self._proc.stdin.close()
        except (EngineError, OSError):
            pass
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self._proc.wait(timeout)

    def kill(self) -> None:
        """Stop the worker's whole process tree now (SIGTERM, then SIGKILL)."""
        if self._proc is not None and self._proc.poll() is None:
            _terminate_tree(self._proc, force=False)
            try:
                self._proc.wait(1.0)
            except subprocess.TimeoutExpired:
                pass
            _terminate_tree(self._proc, force=True)

    def send(self, request: dict[str, Any]) -> None:
        """Write one request line; EngineError if the worker is gone."""
        with self._lock:
            try:
                self._proc.stdin.write(json.dumps(request) + "\n")
                self._proc.stdin.flush()
            except (OSError, ValueError) as err:  # broken pipe, closed stdin
                raise EngineError("The engine worker is not running.") from err

    def _register(self, run: WorkerRun) -> None:
        with self._lock:
            self._runs[run.run_id] = run

    def _read_events(self) -> None:
        for line in self._proc.stdout:
            event = parse_line(line, final_fields=("exit_code",))
            if event["event"] == "ready":
                self.ready.set()
                continue
            with self._lock:
                run = self._runs.get(event.get("id"))
            if run is None:
                continue  # cancel/shutdown acknowledgements; lines without a request
            run._queue.put(event)
            if event["event"] in ("result", "error"):  # a request's last event
                with self._lock:
                    self._runs.pop(run.run_id, None)
                run._end(event["exit_code"])

    def _read_stderr(self) -> None:
        for line in self._proc.stderr:
            text = line.rstrip("\r\n")
            self.stderr_tail.append(text)
            with self._lock:
                runs = list(self._runs.values())
            for run in runs:  # untagged: show it to whatever is running
                run._stderr_tail.append(text)
                run._queue.put({"event": "log", "message": text, "stream": "stderr"})

    def _watch(self, readers: list[threading.Thread]) -> None:
        returncode = self._proc.wait()
        for reader in readers:
            reader.join(5.0)
        with self._lock:
            runs, self._runs = list(self._runs.values()), {}
        for run in runs:
            run._worker_died(returncode)


class WorkerRun(EngineProcess):
    """One request to the worker, seen as an engine process (events, result, cancel)."""

    def __init__(self, worker: EngineWorker, run_id: str, args: list[str],
                 callbacks: EngineCallbacks | None, fallback_env: Mapping[str, str] | None
                 ) -> None:
        super().__init__(engine_command(args, worker.python), env=fallback_env,
                         callbacks=callbacks, grace_seconds=worker.grace_seconds)
        self.worker, self.run_id, self.args = worker, run_id, args
        self.fallback: EngineProcess | None = None  # a one-shot process if the worker failed
        self._ended = threading.Event()
        self._died = False
        self._started = False

    def start(self) -> WorkerRun:
        """Send the request (or start a one-shot process if the worker is not usable)."""
        if self._started:
            raise RuntimeError("This run was already started.")
        self._started = True
        self.worker._register(self)
        try:
            self.worker.send({"id": self.run_id, "argv": self.args})
        except EngineError:
            self._worker_died(self.worker.returncode or EXIT_INTERNAL)
        return self

    @property
    def pid(self) -> int | None:
        """The process doing the work: the worker, or the one-shot fallback."""
        return self.fallback.pid if self.fallback else self.worker.pid

    @property
    def returncode(self) -> int | None:
        """The run's exit code once it has ended."""
        if self.fallback is not None:
            return self.fallback.returncode
        return self._returncode if self._ended.is_set() else None

    @property
    def started(self) -> bool:
        return self._started

    @property
    def finished(self) -> bool:
        return self.fallback.finished if self.fallback else super().finished

    def _dispatch(self, block_seconds: float) -> None:
        # EngineProcess's poll() and wait() drive this run through here, so they serve the
        # one-shot fallback too.
        if self.fallback is not None:
            self.fallback._dispatch(block_seconds)
        else:
            super()._dispatch(block_seconds)

    def outcome(self) -> dict[str, Any]:
        return self.fallback.outcome() if self.fallback else super().outcome()

    def cancel(self) -> None:
        """Ask the worker to stop this run; kill the worker's tree if it has not ended after
        `grace_seconds` (the next run starts a new worker)."""
        if self.fallback is not None:
            self.fallback.cancel()
            return
        if self._cancel_requested or self._ended.is_set() or not self._started:
            return
        self._cancel_requested = True
        try:
            self.worker.send({"id": f"cancel-{self.run_id}", "cancel": self.run_id})
        except EngineError:
            return  # the worker is gone: the run ends with it

        def kill_after_grace() -> None:
            if not self._ended.wait(self.grace_seconds):
                self.worker.kill()
        threading.Thread(target=kill_after_grace, daemon=True).start()

    # -- called from the worker's threads --------------------------------------------------------

    def _end(self, returncode: int) -> None:
        self._returncode = returncode
        self._ended.set()
        self._queue.put(_Exited(returncode))

    def _worker_died(self, returncode: int) -> None:
        if self._ended.is_set():
            return
        if not self.worker.ready.is_set() and not self._cancel_requested:
            # The worker never came up: run this request the one-shot way instead.
            self.fallback = EngineProcess(self.command, env=self.env, callbacks=self.callbacks,
                                          grace_seconds=self.grace_seconds)
            try:
                self.fallback.start()
            except EngineError as err:
                self.fallback = None
                self._error_event = {"message": str(err), "exit_code": EXIT_INTERNAL}
            else:
                self._ended.set()
                return
        self._died = True
        self._end(returncode if returncode else EXIT_INTERNAL)

    def _error_for(self, returncode: int) -> EngineError | None:
        if self._died and not self._cancel_requested and self._error_event is None:
            how = (f"was stopped by signal {-returncode}" if returncode < 0
                   else f"stopped with exit code {returncode}")
            return EngineError(f"The engine worker {how} during this run; a new one starts with "
                               f"the next run. {self._stderr_hint()}", EXIT_INTERNAL)
        return super()._error_for(returncode)
