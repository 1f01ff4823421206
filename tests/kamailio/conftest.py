from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.kamailio import scenarios
from tests.peers.process import require_binary


@pytest.fixture(scope="session", autouse=True)
def _peers_installed() -> None:
    # In CI a missing peer is a failure, never a skip.
    for tool in ("kamailio", "kamcmd", "sipp"):
        require_binary(tool)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    for name in ("UAS", "UAS_503", "UAC", "REGISTER"):
        (tmp_path / f"{name.lower()}.xml").write_text(getattr(scenarios, name))
    return tmp_path


@pytest.fixture
def run_dir():
    # short path: Kamailio's ctl unix socket lives in the run directory (sun_path is 108 bytes)
    with tempfile.TemporaryDirectory(prefix="kamfront-") as d:
        yield Path(d)
