"""Every process the gateway starts dies with it, whole: the gateway run as its own process with
the Kamailio front (and the processes Kamailio forks), Janus and two SIP workers; after `kill -9`
of the gateway every one of them is gone, read from /proc against a deadline. And the front's
main process killed alone (its forked processes left holding the SIP port) is started again: what
was left of the old one is ended first."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import pytest

from tests.gateway.gateway_proc import GatewayProc
from tests.gateway.test_stop_signals import alive, overrides
from tests.peers.ports import free_port_block, free_tcp_port

pytestmark = [pytest.mark.peers, pytest.mark.timeout(180)]

GONE_WITHIN_S = 20.0  # a loaded machine: Kamailio stops its children, Janus its threads


def _ppids() -> dict[int, int]:
    out = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                out[int(entry.name)] = int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[1])
    return out


def descendants(root: int) -> list[int]:
    """Every process below `root` now (children, theirs...)."""
    kids: dict[int, list[int]] = {}
    for pid, ppid in _ppids().items():
        kids.setdefault(ppid, []).append(pid)
    found, todo = [], list(kids.get(root, []))
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(kids.get(p, []))
    return sorted(found)


def command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


async def gone(pids: list[int], within: float = GONE_WITHIN_S) -> list[int]:
    """Poll /proc until none of `pids` runs (or the deadline); those still running."""
    try:
        async with asyncio.timeout(within):
            while [p for p in pids if alive(p)]:
                await asyncio.sleep(0.05)  # /proc has no event to wait on
    except TimeoutError:
        pass
    return [p for p in pids if alive(p)]


def kill_left(pids: list[int]) -> None:
    """Whatever a failed test left of what it started, by PID."""
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def _started(gw: GatewayProc, *events: str) -> dict[str, list[dict]]:
    async with asyncio.timeout(60):
        while True:
            found = {e: gw.log_events(gw.starts, e) for e in events}
            if all(found.values()):
                return found
            await asyncio.sleep(0.05)  # the log is a file: polled


def _sets(tmp: Path) -> dict:
    rtp = free_port_block(span=100, tcp=False)
    return overrides(tmp, **{"video.enabled": True, "video.ws_base_port": free_tcp_port(),
                             "video.ice_enforce_list": "lo", "video.rtp_port_min": rtp,
                             "video.rtp_port_max": rtp + 99})


async def test_kill9_of_the_gateway_takes_every_child_along(tmp_path: Path) -> None:
    gw = GatewayProc(_sets(tmp_path), tmp_path, new_session=True)
    kids: list[int] = []
    try:
        await gw.start()
        started = await _started(gw, "kamailio.ready", "janus.ready")
        async with asyncio.timeout(30):
            while len(gw.log_events(gw.starts, "sip.worker.up")) < 2:
                await asyncio.sleep(0.05)
        kids = descendants(gw.proc.pid)
        names = [command(p) for p in kids]
        front, janus = started["kamailio.ready"][-1]["pid"], started["janus.ready"][-1]["pid"]
        assert front in kids and janus in kids, names
        forked = descendants(front)
        assert len(forked) >= 2, "Kamailio forks its listeners and timers"  # what PDEATHSIG alone misses
        assert sum("sip.worker" in n for n in names) == 2, names
        await gw.kill9()
        left = await gone(kids)
        assert not left, [(p, command(p)) for p in left]
    finally:
        await gw.stop()
        kill_left(kids)


async def test_the_front_killed_alone_leaves_nothing_behind(tmp_path: Path) -> None:
    gw = GatewayProc(overrides(tmp_path), tmp_path, new_session=True)
    kids: list[int] = []
    try:
        await gw.start()
        front = (await _started(gw, "kamailio.ready"))["kamailio.ready"][-1]["pid"]
        forked = descendants(front)
        kids = [front, *forked]
        assert forked
        os.kill(front, signal.SIGKILL)  # the main process only (a crash, the OOM killer)
        left = await gone(forked)
        assert not left, [(p, command(p)) for p in left]
        async with asyncio.timeout(60):  # and the front is back, on the same port
            while not gw.log_events(gw.starts, "kamailio.restarted"):
                await asyncio.sleep(0.05)
        kids += descendants(gw.proc.pid)
    finally:
        await gw.stop()
        kill_left(kids)
