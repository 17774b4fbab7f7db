"""The serve worker's heavy lane keeps the memory a request freed while the next click may come,
and gives it back once idle (arcoseg.serve_lanes.RELEASE_AFTER_IDLE_S)."""

from __future__ import annotations

import argparse
import time

import pytest

from arcoseg import serve_lanes
from arcoseg.errors import EXIT_INTERNAL
from arcoseg.progress import Reporter

IDLE = 0.8  # seconds, for the test


@pytest.fixture
def lane(monkeypatch):
    """A heavy lane whose requests return the exit code in their args, recording releases."""
    releases: list[float] = []
    monkeypatch.setattr(serve_lanes, "RELEASE_AFTER_IDLE_S", IDLE)
    monkeypatch.setattr(serve_lanes, "release_freed_memory",
                        lambda: releases.append(time.monotonic()))
    monkeypatch.setattr(serve_lanes, "run_command", lambda args, reporter, stop: args.code)
    heavy = serve_lanes.Lane("heavy", None)
    heavy.releases = releases
    heavy.start()
    yield heavy
    heavy.finish()


def _run(lane: serve_lanes.Lane, code: int = 0) -> float:
    """Queue a request, wait until it has run; the time it ended."""
    request = serve_lanes.Request(f"r{time.monotonic()}", argparse.Namespace(code=code),
                                  Reporter(quiet=True), imports_engine=False)
    lane.put(request)
    while lane.knows(request.id):
        time.sleep(0.01)
    return time.monotonic()


def test_memory_is_kept_between_quick_requests_and_given_back_once_idle(lane):
    for _ in range(3):  # requests closer together than IDLE: nothing given back between them
        _run(lane)
        time.sleep(IDLE / 3)
    ended = _run(lane)
    assert lane.releases == []
    deadline = ended + 10 * IDLE
    while not lane.releases and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(lane.releases) == 1  # once, after IDLE seconds without a request
    assert lane.releases[0] - ended >= IDLE * 0.9


def test_memory_is_given_back_at_once_after_an_internal_error(lane):
    ended = _run(lane, code=EXIT_INTERNAL)
    assert len(lane.releases) == 1 and lane.releases[0] <= ended  # e.g. out of memory
    time.sleep(IDLE * 1.5)
    assert len(lane.releases) == 1  # not again when idle
