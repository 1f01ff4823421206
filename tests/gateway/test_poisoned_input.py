"""One client's unstorable text never fails another client's work (issue 7, section 6)."""

from __future__ import annotations

import asyncio
import json

import websockets

from gateway.client import RemoteError

LONE = "\\ud800"  # as sent on the wire: a valid JSON escape of a lone surrogate

# What a hostile or broken terminal sends: lone surrogates in every place a string can go.
POISON = [
    '{"jsonrpc":"2.0","id":%d,"method":"x' + LONE + '","params":{}}',
    '{"jsonrpc":"2.0","id":%d,"method":"session.create","params":{"title":"t' + LONE + '"}}',
    '{"jsonrpc":"2.0","id":%d,"method":"session.create","params":{"t' + LONE + '":1}}',
    '{"jsonrpc":"2.0","id":%d,"method":"call.dial","params":{"target":"sip:' + LONE + '@h"}}',
    '{"jsonrpc":"2.0","id":%d,"method":"ping","params":{"x":["' + LONE + '"]}}',
]


async def test_lone_surrogate_flood_fails_nobody_else(start_gateway, connect) -> None:
    # the flood must reach the parser: the terminal's request budget lifted
    gw = await start_gateway(**{"control.request_budget.terminal": "{rate = 1000000, burst = 1000000}"})
    consoles = [await connect(gw, tok) for tok in ("tok-dispatcher", "tok-dispatcher-2", "tok-admin")]
    replies: list[dict] = []
    dropped: list[int] = []
    done = asyncio.Event()

    async def flood() -> None:
        n = 0
        while not done.is_set() or n < 200:
            try:
                async with websockets.connect(gw.control.url) as ws:
                    await ws.send(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "hello",
                                              "params": {"token": "tok-terminal"}}))
                    assert "result" in json.loads(await ws.recv())
                    while not done.is_set() or n < 200:
                        for frame in POISON:
                            n += 1
                            await ws.send(frame % n)
                            replies.append(json.loads(await ws.recv()))
            except websockets.ConnectionClosed:
                dropped.append(n)  # the gateway dropped us: an attacker just reconnects

    async def creates(client, k: int) -> list[object]:
        out: list[object] = []
        for i in range(100):
            try:
                out.append(await client.call("session.create", title=f"c{k}-{i}"))
            except RemoteError as err:
                out.append(err)
        return out

    flooding = asyncio.create_task(flood())
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(creates(c, k) for k, c in enumerate(consoles))), 120)
    finally:
        done.set()
        await asyncio.wait_for(flooding, 60)
    errors = [r for rs in results for r in rs if isinstance(r, RemoteError)]
    assert errors == [], (len(errors), [(e.reason, e.message) for e in errors[:5]])
    assert dropped == []  # every poisoned frame answered, the connection kept
    assert len(await gw.store.list_sessions(limit=10_000)) == 300
    # The terminal got a precise error for each poisoned frame, never internal-error.
    assert len(replies) >= 200
    reasons = {(r["error"]["code"], r["error"]["data"]["reason"]) for r in replies}
    assert reasons <= {(-32600, "invalid-request"), (-32602, "invalid-params")}, reasons
    bad_title = next(r for r in replies if r["id"] % len(POISON) == 2)
    assert bad_title["error"]["data"]["details"]["errors"][0]["loc"] == "title"
