"""Fixtures for the Slicer-extension tests: the module's Lib package on sys.path, paths."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The module folder (for ARCOSegmentLib, as Slicer puts it on sys.path) and this folder (for the
# test helpers ui_preview and fake_engine).
for folder in (REPO / "ARCOSegment", Path(__file__).resolve().parent):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


@pytest.fixture
def fake_engine() -> list[str]:
    """The command prefix of the protocol stand-in; append a mode (ok, error, tree, …)."""
    return [sys.executable, str(Path(__file__).with_name("fake_engine.py"))]


@pytest.fixture(scope="module", autouse=True)
def one_thread_per_engine_process():
    """The engine's child processes inherit OMP_NUM_THREADS=1 (in these tests only): on a small
    shared machine multi-threaded children spin against each other and training slows down by
    an order of magnitude (5 adapt iterations: 0.4 s with one thread, 30 s with two, loaded)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.fixture
def slicer_core(monkeypatch):
    """Slicer's real MRML scene and module logics (the slicer-core wheel) as `slicer.mrmlScene`,
    `slicer.modules.X.logic()` and `slicer.app.coreIOManager()`, fresh for each test."""
    from real_slicer import install
    return install(monkeypatch)


@pytest.fixture(scope="module")
def module_slicer_core():
    """`slicer_core` shared by a test module's module-scoped fixtures (one scene for them all)."""
    from real_slicer import install
    with pytest.MonkeyPatch.context() as patch:
        yield install(patch)
