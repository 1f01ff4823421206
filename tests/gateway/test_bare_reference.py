"""The benchmarks' bare reference server (benchmarks/control_bare.py) answers what the gateway
answers, so that issue 13's ratios compare the same replies: `session.create` the session's public
fields, `session.list` the newest sessions oldest first, the `session.state` event of the same shape."""

from __future__ import annotations

import json
from typing import Any

from websockets.asyncio.server import serve

from benchmarks.control_bare import LIST_LIMIT, BareServer
from gateway.client import GatewayClient
from gateway.services.session_lists import LIST_LIMIT as GATEWAY_LIST_LIMIT


def _shape(value: Any) -> Any:
    """The keys and value types of a reply, recursively (lists by their items' shapes)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__


async def _exchange(client: GatewayClient) -> dict[str, Any]:
    await client.subscribe(client.hello["seq"])
    created = [await client.call("session.create", title=f"t{i}") for i in range(3)]
    listed = await client.call("session.list")
    events = []
    async for ev in client.events():
        events.append(ev)
        if len(events) == 3:
            break
    return {"created": created, "listed": listed, "events": events}


async def test_the_bare_server_answers_the_same_replies_as_the_gateway(start_gateway, connect) -> None:
    gw = await start_gateway()
    ours = await _exchange(await connect(gw))
    bare = BareServer()
    async with serve(bare.handle, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        client = await GatewayClient.connect(url, "tok")
        try:
            theirs = await _exchange(client)
        finally:
            await client.close()

    assert _shape(theirs["created"]) == _shape(ours["created"])
    assert _shape(theirs["listed"]) == _shape(ours["listed"])
    for got in (ours, theirs):  # every session, oldest first, each as create answered it
        assert [s["session_id"] for s in got["listed"]["sessions"]] == [s["session_id"] for s in got["created"]]
        assert [s["title"] for s in got["listed"]["sessions"]] == ["t0", "t1", "t2"]
        assert [e["data"] for e in got["events"]] == got["created"]
    keys = lambda ev: {k: v for k, v in _shape(ev).items() if k != "data"}  # noqa: E731
    assert [keys(e) for e in theirs["events"]] == [keys(e) for e in ours["events"]]
    assert LIST_LIMIT == GATEWAY_LIST_LIMIT


def test_the_bare_list_is_encoded_once_between_creates_and_is_the_newest_up_to_the_gateways_limit() -> None:
    bare = BareServer()
    for i in range(LIST_LIMIT + 5):
        bare.answer(None, "session.create", {"title": f"s{i}"})  # type: ignore[arg-type]
    first = bare.answer(None, "session.list", {})  # type: ignore[arg-type]
    assert isinstance(first, str) and bare.answer(None, "session.list", {}) is first  # type: ignore[arg-type]
    sessions = json.loads(first)["sessions"]
    assert len(sessions) == LIST_LIMIT and sessions[0]["title"] == "s5"  # the newest, oldest first
    bare.answer(None, "session.create", {"title": "late"})  # type: ignore[arg-type]
    assert bare.answer(None, "session.list", {}) is not first  # type: ignore[arg-type]
