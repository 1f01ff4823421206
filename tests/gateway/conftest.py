"""A whole gateway in the test's own loop, on free loopback ports, with clients for each role."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.client import GatewayClient
from gateway.config import load_config
from tests.peers.sipp import free_port_block
from tests.sip.conftest import probed_calls_per_worker

TOKENS = {
    "tok-dispatcher": ("alice", "dispatcher"),
    "tok-dispatcher-2": ("bob", "dispatcher"),
    "tok-observer": ("olga", "observer"),
    "tok-terminal": ("unit-7", "terminal"),
    "tok-terminal-9": ("unit-9", "terminal"),
    "tok-terminal-2": ("unit-8", "terminal"),
    "tok-admin": ("root", "admin"),
}


def gateway_config(tmp_path, **sets: Any):
    base = free_port_block(span=60)
    values: dict[str, Any] = {
        "gateway.data_dir": str(tmp_path / "data"),
        "gateway.log_format": "json",
        "control.port": 0,
        "http.port": 0,
        "sip.port": base,
        "sip.worker_base_port": base + 10,
        "sip.rtp_port_base": free_port_block(span=10, tcp=False),
        "sip.max_workers": 1,
        "sip.calls_per_worker": probed_calls_per_worker(),
        "sip.log_dir": str(tmp_path / "sip-logs"),
        "calls.ring_timeout_s": 10,
        "calls.dial_timeout_s": 20,
    }
    values.update(sets)
    token_table = ", ".join(f'"{t}" = {{principal = "{p}", role = "{r}"}}' for t, (p, r) in TOKENS.items())
    overrides = [f"{k}={v if isinstance(v, str) else _toml(v)}" for k, v in values.items()] + [f"auth.tokens={{{token_table}}}"]
    return load_config(None, {}, overrides)


def _toml(v: Any) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return str(v)


@pytest.fixture
async def start_gateway(tmp_path) -> AsyncIterator[Callable[..., Any]]:
    started: list[Gateway] = []

    async def start(**sets: Any) -> Gateway:
        gw = Gateway(gateway_config(tmp_path, **sets))
        await gw.start()
        started.append(gw)
        return gw

    yield start
    for gw in reversed(started):
        await gw.stop()


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., Any]]:
    clients: list[GatewayClient] = []

    async def connect(gw: Gateway, token: str = "tok-dispatcher", **kw: Any) -> GatewayClient:
        client = await GatewayClient.connect(gw.control.url, token, **kw)
        clients.append(client)
        return client

    yield connect
    for c in clients:
        with contextlib.suppress(Exception):
            await c.close()


class EventWatch:
    """Reads a client's events in the background; tests wait for the one they need."""

    def __init__(self, client: GatewayClient) -> None:
        self.client = client
        self.events: list[dict] = []
        self._changed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for ev in self.client.events():
            self.events.append(ev)
            self._changed.set()

    async def wait(self, pred: Callable[[dict], bool], timeout: float = 15) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                for ev in self.events:
                    if pred(ev):
                        return ev
                self._changed.clear()
                await self._changed.wait()

    async def call_state(self, call_id: str | None, state: str, timeout: float = 15) -> dict:
        ev = await self.wait(lambda e: e["type"] == "call.state" and e["data"]["state"] == state
                             and (call_id is None or e["data"]["call_id"] == call_id), timeout)
        return ev["data"]

    def states(self, call_id: str) -> list[str]:
        return [e["data"]["state"] for e in self.events
                if e["type"] == "call.state" and e["data"]["call_id"] == call_id]

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.fixture
async def watch() -> AsyncIterator[Callable[..., Any]]:
    watches: list[EventWatch] = []

    async def make(client: GatewayClient, since: int | None = None) -> EventWatch:
        await client.subscribe(client.hello["seq"] if since is None else since)
        w = EventWatch(client)
        watches.append(w)
        return w

    yield make
    for w in watches:
        await w.close()
