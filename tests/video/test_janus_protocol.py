"""The sans-I/O core of the Janus client: transactions matched, acks vs events, notices by handle."""

from __future__ import annotations

import pytest

from video.errors import JanusProtocolError
from video.janus_protocol import (
    Acked,
    Failed,
    HandleEvent,
    JanusProtocol,
    Reply,
    SessionGone,
    Unmatched,
)


def test_request_carries_transaction_secret_and_ids() -> None:
    p = JanusProtocol(api_secret="s3")
    tid, msg = p.request("message", session_id=1, handle_id=2, body={"request": "join"}, jsep=None)
    assert msg == {"janus": "message", "transaction": tid, "session_id": 1, "handle_id": 2,
                   "apisecret": "s3", "body": {"request": "join"}}
    tid2, _ = p.request("keepalive", session_id=1)
    assert tid2 != tid and p.pending == 2


def test_sync_request_ends_with_success() -> None:
    p = JanusProtocol()
    tid, _ = p.request("create")
    out = p.receive({"janus": "success", "transaction": tid, "data": {"id": 7}})
    assert isinstance(out, Reply) and out.message["data"]["id"] == 7
    assert p.pending == 0


def test_async_plugin_request_ack_then_event() -> None:
    p = JanusProtocol()
    tid, _ = p.request("message", session_id=1, handle_id=2, body={"request": "join"})
    assert p.receive({"janus": "ack", "transaction": tid, "session_id": 1}) == Acked(tid)
    assert p.pending == 1
    ev = {"janus": "event", "transaction": tid, "sender": 2,
          "plugindata": {"plugin": "janus.plugin.videoroom", "data": {"videoroom": "joined", "id": 5}},
          "jsep": {"type": "answer", "sdp": "v=0"}}
    out = p.receive(ev)
    assert isinstance(out, Reply)
    assert out.plugin_data == {"videoroom": "joined", "id": 5}
    assert out.jsep == {"type": "answer", "sdp": "v=0"}
    assert p.pending == 0


def test_ack_ends_a_keepalive_or_trickle() -> None:
    p = JanusProtocol()
    tid, _ = p.request("keepalive", session_id=1)
    out = p.receive({"janus": "ack", "transaction": tid})
    assert isinstance(out, Reply) and p.pending == 0


def test_error_and_plugin_error_are_failures() -> None:
    p = JanusProtocol()
    tid, _ = p.request("attach", session_id=1, plugin="nope")
    out = p.receive({"janus": "error", "transaction": tid, "error": {"code": 460, "reason": "No such plugin"}})
    assert out == Failed(tid, 460, "No such plugin")
    tid, _ = p.request("message", session_id=1, handle_id=2, body={"request": "create"})
    out = p.receive({"janus": "success", "transaction": tid, "sender": 2, "plugindata": {
        "plugin": "janus.plugin.videoroom",
        "data": {"videoroom": "event", "error_code": 427, "error": "Room 1 already exists"}}})
    assert out == Failed(tid, 427, "Room 1 already exists")
    tid, _ = p.request("message", session_id=1, handle_id=3, body={"request": "call"})
    p.receive({"janus": "ack", "transaction": tid})
    out = p.receive({"janus": "event", "transaction": tid, "sender": 3, "plugindata": {
        "plugin": "janus.plugin.sip", "data": {"sip": "event", "error_code": 444, "error": "Invalid address"}}})
    assert out == Failed(tid, 444, "Invalid address")


def test_notices_are_keyed_by_handle() -> None:
    p = JanusProtocol()
    for kind in ("webrtcup", "media", "hangup", "slowlink", "detached"):
        out = p.receive({"janus": kind, "session_id": 1, "sender": 9})
        assert isinstance(out, HandleEvent) and out.handle_id == 9 and out.kind == kind
    # a plugin event nobody asked for (a publisher left) is a notice too
    out = p.receive({"janus": "event", "session_id": 1, "sender": 9, "plugindata": {"data": {}}})
    assert isinstance(out, HandleEvent)


def test_late_or_unknown_answers_are_unmatched_never_raised() -> None:
    p = JanusProtocol()
    tid, _ = p.request("info")
    p.forget(tid)  # the caller timed out
    assert isinstance(p.receive({"janus": "success", "transaction": tid}), Unmatched)
    assert isinstance(p.receive({"janus": "server_info", "transaction": "other"}), Unmatched)
    assert p.receive({"janus": "timeout", "session_id": 3}) == SessionGone(3)


def test_connection_lost_abandons_everything() -> None:
    p = JanusProtocol()
    a, _ = p.request("create")
    b, _ = p.request("message", session_id=1, handle_id=2, body={})
    assert sorted(p.fail_all()) == sorted([a, b]) and p.pending == 0


@pytest.mark.parametrize("bad", [[], "x", {"no": "janus"}, {"janus": 5}])
def test_not_a_janus_message(bad) -> None:
    with pytest.raises(JanusProtocolError):
        JanusProtocol().receive(bad)
