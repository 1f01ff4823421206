"""An SMS event's data is encoded to JSON once: for the store. The listeners get the dict the unit
emitted (not decoded again from the stored text) and the notification frame is built around the
stored text (issue 13: at 1,000 SMPP messages/s each `sms.status` was encoded for the store,
decoded for the listeners and encoded again, whole, for the frame: about a sixth of the gateway's
Python time).

A real SQLite store in tmp_path; `json.dumps` / `json.loads` calls on event data are counted.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from gateway.protocol import Registry, codec
from gateway.server import ControlServer, ServerConfig, ServerHooks
from gateway.services.sms_ledger import SmsLedger
from gateway.store import Event, Store
from gateway.timeutil import now_iso
from sms.config import SmsConfig
from tests.store.conftest import db_path, store  # noqa: F401  (fixtures: a real SQLite store in tmp_path)

N = 300


def _rows(n: int) -> list[dict[str, Any]]:
    now, created = time.time(), now_iso()
    return [{"message_id": uuid.uuid4().hex, "send_id": "s1", "session_id": "sess-1", "sender": "+15550000000",
             "recipient": f"+1555{i:07d}", "body": "Flood warning: move to high ground «now».", "encoding": "UCS-2",
             "segments": 1, "state": "queued", "attempts": 0, "next_attempt_at": now, "provider": "smpp",
             "created_at": created, "updated_at": created, "extra": {"sent_by": "alice", "ref": {"k": "é\"\\"}}}
            for i in range(n)]


class JsonCalls:
    """Encodings (`json.dumps`, the codec's encoder) and decodings (`json.loads`) of an event's data
    (a dict with `message_id`), alone or inside a frame's params."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.dumps = self.loads = 0
        dumps, loads, dump = json.dumps, json.loads, codec._dump

        def carries_data(obj: Any) -> bool:
            if isinstance(obj, dict) and isinstance(obj.get("params"), dict):
                obj = obj["params"].get("data")
            return isinstance(obj, dict) and "message_id" in obj

        def counted_dumps(obj: Any, *a: Any, **k: Any) -> str:
            self.dumps += carries_data(obj)
            return dumps(obj, *a, **k)

        def counted_dump(obj: Any) -> str:
            self.dumps += carries_data(obj)
            return dump(obj)

        monkeypatch.setattr(codec, "_dump", counted_dump)

        def counted_loads(s: Any, *a: Any, **k: Any) -> Any:
            out = loads(s, *a, **k)
            self.loads += isinstance(out, dict) and "message_id" in out
            return out

        monkeypatch.setattr(json, "dumps", counted_dumps)
        monkeypatch.setattr(json, "loads", counted_loads)


async def test_sms_events_are_encoded_once_and_framed_around_the_stored_text(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    seen: list[Event] = []
    store.add_listener(seen.extend)
    ledger = SmsLedger(store, "smpp", SmsConfig())
    rows = _rows(N)
    await ledger.queue(rows)
    calls = JsonCalls(monkeypatch)
    seen.clear()
    started = await ledger.start_many([r["message_id"] for r in rows], lambda row: False)
    assert [kind for kind, _ in started] == ["sending"] * N
    assert len(seen) == N and all(e.type == "sms.status" and e.data["state"] == "sending" for e in seen)
    # Once for the store, never decoded again (before: N dumps and N loads here).
    assert (calls.dumps, calls.loads) == (N, 0)
    stored = await store.fetchall("SELECT seq, data FROM events WHERE seq >= ? ORDER BY seq", (seen[0].seq,))
    assert [(e.seq, e.data_json) for e in seen] == [tuple(r) for r in stored]

    srv = ControlServer(Registry(), {}.get, ServerHooks(), ServerConfig())
    encode_event = codec.encode_event
    full = 0

    def counted_encode_event(params: dict[str, Any]) -> str:
        nonlocal full
        full += 1
        return encode_event(params)

    monkeypatch.setattr(codec, "encode_event", counted_encode_event)
    frames = [srv.event_frame(e) for e in seen]
    # No whole encoding, no data encoded again (before: N whole encodings), and the same text.
    assert (full, calls.dumps - N, calls.loads) == (0, 0, 0)
    monkeypatch.undo()
    assert [text for text, _ in frames] == [codec.encode_event(e.to_params()) for e in seen]
    assert all(raw == text.encode() for text, raw in frames)


@pytest.mark.parametrize("data", [
    {}, {"a": None, "b": [1, 2.5, True, False], "c": {"d": "é«»\u2028\"\\\n\t\x01"}},
    {"emoji": "🚒", "n": -(2**53) + 1, "nested": [[{"x": []}]]},
])
@pytest.mark.parametrize("session_id", [None, "sess-1", "quo\"te"])
def test_a_stored_event_frame_is_the_codec_s_encoding(data: dict[str, Any], session_id: str | None) -> None:
    ev = Event(42, "sms.status", "2026-12-02T11:00:00.000Z", session_id, data)
    assert codec.encode_stored_event(ev.seq, ev.type, ev.time, ev.session_id, codec.encode_json(data)) \
        == codec.encode_event(ev.to_params())
