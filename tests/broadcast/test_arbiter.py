import random

import pytest

from gateway.broadcast.arbiter import Arbiter, Claim
from gateway.errors import Conflict, InvalidParams

PRIOS = ("emergency", "normal", "routine")


def arb(**kw):
    return Arbiter(PRIOS, **kw)


def test_free_targets_are_granted():
    a = arb()
    c = a.claim("b1", "normal", ["s1", "s2", "s1"])
    assert c == Claim(granted=["s1", "s2"])
    assert a.holder("s1") == a.holder("s2") == "b1"
    assert a.held_by("b1") == ["s1", "s2"]


def test_reclaim_by_holder_is_idempotent():
    a = arb()
    a.claim("b1", "normal", ["s1"])
    assert a.claim("b1", "normal", ["s1", "s2"]).granted == ["s1", "s2"]
    a.check()


def test_two_dispatchers_equal_priority_first_keeps():
    a = arb()
    a.claim("d1", "normal", ["s1", "s2"])
    c = a.claim("d2", "normal", ["s2", "s3"])
    assert c.granted == ["s3"]
    assert c.preempted == []
    assert c.refused == [("s2", "d1")]
    assert a.holder("s2") == "d1" and a.holder("s3") == "d2"
    assert a.waiting("s2") == []  # refused claimants do not queue
    # d1 releases: s2 is free, not handed to d2
    assert a.release("d1") == [("s1", None), ("s2", None)]
    assert a.holder("s2") is None
    a.check()


def test_equal_priority_last_rule_preempts_and_restores():
    a = arb(equal_priority="last")
    a.claim("d1", "normal", ["s1", "s2"])
    c = a.claim("d2", "normal", ["s2", "s3"])
    assert c.granted == ["s3"] and c.preempted == [("s2", "d1")] and c.refused == []
    assert a.waiting("s2") == ["d1"]
    # an earlier-started broadcast does not win back by claiming again
    assert a.claim("d1", "normal", ["s2"]).refused == [("s2", "d2")]
    assert a.release("d2") == [("s2", "d1"), ("s3", None)]
    a.check()


def test_higher_priority_preempts_lower_is_refused():
    a = arb()
    a.claim("r", "routine", ["s1", "s2"])
    c = a.claim("e", "emergency", ["s1"])
    assert c.preempted == [("s1", "r")] and c.acquired == ["s1"]
    assert a.holder("s1") == "e" and a.waiting("s1") == ["r"]
    assert a.waiting_for("r") == ["s1"] and a.held_by("r") == ["s2"]
    assert a.claim("n", "normal", ["s1", "s2"]) == Claim(granted=[], preempted=[("s2", "r")],
                                                        refused=[("s1", "e")])
    a.check()


def test_three_level_chain_release_order():
    a = arb()
    a.claim("r", "routine", ["s"])
    a.claim("n", "normal", ["s"])
    a.claim("e", "emergency", ["s"])
    assert a.holder("s") == "e" and a.waiting("s") == ["n", "r"]
    assert a.release("e") == [("s", "n")]
    assert a.waiting("s") == ["r"]
    assert a.release("n") == [("s", "r")]
    assert a.release("r") == [("s", None)]
    assert a.snapshot() == {}


def test_three_level_chain_reverse_arrival_and_middle_leaves():
    a = arb()
    a.claim("n", "normal", ["s"])
    a.claim("r", "routine", ["s"])  # refused
    a.claim("e", "emergency", ["s"])
    assert a.waiting("s") == ["n"]
    a.claim("r2", "routine", ["t"])
    a.claim("n2", "normal", ["t"])
    a.claim("e2", "emergency", ["t"])
    assert a.waiting("t") == ["n2", "r2"]
    assert a.release("n2") == []  # it only waited: leaves the queue, hands nothing
    assert a.waiting("t") == ["r2"]
    assert a.release("e2") == [("t", "r2")]


def test_waiting_order_priority_then_start_order():
    # Equal-priority waiters on one target only arise under the "last" rule: latest first.
    a = arb(equal_priority="last")
    a.claim("r1", "routine", ["s"])
    a.claim("n1", "normal", ["s"])
    a.claim("n2", "normal", ["s"])
    a.claim("e1", "emergency", ["s"])
    assert a.waiting("s") == ["n2", "n1", "r1"]
    assert [a.release(b) for b in ("e1", "n2", "n1", "r1")] == [
        [("s", "n2")], [("s", "n1")], [("s", "r1")], [("s", None)]]


def test_release_of_a_waiter_only_leaves_the_queue():
    a = arb()
    a.claim("r", "routine", ["s", "t"])
    a.claim("e", "emergency", ["s"])
    assert a.release("r", ["s"]) == []
    assert a.waiting("s") == [] and a.holder("t") == "r"
    assert a.release("e") == [("s", None)]


