"""Bad input against the real gateway: a precise error, nothing changes, the connection stays usable."""

from __future__ import annotations

import json

import pytest
import websockets

from gateway.client import RemoteError


async def _raw(ws, text: str) -> dict:
    await ws.send(text)
    return json.loads(await ws.recv())


async def test_bad_requests_on_one_connection(start_gateway) -> None:
    gw = await start_gateway()
    async with websockets.connect(gw.control.url) as ws:
        r = await _raw(ws, '{"jsonrpc":"2.0","id":1,"method":"session.list","params":{}}')
        assert r["error"]["data"]["reason"] == "not-authenticated"
        r = await _raw(ws, '{"jsonrpc":"2.0","id":2,"method":"hello","params":{"token":"nope"}}')
        assert r["error"]["data"]["reason"] == "not-authenticated"
        r = await _raw(ws, '{"jsonrpc":"2.0","id":3,"method":"hello","params":{"token":"tok-dispatcher"}}')
        assert r["result"]["role"] == "dispatcher" and r["result"]["principal"] == "alice"
        cases = [
            ('{"jsonrpc":"2.0","id":4,"method":', -32700, "parse-error"),
            ('{"jsonrpc":"2.0","id":5,"method":"call.fly","params":{}}', -32601, "unknown-method"),
            ('{"jsonrpc":"2.0","id":6,"method":"call.dial","params":{"target":42}}', -32602, "invalid-params"),
            ('{"jsonrpc":"2.0","id":7,"method":"call.dial","params":{"target":"sip:"}}', -32602, "invalid-uri"),
            ('{"jsonrpc":"2.0","id":8,"method":"call.hangup","params":{"call_id":"abc"}}', None, "no-such-call"),
            ('{"jsonrpc":"2.0","id":9,"method":"session.close","params":{"session_id":"abc"}}', None,
             "no-such-session"),
            ('{"jsonrpc":"2.0","id":10,"method":"call.dtmf","params":{"call_id":"abc","digits":"12x"}}',
             -32602, "invalid-params"),
        ]
        for text, code, reason in cases:
            r = await _raw(ws, text)
            assert r["error"]["data"]["reason"] == reason, text
            if code is not None:
                assert r["error"]["code"] == code, text
        r = await _raw(ws, '{"jsonrpc":"2.0","id":11,"method":"session.list","params":{}}')
        assert r["result"] == {"sessions": []}  # still usable, and nothing was created
    assert await gw.store.list_calls() == []
    methods = [a["method"] for a in await gw.store.list_audit(principal="alice", limit=100)]
    assert "call.dial" in methods  # refused commands are audited too


async def test_roles_are_enforced(start_gateway, connect) -> None:
    gw = await start_gateway()
    olga = await connect(gw, "tok-observer")
    unit = await connect(gw, "tok-terminal")
    for client, method, params in (
        (olga, "call.dial", {"target": "sip:a@127.0.0.1"}),
        (olga, "session.create", {}),
        (unit, "session.list", {}),
        (unit, "call.dial", {"target": "sip:a@127.0.0.1"}),
        (unit, "events.subscribe", {}),
    ):
        with pytest.raises(RemoteError) as err:
            await client.call(method, **params)
        assert err.value.reason == "forbidden", (client.hello["role"], method)
    assert (await olga.call("session.list"))["sessions"] == []
    assert await gw.store.list_sessions() == []


async def test_idempotent_session_create_starts_one_session(start_gateway, connect) -> None:
    gw = await start_gateway()
    alice = await connect(gw)
    first = await alice.call("session.create", title="Flood", idempotency_key="k-1")
    again = await alice.call("session.create", title="Flood", idempotency_key="k-1")
    assert first == again
    assert len(await gw.store.list_sessions()) == 1


async def test_dial_refuses_smuggled_headers(start_gateway, connect) -> None:
    """Compact forms, identity headers and URI header parts reach the client as refusals naming them."""
    gw = await start_gateway()
    alice = await connect(gw)
    for headers in ({"i": "forged-call-id"}, {"P-Asserted-Identity": "<sip:chief@x>"}, {"privacy": "id"}):
        with pytest.raises(RemoteError) as info:
            await alice.call("call.dial", target="sip:a@127.0.0.1", headers=headers)
        (name,) = headers
        assert info.value.reason == "invalid-params" and info.value.code == -32602
        assert repr(name) in info.value.details["errors"][0]["msg"], info.value.details
    with pytest.raises(RemoteError) as info:
        await alice.call("call.dial", target="sip:a@127.0.0.1?Route=%3Csip:evil%3E")
    assert info.value.reason == "invalid-uri" and "header" in info.value.details["errors"][0]["msg"]
    assert await gw.store.list_calls() == []


async def test_a_text_frame_that_is_not_utf8_closes_with_1007(start_gateway) -> None:
    """As docs/protocol.md says: invalid UTF-8 in a text frame is a protocol error of the WebSocket
    layer (RFC 6455 1007), not a parse-error reply; JSON that is not valid still gets parse-error."""
    gw = await start_gateway()
    async with websockets.connect(gw.control.url) as ws:
        await ws.send(b'{"jsonrpc":"2.0","id":1,"method":"\xff\xfe"}', text=True)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
