"""A conference spanning two workers (the wheel fallback, 3 calls per worker) whose trunk drops:
the supervisor redials it, `conference.trunk` says it was lost and then restored, and the three
phones hear each other across the workers again."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.gateway.test_conferences import ABSENT, AUDIO_S, PRESENT, TONES, add_all, heard, wheel_of_two

pytestmark = pytest.mark.peers


def trunk_event(w, state: str):
    return w.wait(lambda e: e["type"] == "conference.trunk" and e["data"]["state"] == state, timeout=30)


def heard_before_end(levels: dict[str, np.ndarray], blocks: int = 10) -> dict[str, np.ndarray]:
    """Each tone's level in the last `blocks` 100 ms blocks in which the phone heard anything."""
    loud = np.nonzero(np.max(np.stack(list(levels.values())), axis=0) > PRESENT)[0]
    end = loud[-1] if len(loud) else 0
    return {name: lv[max(end - blocks, 0):end] for name, lv in levels.items()}


async def test_a_dropped_trunk_is_redialled_and_the_workers_hear_each_other_again(
        start_gateway, connect, watch, tmp_path, monkeypatch) -> None:
    async with wheel_of_two(start_gateway, connect, watch, tmp_path, monkeypatch) as (gw, alice, w, phones):
        conf = await alice.call("conference.create")
        cid = conf["conference_id"]
        members = await add_all(alice, w, cid, phones)
        workers = {name: gw.sip.worker_of(m["call_id"]) for name, m in members.items()}
        assert workers["duty"] == workers["fire"] != workers["scene"], workers
        await asyncio.sleep(AUDIO_S)  # across the trunk
        # The home worker hangs its end of the trunk up: the other worker sees it drop.
        assert await gw.sip.drop_trunks(workers["duty"], cid) == 1
        lost = (await trunk_event(w, "lost"))["data"]
        assert lost["session_id"] == conf["session_id"]
        assert lost["workers"] == [workers["duty"], workers["scene"]], lost
        restored = (await trunk_event(w, "restored"))["data"]
        assert restored["workers"] == lost["workers"]
        await asyncio.sleep(AUDIO_S)  # across the redialled trunk
        await alice.call("conference.end", conference_id=cid)
        for m in members.values():
            await w.call_state(m["call_id"], "ended")
        levels = {name: await heard(phone) for name, phone in phones.items()}
    assert [v["calls"] for v in gw.sip.stats()["workers"].values()] == [0, 0]
    states = [e["data"]["state"] for e in w.events if e["type"] == "conference.trunk"]
    assert states == ["lost", "restored"], states
    for name, lv in levels.items():
        assert lv[name].max() < ABSENT, f"{name} hears itself: {lv[name].max():.3f}"
        tail = heard_before_end(lv)  # after the redial
        for other in (o for o in TONES if o != name):
            assert (tail[other] > PRESENT).sum() >= 7, f"{name} no longer hears {other}: {tail[other]}"
