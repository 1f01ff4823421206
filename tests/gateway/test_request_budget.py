"""Each role has a request budget (issue 8 §2), against the gateway run as its own process: a
terminal token flooding unknown-method and ping frames on several connections is answered
`rate-limited` with `retry_after_s` once its budget is spent, leaves no audit rows beyond it, and
a dispatcher's commands stay fast meanwhile."""

from __future__ import annotations

import asyncio
import json
import statistics
import time

from websockets.asyncio.client import connect

from tests.gateway.gateway_proc import gateway_proc, store_rows
from tests.gateway.test_listener_limits import hello, overrides

FLOOD_CONNECTIONS = 4
FLOOD_FRAMES = 1500  # per connection
WINDOW = 100  # frames in flight per connection


async def flood(url: str, replies: list[dict]) -> None:
    """One terminal connection: unknown-method and ping frames, pipelined `WINDOW` deep."""
    async with connect(url, max_size=None) as ws:
        assert "result" in await hello(ws, "tok-terminal", id="hello")
        for start in range(0, FLOOD_FRAMES, WINDOW):
            for i in range(start, start + WINDOW):
                method = "ping" if i % 2 else "no.such"
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": {"n": i}}))
            for _ in range(WINDOW):
                replies.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))


async def command_latencies(url: str, until: asyncio.Future | None = None) -> list[float]:
    """A dispatcher's `session.list` round trips, one after another: 20, or as many as fit while
    `until` runs (at least 5)."""
    out: list[float] = []
    async with connect(url, max_size=None) as ws:
        assert "result" in await hello(ws, "tok-dispatcher", id="hello")
        i = 0
        while len(out) < 5 or (len(out) < 20 if until is None else not until.done()):
            i += 1
            t0 = time.monotonic()
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": i, "method": "session.list", "params": {}}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 60))
            out.append(time.monotonic() - t0)
            assert reply["id"] == i and "result" in reply, reply
    return out


async def test_a_terminal_flood_is_rate_limited_and_leaves_dispatchers_alone(tmp_path) -> None:
    sets = overrides(tmp_path, **{"control.request_budget.terminal": "{rate = 5, burst = 30}"})
    async with gateway_proc(sets, tmp_path) as gw:
        await gw.start()
        idle = await command_latencies(gw.url)
        replies: list[dict] = []
        t0 = time.monotonic()
        flooding = asyncio.gather(*(flood(gw.url, replies) for _ in range(FLOOD_CONNECTIONS)))
        busy = await command_latencies(gw.url, flooding)
        await flooding
        elapsed = time.monotonic() - t0
        audited = store_rows(gw.store_path, "SELECT count(*) FROM audit WHERE principal = 'unit-7'")[0][0]
    limited = [r for r in replies if r.get("error", {}).get("data", {}).get("reason") == "rate-limited"]
    print(f"\nflood {len(replies)} frames in {elapsed:.1f}s: {len(limited)} rate-limited, {audited} audited; "
          f"dispatcher session.list median idle {statistics.median(idle) * 1000:.1f} ms, under flood "
          f"{statistics.median(busy) * 1000:.1f} ms (max {max(busy) * 1000:.1f} ms, {len(busy)} calls)")
    assert len(replies) == FLOOD_CONNECTIONS * FLOOD_FRAMES
    allowed = 30 + 5 * elapsed + 5  # the burst, the refill over the flood, and slack
    assert len(replies) - len(limited) <= allowed, (len(replies) - len(limited), allowed)
    assert all(0 < r["error"]["data"]["details"]["retry_after_s"] <= 1 for r in limited)
    assert audited <= allowed, audited  # nothing of the flood beyond the budget is stored
    assert statistics.median(busy) < max(0.25, 20 * statistics.median(idle)), (idle, busy)
