"""The conference core without I/O: member states, chair, all-but-chair mute, leave causes, end."""

from __future__ import annotations

import pytest

from gateway.errors import Conflict, NotFound
from gateway.state.conference import Conference, MemberState, PinEntry


def _conf(*members: tuple[str, bool]) -> Conference:
    conf = Conference("c1", "s1", title="flood")
    for mid, chair in members:
        conf.add(mid, f"call-{mid}", target=mid, chair=chair)
    return conf


def test_member_joins_then_is_mixed():
    conf = Conference("c1", "s1")
    change = conf.add("m1", "call-1", target="fire")
    assert change.member["state"] == "joining" and change.member["muted"] is False
    assert conf.joined("m1").member["state"] == "joined"


def test_a_console_member_shows_no_call():
    conf = Conference("c1", "s1")
    change = conf.add("m1", "console-m1", console=True)
    assert change.member["console"] is True and change.member["call_id"] is None
    assert conf.member_by_call("console-m1").member_id == "m1"  # its port id, inside the gateway
    assert conf.add("m2", "call-2").member["console"] is False


def test_mute_unmute_and_repeated_mute_reports_nothing():
    conf = _conf(("a", False))
    conf.joined("a")
    assert conf.set_muted("a", True).member["state"] == "muted"
    assert conf.set_muted("a", True) is None
    assert conf.set_muted("a", False).member == {**conf.member("a").public(), "state": "joined"}
    assert conf.set_muted("a", False) is None


def test_muted_while_joining_joins_muted():
    conf = _conf(("a", False))
    change = conf.set_muted("a", True)
    assert change.member["state"] == "joining" and change.member["muted"] is True
    joined = conf.joined("a").member
    assert joined["state"] == "muted" and joined["muted"] is True


def test_all_but_chair_muted_leaves_the_chair_and_left_members_alone():
    conf = _conf(("chair", True), ("a", False), ("b", False), ("gone", False))
    for mid in ("chair", "a", "b", "gone"):
        conf.joined(mid)
    conf.leave("gone", "hangup")
    changes = conf.set_all_but_chair_muted(True)
    assert sorted(c.member["member_id"] for c in changes) == ["a", "b"]
    assert conf.member("chair").state is MemberState.JOINED
    assert conf.member("gone").state is MemberState.LEFT
    assert [c.member["member_id"] for c in conf.set_all_but_chair_muted(False)] == ["a", "b"]


def test_without_a_chair_all_are_muted():
    conf = _conf(("a", False), ("b", False))
    conf.joined("a")
    assert len(conf.set_all_but_chair_muted(True)) == 2  # b is muted while joining


def test_one_chair_only():
    conf = _conf(("chair", True))
    with pytest.raises(Conflict):
        conf.add("x", "call-x", chair=True)


def test_a_call_is_in_a_conference_once():
    conf = _conf(("a", False))
    with pytest.raises(Conflict) as e:
        conf.add("a2", "call-a")
    assert e.value.reason == "already-member"
    conf.leave("a", "removed")
    conf.add("a2", "call-a")  # it may come back after it left


def test_leave_has_a_cause_once():
    conf = _conf(("a", False))
    conf.joined("a")
    change = conf.leave("a", "removed")
    assert change.member["state"] == "left" and change.member["cause"] == "removed"
    assert conf.leave("a", "hangup") is None
    assert conf.member("a").cause == "removed"
    with pytest.raises(Conflict):
        conf.set_muted("a", True)


def test_end_makes_every_member_leave_and_refuses_more():
    conf = _conf(("a", False), ("b", False))
    conf.joined("a")
    conf.leave("b", "failed")
    changes = conf.end()
    assert [(c.member["member_id"], c.member["cause"]) for c in changes] == [("a", "conference-ended")]
    assert conf.public()["state"] == "ended" and conf.end() == []
    with pytest.raises(Conflict):
        conf.add("c", "call-c")
    with pytest.raises(Conflict):
        conf.set_all_but_chair_muted(True)


def test_unknown_member():
    with pytest.raises(NotFound) as e:
        Conference("c1", "s1").member("nope")
    assert e.value.reason == "no-such-member"


def test_joined_twice_is_refused():
    conf = _conf(("a", False))
    conf.joined("a")
    with pytest.raises(Conflict):
        conf.joined("a")


def test_talking_only_in_the_mix_and_only_changes():
    conf = _conf(("a", False), ("b", False))
    assert conf.set_talking("a", True) is None  # still joining: nothing published yet
    # the worker's report came before the join's answer: the join says it (it is not sent again)
    assert conf.joined("a").member["talking"] is True
    assert conf.set_talking("a", True) is None
    conf.set_talking("a", False)
    assert conf.set_talking("a", True).member["talking"] is True
    assert conf.joined("b").member["talking"] is False
    conf.set_muted("a", True)
    assert conf.set_talking("a", False).member == {**conf.member("a").public(), "talking": False}
    conf.set_talking("a", True)
    left = conf.leave("a", "hangup").member
    assert left["talking"] is False and conf.set_talking("a", True) is None
    assert conf.set_talking("nobody", True) is None


def test_a_pin_is_accepted_when_typed_and_refused_after_the_last_wrong_attempt() -> None:
    entry = PinEntry("2468", attempts=2)
    assert [entry.digit(d) for d in "2468"] == [None, None, None, "ok"]
    entry = PinEntry("2468", attempts=2)
    assert [entry.digit(d) for d in "13#"] == [None, None, "wrong"]  # '#' submits a short one
    assert [entry.digit(d) for d in "1357"] == [None, None, None, "refused"]
    assert entry.digit("2") == "refused"  # nothing more is taken once refused
