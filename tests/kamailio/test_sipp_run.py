"""tests/kamailio/sipp_run.py: a SIPp UAS whose port someone takes between the choice and SIPp's
bind (seen once in CI: "Unable to bind main socket, errno = 98") starts on another port."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.kamailio import sipp_run
from tests.kamailio.sipp_run import HOST, SippUas
from tests.peers.ports import free_udp_port


async def test_a_port_taken_before_sipp_binds_it_is_replaced(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((HOST, 0))
        ports = iter([taken.getsockname()[1], free_udp_port()])
        monkeypatch.setattr(sipp_run, "free_udp_port", lambda host: next(ports))
        uas = SippUas(work / "uas.xml", None, work, "retried")
        try:
            await uas.start()
            assert uas.port != taken.getsockname()[1]
        finally:
            await uas.kill()


async def test_a_fixed_port_taken_is_a_clear_failure(work: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((HOST, 0))
        uas = SippUas(work / "uas.xml", taken.getsockname()[1], work, "fixed")
        try:
            with pytest.raises(AssertionError, match="Unable to bind main socket"):
                await uas.start()
        finally:
            await uas.kill()
