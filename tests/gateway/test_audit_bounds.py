"""The audit never stores unbounded input: huge or deeply nested params from the lowest role are
recorded as a bounded, redacted digest, and other users' commands stay fast."""

from __future__ import annotations

import json
import os

import websockets

from gateway.store.rows import AUDIT_PARAMS_MAX_BYTES


def _db_bytes(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


async def _hello(ws, token: str) -> None:
    await ws.send(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "hello", "params": {"token": token}}))
    assert "result" in json.loads(await ws.recv())


async def test_huge_params_are_audited_as_a_bounded_digest(start_gateway) -> None:
    # The terminal's request budget is lifted: what is under test is what one request stores.
    gw = await start_gateway(**{"control.request_budget.terminal": "{rate = 1000, burst = 1000}",
                                "control.max_in_flight": 256})  # all 100 pipelined frames run
    before = _db_bytes(gw.store.path)
    blob = "A" * 1_000_000
    async with websockets.connect(gw.control.url, max_size=None) as ws:
        await _hello(ws, "tok-terminal")
        for i in range(1, 101):
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": i, "method": "no.such",
                                      "params": {"blob": blob, "token": "s3cret"}}))
        for _ in range(100):
            reply = json.loads(await ws.recv())
            assert reply["error"]["data"]["reason"] == "unknown-method"
    rows = [r for r in await gw.store.list_audit(limit=200) if r["method"] == "no.such"]
    assert len(rows) == 100
    for r in rows:
        stored = json.dumps(r["params"])
        assert len(stored) <= AUDIT_PARAMS_MAX_BYTES, len(stored)
        digest = r["params"]["digest"]
        assert digest["bytes"] > 1_000_000 and len(digest["sha256"]) == 64
        assert "s3cret" not in stored
    assert _db_bytes(gw.store.path) - before < 10 * 1024 * 1024


async def test_params_nested_500_deep_get_a_clean_error_and_an_audit_row(start_gateway) -> None:
    gw = await start_gateway()
    deep: dict = {"token": "s3cret"}
    for _ in range(500):
        deep = {"a": deep}
    async with websockets.connect(gw.control.url, max_size=None) as ws:
        await _hello(ws, "tok-dispatcher")
        for i, method in enumerate(("no.such", "session.create"), start=1):
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": {"x": deep}}))
            reply = json.loads(await ws.recv())
            assert reply["id"] == i and reply["error"]["data"]["reason"] in ("unknown-method", "invalid-params")
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 9, "method": "session.list", "params": {}}))
        assert "result" in json.loads(await ws.recv())
    rows = {r["method"]: r for r in await gw.store.list_audit(limit=50)}
    for method in ("no.such", "session.create"):
        stored = json.dumps(rows[method]["params"])
        assert len(stored) <= AUDIT_PARAMS_MAX_BYTES and "s3cret" not in stored, method