def test_end_policy_does_not_wait():
    a = arb()
    a.claim("r", "routine", ["s"], policy="end")
    c = a.claim("e", "emergency", ["s"])
    assert c.preempted == [("s", "r")]
    assert a.waiting("s") == []
    assert a.release("e") == [("s", None)]
    a2 = arb(preempted_policy="end")
    a2.claim("r", "routine", ["s"])
    a2.claim("e", "emergency", ["s"])
    assert a2.waiting("s") == []


def test_partial_release():
    a = arb()
    a.claim("r", "routine", ["s1", "s2"])
    a.claim("e", "emergency", ["s1", "s2"])
    assert a.release("e", ["s2"]) == [("s2", "r")]
    assert a.holder("s1") == "e" and a.holder("s2") == "r"
    assert a.release("nobody") == []


def test_invalid_requests_change_nothing():
    a = arb()
    a.claim("b1", "normal", ["s1"])
    before = a.snapshot()
    with pytest.raises(InvalidParams) as exc:
        a.claim("b2", "urgent", ["s1"])
    assert exc.value.details["known"] == list(PRIOS)
    with pytest.raises(InvalidParams):
        a.claim("b2", "emergency", ["s2", ""])
    with pytest.raises(InvalidParams):
        a.claim("b2", "emergency", "s1")
    with pytest.raises(InvalidParams):
        a.claim("", "emergency", ["s1"])
    with pytest.raises(InvalidParams):
        a.claim("b2", "emergency", ["s1"], policy="later")
    with pytest.raises(Conflict):
        a.claim("b1", "emergency", ["s2"])  # a broadcast keeps its priority
    assert a.snapshot() == before
    assert a.holder("s2") is None


def test_constructor_validation():
    with pytest.raises(ValueError):
        Arbiter([])
    with pytest.raises(ValueError):
        Arbiter(["a", "a"])
    with pytest.raises(ValueError):
        Arbiter(PRIOS, equal_priority="random")
    with pytest.raises(ValueError):
        Arbiter(PRIOS, preempted_policy="pause")


def test_custom_priority_order():
    a = Arbiter(["fire", "police", "info"])
    a.claim("i", "info", ["s"])
    assert a.claim("f", "fire", ["s"]).preempted == [("s", "i")]


# ---------------------------------------------------------------- randomized model check


@pytest.mark.parametrize("rule", ["first", "last"])
@pytest.mark.parametrize("seed", range(20))
def test_random_operations_keep_invariants(rule, seed):
    """A model: per target the set of live contenders (broadcasts that were granted it or took it,
    not released, not pre-empted under policy "end"). The holder is always the best contender and
    the waiting list the rest, in order; release hands back in that order."""
    rng = random.Random(seed)
    a = Arbiter(PRIOS, equal_priority=rule)
    targets = [f"s{i}" for i in range(5)]
    info: dict[str, tuple[int, int, str]] = {}  # id -> (rank, order, policy)
    contenders: dict[str, set[str]] = {t: set() for t in targets}
    order = 0

    def key(b):
        rank, o, _ = info[b]
        return (rank, o if rule == "first" else -o)

    for step in range(300):
        live = sorted(info)
        if live and rng.random() < 0.35:
            b = rng.choice(live)
            chosen = None if rng.random() < 0.5 else rng.sample(targets, rng.randint(1, 3))
            expect_handed = {}
            for t in (targets if chosen is None else chosen):
                if a.holder(t) == b:
                    rest = sorted(contenders[t] - {b}, key=key)
                    expect_handed[t] = rest[0] if rest else None
            handed = a.release(b, chosen)
            assert dict(handed) == expect_handed
            for t in (targets if chosen is None else chosen):
                contenders[t].discard(b)
        else:
            b = rng.choice(live) if live and rng.random() < 0.3 else f"b{step}"
            if b in info:
                rank, _, policy = info[b]
                prio = PRIOS[rank]
            else:
                prio, policy = rng.choice(PRIOS), rng.choice(["resume", "resume", "end"])
            chosen = rng.sample(targets, rng.randint(1, 4))
            holders_before = {t: a.holder(t) for t in chosen}
            c = a.claim(b, prio, chosen, policy=policy)
            if b not in info:
                info[b] = (PRIOS.index(prio), order, policy)
                order += 1
            assert sorted(c.granted + [t for t, _ in c.preempted] + [t for t, _ in c.refused]) == sorted(chosen)
            for t in c.granted:
                assert holders_before[t] in (None, b)
                contenders[t].add(b)
            for t, old in c.preempted:
                assert holders_before[t] == old and key(b) < key(old)
                if info[old][2] == "end":
                    contenders[t].discard(old)
                contenders[t].add(b)
            for t, h in c.refused:
                assert holders_before[t] == h and h != b
                assert info[h][0] <= info[b][0]  # never refused by a lower priority
        # drop forgotten broadcasts from the model (they get a new start order if they come back)
        for bid in list(info):
            if not any(bid in cs for cs in contenders.values()):
                del info[bid]
        a.check()
        for t in targets:
            ranked = sorted(contenders[t], key=key)
            assert a.holder(t) == (ranked[0] if ranked else None), (step, t)
            assert a.waiting(t) == ranked[1:]
