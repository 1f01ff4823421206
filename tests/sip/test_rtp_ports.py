"""A worker given exactly two RTP ports a call (`sip.rtp_ports_per_worker` = 2 x calls_per_worker)
carries that many calls with media, also after calls ended and others took their place: pjsua
binds each call's RTP and RTCP as a pair, scanning its port range from where the last call's pair
was, and gave up after 100 pairs in use (pjsua_media.c, RTP_RETRY): the source build scans the
whole range (scripts/build_pjsua2.sh). Before, the first dial after a call near the end of the
range ended failed with "Address already in use"."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.peers.ports import free_port_block
from tests.peers.sipp import UAS_SCENARIOS, Sipp

from .conftest import Recorder, probe_count

pytestmark = pytest.mark.peers

CALLS = 120  # more than pjsua's 100 tries: a scan from the oldest pair would not reach a free one


def media_up(recorder: Recorder, call_id: str):
    return recorder.wait_for(lambda e: e.call_id == call_id and e.kind == "media"
                             and e.extra.get("status") == "active", timeout=20)


async def test_two_rtp_ports_a_call_carry_every_call_with_media(start_supervisor, recorder: Recorder) -> None:
    assert probe_count(CALLS + 8) > CALLS, "a worker of this pjsua2 holds fewer calls: the source build is needed"
    base = free_port_block(span=2 * CALLS, tcp=False)
    sup = await start_supervisor(calls_per_worker=CALLS, rtp_ports_per_worker=2 * CALLS, rtp_port_base=base,
                                 max_workers=1)
    async with Sipp(UAS_SCENARIOS["answer"], calls=CALLS + 2, timeout_s=120) as uas:
        calls = []
        for _ in range(CALLS):  # one after another: pjsua hands out the pairs in order
            call_id = uuid.uuid4().hex
            await sup.dial(call_id, uas.uri)
            await media_up(recorder, call_id)
            calls.append(call_id)
        # Calls holding pairs near the end of the range end; new calls must find those pairs
        # while the first 100 pairs are still in use.
        for gone in (calls[-10], calls[-3]):
            await sup.hangup(gone)
            await recorder.wait_state(gone, "disconnected")
            call_id = uuid.uuid4().hex
            await sup.dial(call_id, uas.uri)
            await media_up(recorder, call_id)
            calls.append(call_id)
        assert sup.stats()["workers"][0]["calls"] == CALLS
        for call_id in calls:
            if call_id not in (calls[CALLS - 10], calls[CALLS - 3]):
                await sup.hangup(call_id)
        result = await uas.wait(timeout=60)
    assert result.successful == CALLS + 2, result.errors[-2000:]
    offered = {int(p) for p in re.findall(r"^INVITE sip:.*?^m=audio (\d+)", result.messages, re.M | re.S)}
    assert len(offered) == CALLS and all(base <= p < base + 2 * CALLS for p in offered), sorted(offered)
