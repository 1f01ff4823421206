"""Inbound calls must not starve outbound dispatch (issue 8, section 2, "SIP capacity").

Against the real gateway: Kamailio in front of pjsua2 workers, SIPp callers and callees. A ringing
inbound call holds a pjsua call slot until it is answered or ended; these tests fill the slots
with calls left ringing and check that a dispatcher's `call.dial` still connects, that one source
cannot hold more than `sip.max_ringing_per_source` ringing calls (even when it floods), and that
the front tries another worker when one is full instead of passing its refusal to the caller.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.peers.sipp import Sipp, sipp_ringer, sipp_uac, sipp_uas

pytestmark = pytest.mark.peers

FLOOD_SOURCE = "127.0.0.1"
OTHER_SOURCE = "127.0.0.2"  # loopback too: another source address as the front sees it


async def _front_ready(gw, workers: int) -> None:
    """Wait until the front's OPTIONS probes have marked `workers` workers active."""
    async with asyncio.timeout(20):
        while list((await gw.front.destinations()).values()).count("AP") < workers:
            await asyncio.sleep(0.2)


def _ringing(w, user: str | None = None) -> list[str]:
    """Ids of the inbound calls that rang at the gateway (from sip:`user`@ only, when given)."""
    ids = []
    for ev in w.events:
        d = ev["data"]
        if ev["type"] == "call.state" and d["state"] == "ringing" and d.get("direction") == "inbound":
            if user is None or f"sip:{user}@" in (d.get("remote_uri") or ""):
                ids.append(d["call_id"])
    return list(dict.fromkeys(ids))


async def _wait_ringing(w, n: int, user: str | None = None, timeout: float = 30) -> list[str]:
    async with asyncio.timeout(timeout):
        while len(_ringing(w, user)) < n:
            w._changed.clear()
            await w._changed.wait()
    return _ringing(w, user)


def _finals(sipp: Sipp) -> dict[str, int]:
    """Final answers SIPp received, by status line (from its message trace)."""
    sipp.result = sipp._collect(-1)  # the trace so far; SIPp keeps running
    counts: dict[str, int] = {}
    for m in re.finditer(r"^SIP/2\.0 ([2-6]\d\d [^\r\n]*)", sipp.result.messages, re.M):
        if not m.group(1).startswith(("100", "180", "183")):
            counts[m.group(1).strip()] = counts.get(m.group(1).strip(), 0) + 1
    return counts


async def _wait_finals(sipp: Sipp, n: int, timeout: float = 30) -> dict[str, int]:
    """Wait until SIPp has had `n` final answers; they, by status line."""
    async with asyncio.timeout(timeout):
        while sum(_finals(sipp).values()) < n:
            assert sipp.proc is not None and sipp.proc.returncode is None, sipp._errors()[-2000:]
            await asyncio.sleep(0.2 if n < 100 else 1.0)  # a flood's trace is megabytes
    return _finals(sipp)


def _front_errors(gw) -> list[str]:
    return [line for line in gw.front.log if " ERROR: " in line]


async def _dial_connects(alice, w) -> None:
    async with sipp_uas("answer") as uas:
        call = await alice.call("call.dial", target=uas.uri)
        await w.call_state(call["call_id"], "connected", timeout=20)
        await alice.call("call.hangup", call_id=call["call_id"])
        await w.call_state(call["call_id"], "ended", timeout=20)
        res = await uas.wait(15)
    assert res.successful == 1, res.errors


