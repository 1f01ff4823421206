"""The terminal cores without sockets or clocks: presence (heartbeats, connections) and the
live-location rate limit (coalescing, the newest never dropped)."""

from __future__ import annotations

import pytest

from gateway.terminals import LocationGate, Offer, Presence, PresenceTable, Reason


def table() -> PresenceTable:
    return PresenceTable(["u1", "u2"], interval_s=10, missed=3)


def test_online_on_hello_offline_when_the_last_connection_closes() -> None:
    t = table()
    change = t.connected("u1", "c1", mono=100, wall=1000)
    assert change is not None and change.state is Presence.ONLINE and change.reason is Reason.HELLO
    assert t.connected("u1", "c2", mono=101, wall=1001) is None  # already online: no change
    assert t.disconnected("u1", "c1") is None  # c2 still there
    change = t.disconnected("u1", "c2")
    assert change is not None and change.state is Presence.OFFLINE
    assert change.reason is Reason.CONNECTION_CLOSED and change.last_seen == 1001
    assert t.disconnected("u1", "c2") is None  # told twice: one change


def test_offline_after_the_missed_heartbeats_with_the_connections_to_close() -> None:
    t = table()
    t.connected("u1", "c1", mono=0, wall=1000)
    assert t.next_deadline() == 30
    assert t.beat("u1", "c1", mono=20, wall=1020)
    assert t.next_deadline() == 50
    assert t.expire(49.9) == []
    [change] = t.expire(50)
    assert change.reason is Reason.HEARTBEAT_MISSED and change.connections == ("c1",)
    assert change.last_seen == 1020 and not t.online("u1")
    assert t.next_deadline() is None
    assert not t.beat("u1", "c1", mono=51, wall=1051)  # a beat on the dropped connection: not counted
    assert t.disconnected("u1", "c1") is None  # its close is no second offline
    assert t.connected("u1", "c3", mono=60, wall=1060).reason is Reason.HELLO  # back online


def test_stop_marks_online_terminals_offline() -> None:
    t = table()
    t.connected("u2", "c1", mono=0, wall=5)
    [change] = t.stop_all()
    assert (change.terminal_id, change.reason) == ("u2", Reason.GATEWAY_STOPPED)
    assert t.stop_all() == []


def test_bad_settings_refused() -> None:
    with pytest.raises(ValueError):
        PresenceTable([], interval_s=0, missed=3)
    with pytest.raises(ValueError):
        LocationGate(0)


def test_gate_publishes_at_most_once_per_interval_and_never_drops_the_newest() -> None:
    g = LocationGate(1.0)
    assert g.offer("u1", fix_time=100, item="a", now=0) is Offer.PUBLISH
    assert g.offer("u1", fix_time=101, item="b", now=0.2) is Offer.DEFERRED
    assert g.offer("u1", fix_time=102, item="c", now=0.4) is Offer.DEFERRED  # replaces b
    assert g.offer("u2", fix_time=100, item="x", now=0.5) is Offer.PUBLISH  # per terminal
    assert g.next_due() == 1.0
    assert g.due(0.99) == []
    assert g.due(1.0) == [("u1", "c", 1)]  # the newest, standing for one dropped
    assert g.next_due() is None
    assert g.offer("u1", fix_time=103, item="d", now=1.5) is Offer.DEFERRED  # 0.5 s after the trailing one
    assert g.due(2.0) == [("u1", "d", 0)]
    assert g.offer("u1", fix_time=104, item="e", now=3.5) is Offer.PUBLISH  # quiet for a whole interval


def test_gate_ignores_older_fixes_and_flushes_on_stop() -> None:
    g = LocationGate(1.0)
    g.offer("u1", fix_time=100, item="a", now=0)
    assert g.offer("u1", fix_time=99, item="old", now=5) is Offer.STALE
    assert g.offer("u1", fix_time=101, item="b", now=5) is Offer.PUBLISH
    assert g.offer("u1", fix_time=102, item="c", now=5.1) is Offer.DEFERRED
    assert g.flush() == [("u1", "c", 0)] and g.flush() == []


