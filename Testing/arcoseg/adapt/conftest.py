"""Shared fixtures of the Adapt tests."""

import pytest


@pytest.fixture
def case(tmp_path, drawn_phantom):
    """A phantom with three annotated coronal slices (axis 1); the registry in tmp (the
    autouse `home` fixture)."""
    return drawn_phantom(tmp_path, (8, 32, 32))
