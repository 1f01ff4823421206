"""Shared test helpers. Peers are real programs: a missing one FAILS the test, never skips it
(./scripts/test.sh installs them all)."""

from __future__ import annotations

import pytest

from tests.peers.process import require_binary


@pytest.fixture(name="require_binary")
def require_binary_fixture():
    """The `require_binary(name)` helper as a fixture."""
    return require_binary