def test_delivery_states() -> None:
    from gateway.state import InvalidTransition
    from gateway.terminals import DELIVERY_MACHINE as M, DeliveryInput as I, DeliveryState as S, needs_fallback

    assert M.next(M.next(S.QUEUED, I.DELIVER), I.ACK) is S.ACKNOWLEDGED
    assert M.next(S.QUEUED, I.ACK) is S.ACKNOWLEDGED  # an ack implies delivery
    assert M.next(S.DELIVERED, I.FALLBACK) is S.FALLBACK_SMS
    assert M.next(S.FALLBACK_SMS, I.DELIVER) is S.FALLBACK_SMS  # back online after the SMS went
    assert M.next(S.FALLBACK_SMS, I.ACK) is S.ACKNOWLEDGED  # a later ack still counts
    assert M.is_final(S.ACKNOWLEDGED) and not M.allows(S.ACKNOWLEDGED, I.FALLBACK)
    with pytest.raises(InvalidTransition):
        M.next(S.FALLBACK_SMS, I.FALLBACK)  # texted once
    assert needs_fallback(S.QUEUED, require_ack=False) and needs_fallback(S.DELIVERED, require_ack=True)
    assert not needs_fallback(S.DELIVERED, require_ack=False)
    assert not needs_fallback(S.ACKNOWLEDGED, require_ack=True) and not needs_fallback(S.FALLBACK_SMS, True)


def test_presence_restored_at_start() -> None:
    t = table()
    change = t.restore("u1", last_seen=500, was_online=True)  # the gateway died with it online
    assert change is not None and change.reason is Reason.GATEWAY_RESTARTED and change.last_seen == 500
    assert t.restore("u2", last_seen=None, was_online=False) is None
    assert t.get("u1").last_seen == 500 and not t.online("u1")
    t.connected("u2", "c1", mono=0, wall=5)
    change = t.disconnected("u2", "c1", Reason.GATEWAY_STOPPED)
    assert change is not None and change.reason is Reason.GATEWAY_STOPPED


class _Counting(dict):
    """A slot table that counts the slots read (what one step of a core looks at)."""

    reads = 0

    def values(self):  # type: ignore[override]
        for v in super().values():
            _Counting.reads += 1
            yield v

    def items(self):  # type: ignore[override]
        for kv in super().items():
            _Counting.reads += 1
            yield kv


def test_the_timer_steps_do_not_look_at_every_terminal() -> None:
    """The service's timer asks for the next deadline and the due items on every wake, and for
    the next due trailing publish on every deferred report: with 1,000 terminals online and
    reporting faster than the live rate, scanning them all each time made reporting quadratic.
    The cores keep their deadlines in order: a step reads what is due, not the fleet."""
    n = 1000
    ids = [f"t{i:04d}" for i in range(n)]
    presence, gate = PresenceTable(ids, interval_s=10, missed=3), LocationGate(1.0)
    for i, tid in enumerate(ids):
        presence.connected(tid, f"c{i}", mono=100 + i / 1000, wall=1000)
        gate.offer(tid, 1.0, "first", now=100 + i / 1000)
        assert gate.offer(tid, 2.0, "second", now=100.5 + i / 1000) is Offer.DEFERRED
    presence._terms = _Counting(presence._terms)  # type: ignore[assignment]
    gate._slots = _Counting(gate._slots)  # type: ignore[assignment]
    _Counting.reads = 0
    assert presence.next_deadline() == pytest.approx(130.0)
    assert gate.next_due() == pytest.approx(101.0)
    assert [k for k, _, _ in gate.due(101.0105)] == ids[:11]  # the ones due, oldest first
    assert gate.next_due() == pytest.approx(101.011)
    assert [c.terminal_id for c in presence.expire(130.0025)] == ids[:3]
    assert presence.next_deadline() == pytest.approx(130.003)
    assert _Counting.reads == 0
    for i, tid in enumerate(ids[3:], start=3):  # everyone else beats: the oldest deadline moves on
        assert presence.beat(tid, f"c{i}", mono=125 + i / 1000, wall=1025)
    assert presence.next_deadline() == pytest.approx(155.003)
    assert [c.terminal_id for c in presence.expire(160)] == ids[3:]
    assert presence.next_deadline() is None