async def test_ringing_inbound_calls_leave_the_dispatch_reserve_to_call_dial(
        start_gateway, connect, watch) -> None:
    # 2 workers x 4 slots, 3 reserved for call.dial: inbound may hold 5 ringing calls, never 8.
    gw = await start_gateway(**{"sip.max_workers": 2, "sip.warm_workers": 2, "sip.dispatch_reserve": 3,
                                "sip.max_ringing_per_source": 100, "calls.ring_timeout_s": 120})
    slots = 2 * gw.sip.calls_per_worker
    assert slots == 8, "the pjsua2 wheel holds 4 calls per worker (shared/FACTS.md)"
    await _front_ready(gw, 2)
    alice = await connect(gw)
    w = await watch(alice)
    async with sipp_ringer(f"{gw.config.sip.host}:{gw.config.sip.port}", calls=slots, rate=20) as ringer:
        async with asyncio.timeout(30):  # every INVITE rang or was refused
            while len(_ringing(w)) + sum(_finals(ringer).values()) < slots:
                await asyncio.sleep(0.2)
        await _dial_connects(alice, w)  # before: no-capacity, all 8 slots rang
        assert len(_ringing(w)) == slots - 3, _finals(ringer)
        # each of the others was refused by both workers (at their inbound share), then by the
        # front itself, with the time to come back
        assert _finals(ringer) == {"503 Worker Full": 3}, _finals(ringer)
        assert ringer.result.count("Retry-After: 5") == 3
        assert any("(503 Worker Full)" in line for line in gw.front.log)
        # every worker's inbound share is used (the front failed over from a worker at its share)
        per_worker = [len(gw.sip._workers[i].calls) for i in range(2)]
        assert sorted(per_worker) == [2, 3], per_worker
        assert all(c in gw.calls._live for c in _ringing(w))  # the ringing calls were left alone
        await ringer.stop()
    assert not _front_errors(gw)


async def test_invite_flood_from_one_source_leaves_room_for_others_and_for_dial(
        start_gateway, connect, watch) -> None:
    flood, limit = 2000, 2
    # 2 workers x 4 slots, 2 kept for call.dial (the default): 6 for inbound calls
    gw = await start_gateway(**{"sip.max_workers": 2, "sip.warm_workers": 2, "sip.max_ringing_per_source": limit,
                                "calls.ring_timeout_s": 120})
    await _front_ready(gw, 2)
    target = f"{gw.config.sip.host}:{gw.config.sip.port}"
    alice = await connect(gw)
    w = await watch(alice)
    async with sipp_ringer(target, calls=flood, rate=150, host=FLOOD_SOURCE, user="flood",
                           timeout_s=90) as flooder:
        finals = await _wait_finals(flooder, flood - limit, timeout=60)  # each INVITE answered
        assert len(_ringing(w, "flood")) == limit, finals
        assert finals == {"486 Too Many Ringing Calls": flood - limit}, finals
        # another source still gets through: its calls ring and are answered ...
        async with sipp_uac(target, calls=limit, host=OTHER_SOURCE, user="other", hold_ms=60_000) as other:
            answered = await _wait_ringing(w, limit, "other")
            for cid in answered:
                await alice.call("call.answer", call_id=cid)
                await w.call_state(cid, "connected")
            # ... and answered calls no longer count as ringing for their source
            async with sipp_ringer(target, calls=limit, host=OTHER_SOURCE, user="other2") as other2:
                await _wait_ringing(w, limit, "other2")
                assert _finals(other2) == {}
                # the inbound share is used up (2 + 2 + 2 of 6): call.dial still connects
                assert sum(len(x.calls) for x in gw.sip._workers.values()) == 3 * limit
                await _dial_connects(alice, w)
                await other2.stop()
            await other.stop()
        # the flood's calls still ring at the front: one more is refused
        async with sipp_ringer(target, calls=1, host=FLOOD_SOURCE, user="more") as more:
            assert await _wait_finals(more, 1) == {"486 Too Many Ringing Calls": 1}
        await flooder.stop()
    assert not _front_errors(gw)


async def test_front_fails_over_from_a_full_worker(start_gateway, connect, watch) -> None:
    gw = await start_gateway(**{"sip.max_workers": 2, "sip.warm_workers": 2, "sip.dispatch_reserve": 0,
                                "calls.ring_timeout_s": 120})
    cpw = gw.sip.calls_per_worker
    await _front_ready(gw, 2)
    alice = await connect(gw)
    w = await watch(alice)
    target = f"{gw.config.sip.host}:{gw.config.sip.port}"
    async with sipp_uas("answer", calls=cpw) as uas:
        # calls to the dispatcher's callees fill one worker (placement is fill-first)
        dialled = [(await alice.call("call.dial", target=uas.uri))["call_id"] for _ in range(cpw)]
        for cid in dialled:
            await w.call_state(cid, "connected", timeout=20)
        full = {gw.sip.worker_of(c) for c in dialled}
        assert len(full) == 1, full
        # inbound calls through the front: round robin offers some of them to the full worker,
        # whose pjsua answers 486; the front tries the other worker instead
        async with sipp_ringer(target, calls=3, rate=10) as ringer:
            ringing = await _wait_ringing(w, 3)
            assert {gw.sip.worker_of(c) for c in ringing} == {0, 1} - full
            assert _finals(ringer) == {}
            # a refusal the dispatcher chose is passed to the caller, never failed over
            await alice.call("call.reject", call_id=ringing[0], code=503)
            await alice.call("call.reject", call_id=ringing[1], code=486)
            await _wait_finals(ringer, 2)
            assert len(_ringing(w)) == 3, "a rejected call rang again on another worker"
            # (a relayed 503 becomes 500: RFC 3261 16.7)
            assert _finals(ringer) == {"500 Service Unavailable": 1, "486 Declined by Gateway": 1}
            await ringer.stop()
        for cid in dialled:
            await alice.call("call.hangup", call_id=cid)
    assert not _front_errors(gw)


