"""The worker's I/O key budget (sip/worker/io_budget.py), without pjsua2 or sockets."""

from __future__ import annotations

import random

from sip.worker.io_budget import (
    DIAL_HEADROOM_KEYS,
    IOQUEUE_KEYS,
    MARGIN_KEYS,
    MAX_OFFER_MEDIA,
    REFUSE_BUSY,
    REFUSE_MEDIA,
    SIP_KEYS,
    IoBudget,
    admit_invite,
    call_keys,
    offer_media,
)
from tests.sipfuzz import SipFuzzer

FUZZ = SipFuzzer(1, ("127.0.0.1", 5060), ("127.0.0.1", 40000))


def invite(m_lines: int = 1) -> str:
    rng = random.Random(m_lines)
    msg = FUZZ.request(rng, "INVITE")
    msg.body = FUZZ.sdp(rng, m_lines=m_lines)
    return msg.encode().decode()


def test_offer_media_counts_m_lines_of_the_body_only() -> None:
    assert offer_media(invite(1)) == 1
    assert offer_media(invite(1000)) == 1000
    no_body = FUZZ.request(random.Random(0), "INVITE", sdp=False).encode().decode()
    assert offer_media(no_body) == 0
    assert offer_media("INVITE sip:a@b SIP/2.0\r\nm=audio: not in a body\r\n\r\n") == 0
    assert offer_media("INVITE sip:a@b SIP/2.0\nX: y\n\nv=0\nm=audio 1 RTP/AVP 0\nm=audio 2 RTP/AVP 0\n") == 2


def test_call_keys_two_per_stream_capped_at_pjsua_media_limit() -> None:
    assert call_keys(0) == 2  # an offerless INVITE: pjsua offers one audio stream
    assert call_keys(1) == 2
    assert call_keys(3) == 6
    assert call_keys(1000) == 32


def test_budget_refuses_past_the_queue_and_keys_linger_after_release() -> None:
    budget = IoBudget(linger=0.75)
    assert budget.limit == IOQUEUE_KEYS - SIP_KEYS - MARGIN_KEYS
    now = 100.0
    held = 0
    while budget.reserve(f"c{held}", 2, now):
        held += 1
    assert held == budget.limit // 2
    assert budget.in_use(now) == 2 * held
    # a call that ends gives its keys back only once pjlib may reuse them
    budget.release("c0", now)
    assert not budget.reserve("new", 2, now + 0.5)
    assert budget.reserve("new", 2, now + 0.76)
    budget.release("unknown", now)  # nothing held: nothing changes
    assert budget.in_use(now + 0.76) == 2 * held


def test_budget_rename_moves_a_pending_reservation_to_its_call() -> None:
    budget = IoBudget()
    assert budget.reserve("pending", 6, 0.0)
    budget.rename("pending", "call-1")
    assert budget.live == {"call-1": 6}
    budget.rename("pending", "call-2")  # no pending reservation: nothing to move
    assert budget.live == {"call-1": 6}


def test_invite_pairs_churning_faster_than_keys_come_back_are_refused() -> None:
    """33 INVITE+CANCEL pairs within half a second aborted a worker (issue 8 s. 3): the budget
    takes them until the queue would be full, then refuses with 503 until keys come back."""
    budget = IoBudget()
    codes = []
    for i in range(40):
        now = i * 0.005
        codes.append(admit_invite(budget, f"c{i}", invite(), now))
        budget.release(f"c{i}", now)  # CANCELled at once
    taken = (budget.limit - DIAL_HEADROOM_KEYS) // 2
    assert codes[:taken] == [None] * taken
    assert codes[taken:] == [REFUSE_BUSY] * (40 - taken)
    # the dispatcher's dial still finds its keys, and the churn's keys come back
    assert budget.reserve("dial", call_keys(1), 0.2)
    assert admit_invite(budget, "later", invite(), 1.0) is None


def test_offers_with_more_media_than_a_call_uses_are_refused_without_keys() -> None:
    budget = IoBudget()
    assert admit_invite(budget, "a", invite(MAX_OFFER_MEDIA + 1), 0.0) == REFUSE_MEDIA
    assert admit_invite(budget, "b", invite(1000), 0.0) == REFUSE_MEDIA
    assert budget.in_use(0.0) == 0
    assert admit_invite(budget, "c", invite(MAX_OFFER_MEDIA), 0.0) is None
    assert budget.in_use(0.0) == call_keys(MAX_OFFER_MEDIA)


def test_usable_keys_follow_the_build_within_the_descriptor_limit() -> None:
    """The worker's budget is its pjsua2 build's I/O queue (64 keys in the wheel, 4,096 in the
    source build), never more than the descriptors the process may open."""
    import resource

    from sip.worker.io_budget import FD_RESERVE, usable_keys

    assert usable_keys(64) == 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        got = usable_keys(4096)  # raises the soft limit towards the hard one
        now = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert got == min(4096, now - FD_RESERVE)
        if hard == resource.RLIM_INFINITY or hard >= 4096 + FD_RESERVE:
            assert got == 4096
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
