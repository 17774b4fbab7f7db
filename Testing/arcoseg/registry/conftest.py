"""Fixtures of the registry tests (the registry lives in tmp: the autouse `home` fixture); this
folder on sys.path for `registry_helpers`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from tiny_models import save_tiny  # noqa: E402

from arcoseg.registry import Registry, VersionRef  # noqa: E402


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """An untrained tiny model folder named 'brain' (not registered)."""
    return save_tiny(tmp_path / "brain")


@pytest.fixture
def imported(registry: Registry, base: Path) -> VersionRef:
    """`base` imported: brain@v1, active."""
    return registry.import_model(base)