async def test_a_single_worker_without_front_limits_ringing_per_source_and_keeps_the_reserve(
        start_gateway, connect, watch) -> None:
    # No front: the worker sees every caller's address and applies both limits itself.
    gw = await start_gateway(**{"sip.max_workers": 1, "sip.dispatch_reserve": 1, "sip.max_ringing_per_source": 2,
                                "calls.ring_timeout_s": 120})
    assert gw.front is None
    target = f"{gw.config.sip.host}:{gw.config.sip.port}"
    alice = await connect(gw)
    w = await watch(alice)
    async with sipp_ringer(target, calls=3, rate=10, host=FLOOD_SOURCE, user="one") as one:
        await _wait_ringing(w, 2, "one")
        assert await _wait_finals(one, 1) == {"486 Too Many Ringing Calls": 1}
        async with sipp_ringer(target, calls=2, rate=10, host=OTHER_SOURCE, user="two") as two:
            await _wait_ringing(w, 1, "two")
            # 3 of the worker's 4 slots are its inbound share; the 4th is call.dial's
            assert await _wait_finals(two, 1) == {"503 Worker Full": 1}
            assert two.result.count("Retry-After: 5") == 1
            assert len(_ringing(w)) == 3
            await _dial_connects(alice, w)
            await two.stop()
        await one.stop()


@pytest.mark.parametrize(("front", "limit", "ringing"), [(False, 2, 2), (True, 0, 6)],
                         ids=["no-front", "front-no-source-limit"])
async def test_a_flood_the_workers_refuse_neither_crashes_them_nor_starves_dial(
        start_gateway, connect, watch, front: bool, limit: int, ringing: int) -> None:
    # The workers refuse the flood themselves: without a front (one worker, which applies the
    # ringing limit per source), or behind the front when the flood gets past the front's limit
    # (many sources; here the limit is off): each worker up to its inbound share, 3 of its 4 slots.
    # Refusing each INVITE at once opened and closed two RTP sockets per INVITE and crashed a
    # worker within a second (pjsua's ioqueue ran out of slots: an assertion, SIGABRT); a worker
    # now answers at most REFUSALS_PER_S a second and lets pjsua answer the rest 486 before any
    # socket is opened.
    flood, workers = 2000, 2 if front else 1
    gw = await start_gateway(**{"sip.max_workers": workers, "sip.warm_workers": workers,
                                "sip.max_ringing_per_source": limit, "calls.ring_timeout_s": 120})
    assert (gw.front is not None) == front
    if front:
        await _front_ready(gw, workers)
    pids = [gw.sip.worker_pid(i) for i in range(workers)]
    target = f"{gw.config.sip.host}:{gw.config.sip.port}"
    alice = await connect(gw)
    w = await watch(alice)
    async with sipp_ringer(target, calls=flood, rate=150, host=FLOOD_SOURCE, user="flood",
                           timeout_s=90) as flooder:
        await _wait_finals(flooder, 300)  # well into the flood
        for _ in range(3):  # dispatchers keep dialling through it
            await _dial_connects(alice, w)
        finals = await _wait_finals(flooder, flood - ringing, timeout=60)
        assert set(finals) <= {"486 Too Many Ringing Calls", "486 Busy Here", "503 Worker Full"}, finals
        assert len(_ringing(w, "flood")) == ringing
        await flooder.stop()
    assert [gw.sip.worker_pid(i) for i in range(workers)] == pids
    assert all(x["restarts"] == 0 for x in gw.sip.stats()["workers"].values())
    if front:
        assert not _front_errors(gw)
