"""A conference of 30 SIPp members with RTP, on one worker of the source build of pjsua2: every
member joins, and every member's RTP reaches the conference bridge."""

from __future__ import annotations

import asyncio

import pytest

from tests.gateway.test_conferences import member_event, tone_phone
from tests.peers.ports import free_port_block
from tests.peers.sipp import UAS_SCENARIOS, Sipp
from tests.sip.conftest import probe_count

pytestmark = pytest.mark.peers

MEMBERS = 30


async def test_thirty_sipp_members_join_and_each_ones_rtp_is_mixed(start_gateway, connect, watch,
                                                                  tmp_path) -> None:
    assert probe_count() > MEMBERS, "a worker of this pjsua2 holds fewer calls: the source build is needed"
    gw = await start_gateway(**{"sip.calls_per_worker": MEMBERS + 4, "sip.rtp_ports_per_worker": 2 * (MEMBERS + 4),
                                "sip.rtp_port_base": free_port_block(span=2 * (MEMBERS + 4), tcp=False)})
    alice = await connect(gw)
    w = await watch(alice)
    # SIPp answers each call and echoes the RTP it gets: what it sends is what the bridge mixed
    # for it (the chair's tone, everyone else muted), so a member that talks proves its RTP in.
    async with (tone_phone("duty", tmp_path) as duty,
                Sipp(UAS_SCENARIOS["answer"], calls=MEMBERS, extra_args=["-rtp_echo"], timeout_s=60) as uas):
        cid = (await alice.call("conference.create", title="thirty"))["conference_id"]
        chair = await alice.call("conference.add", conference_id=cid, target=duty.uri, chair=True)
        await member_event(w, chair["member_id"], "joined")
        members = await asyncio.gather(*(alice.call("conference.add", conference_id=cid, target=uas.uri)
                                         for _ in range(MEMBERS)))
        # muted while joining: no echo of an echo, each hears the chair only
        await alice.call("conference.mute", conference_id=cid, all_but_chair=True)
        ids = {m["member_id"] for m in members}
        for m in members:
            await member_event(w, m["member_id"], "muted")
        talked: set[str] = set()
        async with asyncio.timeout(45):
            while talked != ids:
                await w.wait(lambda e: e["type"] == "conference.member" and e["data"]["talking"]
                             and e["data"]["member_id"] in ids - talked, timeout=45)
                talked = {e["data"]["member_id"] for e in w.events if e["type"] == "conference.member"
                          and e["data"]["talking"] and e["data"]["member_id"] in ids}
        workers = {gw.calls.worker_of(m["call_id"]) for m in [chair, *members]}
        assert len(workers) == 1, workers
        # Voice activity says each member sent sound (the chair's tone, echoed); the
        # worker's stream counters show every member's RTP arrived.
        rx = await gw.sip.conf_stats(workers.pop(), cid)
        assert sorted(rx) == sorted(m["call_id"] for m in [chair, *members])
        assert min(rx.values()) >= 10, rx  # 0 for every SIPp member when SIPp does not echo
        await alice.call("conference.end", conference_id=cid)
        for m in members:
            await w.call_state(m["call_id"], "ended")
        result = await uas.wait(timeout=30)
    assert result.successful == MEMBERS and result.failed == 0, result.errors[-2000:]
