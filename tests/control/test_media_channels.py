"""Media channel ids: unique per connection, a live binding is never overwritten (issue 8 §1)."""

from __future__ import annotations

import pytest

from gateway.errors import Conflict
from gateway.services.media import MediaService


class _Calls:
    sip = None

    def require_live(self, call_id: str) -> None:
        pass

    def _sip(self) -> object:
        return self.sip


class _Conn:
    def on_binary(self, fn) -> None:
        pass

    def on_close(self, fn) -> None:
        pass


async def test_channel_id_never_reuses_a_live_binding_after_wrapping():
    media = MediaService(_Calls())
    conn = _Conn()
    first = await media.open(conn, "call-1", direction="in")
    # the 16-bit channel space wraps while `first` stays open on this connection
    for _ in range(0x10000 + 2):
        ch = (await media.open(conn, "call-2", direction="in"))["channel"]
        assert 0 < ch <= 0xFFFF and ch != first["channel"], ch  # fits the 16-bit frame header
        await media.close(conn, ch)
    # the first binding still routes to its own call
    assert media._by_conn[conn][first["channel"]].call_id == "call-1"


async def test_channel_ids_are_distinct_among_live_bindings():
    media = MediaService(_Calls())
    conn = _Conn()
    chans = [(await media.open(conn, f"call-{i}", direction="in"))["channel"] for i in range(50)]
    assert len(set(chans)) == 50


async def test_open_is_refused_when_every_channel_id_is_live(monkeypatch):
    monkeypatch.setattr("gateway.services.media.MAX_CHANNEL", 3)
    media = MediaService(_Calls())
    conn = _Conn()
    chans = {(await media.open(conn, "call-1", direction="in"))["channel"] for _ in range(3)}
    assert chans == {1, 2, 3}
    with pytest.raises(Conflict) as info:
        await media.open(conn, "call-1", direction="in")
    assert info.value.reason == "too-many-channels"
    assert {ch: b.call_id for ch, b in media._by_conn[conn].items()} == {1: "call-1", 2: "call-1", 3: "call-1"}
    await media.close(conn, 2)
    assert (await media.open(conn, "call-9", direction="in"))["channel"] == 2


class _ClosingConn(_Conn):
    def on_close(self, fn) -> None:
        self.closed = fn


async def test_a_console_port_channel_tells_its_owner_how_it_went():
    media = MediaService(_Calls())
    conn = _ClosingConn()
    gone: list[tuple[str, str]] = []
    a = media.open_port(conn, "console-a", 16000, lambda cause: gone.append(("a", cause)))
    b = media.open_port(conn, "console-b", 8000, lambda cause: gone.append(("b", cause)))
    c = media.open_port(conn, "console-c", 16000, lambda cause: gone.append(("c", cause)))
    assert a["call_id"] is None and b["samples_per_frame"] == 160 and len({a["channel"], b["channel"]}) == 2
    await media.close(conn, a["channel"])
    media.call_ended("console-c")  # the member left first (removed): its channel closes silently
    assert c["channel"] not in media._by_conn[conn]
    await conn.closed(conn)  # the connection is lost
    assert gone == [("a", "channel-closed"), ("b", "disconnected")]
    assert not media._listeners
