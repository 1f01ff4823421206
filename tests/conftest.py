"""Shared test helpers. Peers are real programs: a missing one FAILS the test, never skips it
(./scripts/test.sh installs them all)."""

from __future__ import annotations

import shutil

import pytest


def require_binary(name: str) -> str:
    """Path of the peer program `name`; fails the test when it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"peer binary {name!r} not found on PATH: run ./scripts/install.sh --test",
                    pytrace=False)
    return path


@pytest.fixture(name="require_binary")
def require_binary_fixture():
    """The `require_binary(name)` helper as a fixture."""
    return require_binary
