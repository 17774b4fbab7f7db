"""The worker's lanes (`arcoseg serve`): a queue of parsed requests run one at a time by a thread.

Each request runs exactly as the one-shot command does (arcoseg.cli.run_command: same handler,
same errors and exit codes), with its own stop flag, which `cancel` sets: the command's long loops
poll it and stop within an iteration, leaving files and the registry as a cancelled one-shot run
does.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import threading
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from arcoseg.allocator import release_freed_memory
from arcoseg.cli import StopFlag, run_command
from arcoseg.errors import EXIT_CANCELLED, EXIT_INTERNAL
from arcoseg.progress import JsonReporter

# Imported by the heavy lane before its first request, so that even that one finds torch and
# MONAI loaded (seconds on a CPU machine).
HEAVY_WARMUP = ("arcoseg.inference", "arcoseg.adapt.run", "arcoseg.train.trainer")
_ENGINE_IMPORT = threading.Lock()
_engine_imported = False
# The heavy lane keeps the memory its last request freed for this many idle seconds: a next
# Segment or Adapt that comes sooner reuses those pages instead of faulting in fresh ones
# (arcoseg.allocator); then it gives the memory back, so that an idle worker holds little more
# than its models.
RELEASE_AFTER_IDLE_S = 30.0


@dataclass
class Request:
    """A parsed command line waiting for, or taking, its turn."""

    id: Any
    args: argparse.Namespace
    reporter: JsonReporter
    stop: StopFlag = field(default_factory=StopFlag)
    imports_engine: bool = True  # False: a registry query that imports no torch or MONAI


def _answering(request: Request, request_id: Any) -> bool:
    """Whether `request` is `request_id` and has not sent its final event yet: once it has, a
    client may reuse the id while the lane still gives memory back (`serve.RequestReporter`)."""
    return request.id == request_id and not getattr(request.reporter, "finished", False)


def import_engine() -> None:
    """Import HEAVY_WARMUP (torch, MONAI, the engine) once, one thread at a time. Two lanes
    importing MONAI at once (a `models show` during the heavy lane's warm-up) left a partially
    initialised module behind: that request and every later segment of the worker failed
    (exit 1). ImportError etc. propagate to the request that needed the import."""
    global _engine_imported
    if _engine_imported:
        return
    with _ENGINE_IMPORT:
        for module in HEAVY_WARMUP:
            importlib.import_module(module)
        _engine_imported = True


class Lane:
    """One thread running its queue's requests in order; `finish` waits for the queue to drain."""

    def __init__(self, name: str, channel: Any, warmup: bool = False) -> None:
        self.name, self.channel, self.warmup = name, channel, warmup
        self._queue: deque[Request] = deque()
        self._current: Request | None = None
        self._closed = False
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"arcoseg-{name}", daemon=True)
        self._default_threads: int | None = None
        self._holding = False  # memory freed by the last request not yet given back

    def start(self) -> None:
        """Start the lane's thread."""
        self._thread.start()

    def put(self, request: Request) -> None:
        """Queue `request` behind the others."""
        with self._ready:
            self._queue.append(request)
            self._ready.notify()

    def knows(self, request_id: Any) -> bool:
        """True while `request_id` is queued or running here (not once its final event is out)."""
        with self._ready:
            return any(_answering(r, request_id) for r in self._all())

    def cancel(self, request_id: Any) -> str | None:
        """'running' (asked to stop), 'queued' (dropped, with a Cancelled error) or None."""
        with self._ready:
            if self._current is not None and _answering(self._current, request_id):
                self._current.stop.requested = True
                return "running"
            dropped = [r for r in self._queue if r.id == request_id]
            for request in dropped:
                self._queue.remove(request)
        for request in dropped:
            request.reporter.error("Cancelled before it started.", exit_code=EXIT_CANCELLED,
                                   kind="Cancelled")
        return "queued" if dropped else None

    def cancel_all(self) -> None:
        """Cancel the running request and drop every queued one."""
        with self._ready:
            ids = [r.id for r in self._all()]
        for request_id in ids:
            self.cancel(request_id)

    def finish(self) -> None:
        """Accept nothing more, run what is queued, and wait for the thread to end."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join()

    def _all(self) -> list[Request]:
        return [*([self._current] if self._current else []), *self._queue]

    def _run(self) -> None:
        self._warm_up()
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    if not self._ready.wait(RELEASE_AFTER_IDLE_S if self._holding else None):
                        release_freed_memory()  # idle that long: give the memory back
                        self._holding = False
                if not self._queue:
                    return
                self._current = self._queue.popleft()
            try:
                self._execute(self._current)
            finally:
                with self._ready:
                    self._current = None

    def _reset_threads(self) -> None:
        """Heavy lane: --threads of an earlier request must not leak into this one. Only once
        torch is imported; `import` (not sys.modules) because the quick lane may be importing
        it right now (`serve --no-warmup`), and the import waits until that has finished."""
        if self.name != "heavy" or "torch" not in sys.modules:
            return
        import torch

        self._default_threads = self._default_threads or torch.get_num_threads()
        torch.set_num_threads(self._default_threads)

    def _warm_up(self) -> None:
        if self.warmup:
            try:
                import_engine()
            except Exception as err:  # the request that needs it will report the problem
                print(f"arcoseg serve: could not preload the engine: {err!r}", file=sys.stderr)
        # only after import_engine: torch may be half-imported by another lane (a light lane
        # that read it then died with an AttributeError, and its requests went unanswered)
        if self.warmup and "torch" in sys.modules:
            self._default_threads = sys.modules["torch"].get_num_threads()

    def _execute(self, request: Request) -> None:
        """Run one request as the one-shot command would; always end with result or error."""
        try:
            if request.imports_engine:
                import_engine()  # waits while another lane imports it
            self._reset_threads()
            code = run_command(request.args, request.reporter, request.stop)
        except BaseException as err:  # noqa: BLE001 - a request must never end the worker
            traceback.print_exc(file=sys.stderr)
            request.reporter.error(f"Internal error: {type(err).__name__}: {err}.",
                                   exit_code=EXIT_INTERNAL, kind="internal")
            code = EXIT_INTERNAL
        if code == EXIT_INTERNAL:  # e.g. out of memory: give the memory back now
            from arcoseg.serve_cache import clear_cache

            clear_cache()
            release_freed_memory()
        # else kept for the next request, given back after RELEASE_AFTER_IDLE_S idle
        self._holding = self.name == "heavy" and code != EXIT_INTERNAL
