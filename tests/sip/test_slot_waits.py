"""The queue of dials waiting for a pjsua call slot (sip/worker/slot_waits.py), without pjsua."""

from __future__ import annotations

from sip.worker.slot_waits import SlotWaits, no_slot_message


def test_dials_wait_first_come_first_served_and_hold_back_only_their_own_calls_commands() -> None:
    waits = SlotWaits(wait_s=2.0)
    waits.park("a", 1, "placement-a", now=10.0)
    waits.park("b", 2, "placement-b", now=10.5)
    assert len(waits) == 2 and "a" in waits and "c" not in waits
    hangup_a = {"cmd": "hangup", "id": 3, "call_id": "a"}
    listen_a = {"cmd": "listen", "id": 4, "call_id": "a", "on": True}
    assert waits.hold_back(hangup_a) and waits.hold_back(listen_a)
    assert not waits.hold_back({"cmd": "hangup", "id": 5, "call_id": "c"})  # another call: runs now
    assert not waits.hold_back({"cmd": "ping", "id": 6})
    assert not waits.hold_back({"cmd": "dial", "id": 7, "call_id": "a"})  # refused in use, not held
    first = waits.first()
    assert first is not None and (first.call_id, first.rid, first.placement) == ("a", 1, "placement-a")
    assert waits.settle(first) == [hangup_a, listen_a]  # in the order they came
    assert "a" not in waits and not waits.hold_back({"cmd": "hangup", "id": 8, "call_id": "a"})
    assert waits.first().call_id == "b"  # type: ignore[union-attr]


def test_nothing_pending_refuses_every_waiting_dial_at_once() -> None:
    """No ended call holds a slot: every slot is a live call's, and nothing frees one in time."""
    waits = SlotWaits(wait_s=2.0)
    waits.park("a", 1, None, now=0.0)
    waits.park("b", 2, None, now=0.1)
    refused = waits.give_up(now=0.2, lingering=0)
    assert [d.call_id for d, _ in refused] == ["a", "b"]
    assert all(why == "every pjsua call slot is held by a live call" for _, why in refused)


def test_a_dial_waits_while_ended_calls_hold_slots_and_no_longer_than_its_deadline() -> None:
    waits = SlotWaits(wait_s=2.0)
    waits.park("a", 1, None, now=0.0)
    waits.park("b", 2, None, now=1.0)
    assert waits.give_up(now=1.9, lingering=3) == []
    refused = waits.give_up(now=2.0, lingering=3)
    assert [d.call_id for d, _ in refused] == ["a"]
    assert refused[0][1] == ("no call slot freed within 2 s (3 call slots still held by calls hung up "
                             "before their BYE or CANCEL was answered)")
    assert [d.call_id for d, _ in waits.give_up(now=3.0, lingering=1)] == ["a", "b"]  # not settled yet


def test_the_message_names_what_holds_the_slots() -> None:
    assert no_slot_message(1) == "1 call slot still held by calls hung up before their BYE or CANCEL was answered"
    assert no_slot_message(-1) == no_slot_message(0) == "every pjsua call slot is held by a live call"
