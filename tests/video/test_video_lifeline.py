"""Janus dies with the gateway, even on `kill -9` of the gateway, and a start on the same ports
and data dir works; a clean stop stops it last (SIGTERM to the gateway)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from tests.gateway.gateway_proc import GatewayProc
from tests.peers.ports import free_port_block, free_tcp_port

pytestmark = [pytest.mark.peers, pytest.mark.timeout(120)]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _sets(tmp: Path) -> dict:
    sip = free_port_block(span=20)
    rtp = free_port_block(span=100, tcp=False)
    return {"gateway.data_dir": str(tmp / "data"), "gateway.log_format": "json",
            "gateway.log_level": "info", "control.port": free_tcp_port(), "http.port": free_tcp_port(),
            "sip.port": sip, "sip.worker_base_port": sip + 10, "sip.max_workers": 1,
            "sip.log_dir": str(tmp / "sip-logs"), "video.enabled": True,
            "video.ws_base_port": free_tcp_port(), "video.ice_enforce_list": "lo",
            "video.rtp_port_min": rtp, "video.rtp_port_max": rtp + 99}


async def _janus_pid(gw: GatewayProc) -> int:
    async with asyncio.timeout(10):
        while not (found := gw.log_events(gw.starts, "janus.ready")):
            await asyncio.sleep(0.05)  # the log is a file: polled
    return int(found[-1]["pid"])


async def test_kill9_takes_janus_along_and_a_restart_works(tmp_path: Path) -> None:
    gw = GatewayProc(_sets(tmp_path), tmp_path)
    try:
        await gw.start()
        first = await _janus_pid(gw)
        assert _alive(first)
        await gw.kill9()
        async with asyncio.timeout(10):  # PR_SET_PDEATHSIG: the kernel ends it with its parent
            while _alive(first):
                await asyncio.sleep(0.05)
        await gw.start()  # same API port, same data dir
        second = await _janus_pid(gw)
        assert second != first and _alive(second)
        os.kill(gw.proc.pid, signal.SIGTERM)  # a clean stop: Janus stopped too, last
        async with asyncio.timeout(30):
            await gw.proc.wait()
        assert not _alive(second)
        stopped = gw.log_events(gw.starts, "janus.stopped")
        assert stopped and stopped[-1]["pid"] == second
    finally:
        await gw.stop()
