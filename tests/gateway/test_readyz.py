"""/readyz names the part that is not ready and why (issue 12): a real gateway whose only SIP
worker was killed (-9, until it is restarted); a closed store; a check that hangs or
raises is reported, not a 500."""

from __future__ import annotations

import asyncio
import os
import signal

import aiohttp

from gateway import http
from gateway.store import Store


async def _readyz(port: int) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/readyz") as r:
        return r.status, await r.json()


async def test_readyz_names_the_part_not_ready_and_why(start_gateway) -> None:
    gw = await start_gateway(**{"sip.max_workers": 1})
    assert (await _readyz(gw.http_port))[0] == 200
    os.kill(gw.sip.worker_pid(0), signal.SIGKILL)  # a child of the gateway this test started
    async with asyncio.timeout(20):  # seen while the worker is restarted (a process start: >100 ms)
        while (answer := await _readyz(gw.http_port))[0] == 200:
            await asyncio.sleep(0.01)
    status, body = answer
    assert status == 503 and body["status"] == "not-ready" and body["not_ready"] == ["sip"], body
    assert body["checks"] == {"store": True, "sip": False}
    assert body["parts"]["store"] == {"ready": True}
    assert "no SIP worker is up" in body["parts"]["sip"]["why"]
    async with asyncio.timeout(30):  # restarted
        while (await _readyz(gw.http_port))[0] != 200:
            await asyncio.sleep(0.05)


async def test_store_says_why_it_is_not_ready(tmp_path) -> None:
    store = Store(tmp_path / "gw.db")
    assert await store.readiness() == "the store is closed"
    async with store:
        assert await store.readiness() is None
    assert await store.readiness() == "the store is closed"


async def test_readyz_all_ready(start_gateway) -> None:
    gw = await start_gateway()
    status, body = await _readyz(gw.http_port)
    assert status == 200 and body["not_ready"] == [] and body["status"] == "ready"
    assert body["parts"] == {"store": {"ready": True}, "sip": {"ready": True}}


async def test_a_hanging_or_failing_check_is_a_reason(monkeypatch) -> None:
    monkeypatch.setattr(http, "CHECK_TIMEOUT_S", 0.2)

    async def hangs() -> None:
        await asyncio.Event().wait()

    async def fails() -> None:
        raise OSError("disk gone")

    async def fine() -> None:
        return None

    status, body = await http.health({"a": hangs, "b": fails, "c": fine}, "/readyz")
    assert status == 503 and body["not_ready"] == ["a", "b"]
    assert body["parts"]["a"]["why"] == "its check did not answer within 0.2 s"
    assert body["parts"]["b"]["why"] == "its check failed: OSError"
