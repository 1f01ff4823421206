"""Voice activity of conference members against real phones: a phone playing a tone talks; a
phone sending digital silence, and a SIPp member that sends no RTP at all, stay silent. (The worker
read the level of what each member hears, pjsua2's getRxLevel, not of what it sends: the two
silent members "talked" whenever the tone played, and the tone's phone, hearing silence, never did.)"""

from __future__ import annotations

import asyncio

import pytest

from tests.gateway.test_conferences import AUDIO_S, member_event, tone_phone
from tests.peers.baresip import BaresipPhone
from tests.peers.sipp import sipp_uas

pytestmark = pytest.mark.peers


def talking_changes(w, member_id: str) -> list[bool]:
    return [e["data"]["talking"] for e in w.events if e["type"] == "conference.member"
            and e["data"]["member_id"] == member_id and e["data"]["state"] in ("joined", "muted")]


async def test_a_tone_talks_and_silence_or_no_rtp_stays_silent(start_gateway, connect, watch, tmp_path) -> None:
    gw = await start_gateway()
    alice = await connect(gw)
    w = await watch(alice)
    async with (tone_phone("duty", tmp_path) as duty, BaresipPhone(user="quiet") as quiet,
                sipp_uas("answer") as mute_line):
        cid = (await alice.call("conference.create", title="voice activity"))["conference_id"]
        members = {}
        for name, uri in (("duty", duty.uri), ("quiet", quiet.uri), ("no-rtp", mute_line.uri)):
            members[name] = (await alice.call("conference.add", conference_id=cid, target=uri))["member_id"]
        for member_id in members.values():
            await member_event(w, member_id, "joined")
        # the tone talks ...
        await w.wait(lambda e: e["type"] == "conference.member" and e["data"]["member_id"] == members["duty"]
                     and e["data"]["talking"], timeout=15)
        # ... and over as long again of audio, neither the silent phone nor the line that sends
        # nothing is ever said to talk (the level of a stream without RTP read 34 before).
        await asyncio.sleep(AUDIO_S * 2)
        rx = await gw.sip.conf_stats(0, cid)  # RTP packets each member's stream received
        await alice.call("conference.end", conference_id=cid)
    assert talking_changes(w, members["duty"])[:2] == [False, True]
    assert True not in talking_changes(w, members["quiet"]), talking_changes(w, members["quiet"])
    assert True not in talking_changes(w, members["no-rtp"]), talking_changes(w, members["no-rtp"])
    assert len(rx) == 3 and sorted(rx.values())[0] == 0, rx  # the SIPp line sent nothing indeed
