"""A real `arcoseg serve` child process for tests, its events collected by a reader thread."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

TRAINING = Path(__file__).resolve().parents[1] / "training"


class Worker:
    """A real `arcoseg serve` child; events are collected by a reader thread."""

    def __init__(self, home: Path, *extra: str) -> None:
        env = {**os.environ, "ARCOSEG_HOME": str(home), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(TRAINING), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen([sys.executable, "-m", "arcoseg", "serve", *extra],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env, text=True, bufsize=1)
        self.events: queue.Queue = queue.Queue()
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            self.events.put(json.loads(line))  # every stdout line must be a JSON event
        self.events.put(None)

    def send(self, request: dict | str) -> None:
        self.proc.stdin.write((request if isinstance(request, str) else json.dumps(request)) + "\n")
        self.proc.stdin.flush()

    def next(self, timeout: float = 60) -> dict:
        event = self.events.get(timeout=timeout)
        assert event is not None, "the worker closed its stdout"
        return event

    def until(self, predicate, timeout: float = 60) -> list[dict]:
        """Events up to and including the first that satisfies `predicate`."""
        seen = []
        deadline = time.monotonic() + timeout
        while not seen or not predicate(seen[-1]):
            seen.append(self.next(max(0.1, deadline - time.monotonic())))
        return seen

    def final(self, request_id, timeout: float = 60) -> tuple[dict, list[dict]]:
        """(final event, every event of `request_id`) once `request_id` has ended."""
        events = self.until(lambda e: e.get("id") == request_id and "exit_code" in e, timeout)
        mine = [e for e in events if e.get("id") == request_id]
        return mine[-1], mine

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
