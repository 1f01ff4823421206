"""A broadcast's fan-out through the whole gateway to a SIPp UAS: what each answer costs.

Measured (docs/benchmarks.md, "Broadcast fan-out: where the time went"): the last of 500 targets
connected 7 s after `broadcast.start` although the worker had all 500 answered within 2 s; the
broadcast took the answers one at a time, each waiting for a stream_attach round trip to the
worker (up to one 10 ms poll of its loop) and then for its own store commit. These tests count
what an answer costs instead of timing it.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import pytest

from tests.peers.sipp import free_port_block, sipp_uas
from tests.sip.conftest import probe_count

pytestmark = pytest.mark.peers

N = 12


def _one_worker_for_all() -> dict[str, Any]:
    """Every target on one worker (the source build holds hundreds of calls a worker)."""
    assert probe_count() > N, "a worker of this pjsua2 holds fewer calls: the source build is needed"
    return {"broadcast.invite_pace_per_s": 200, "sip.calls_per_worker": N + 4,
            "sip.rtp_ports_per_worker": 2 * (N + 4),
            "sip.rtp_port_base": free_port_block(span=2 * (N + 4), tcp=False)}


async def _broadcast(alice, uas, n: int = N) -> dict:
    targets = [f"sip:spk{i}@127.0.0.1:{uas.port}" for i in range(n)]
    return await alice.call("broadcast.start", targets=targets, chime=False,
                            source={"type": "tone", "frequency": 1000, "seconds": 30})


def _connected(w, broadcast_id: str) -> int:
    return sum(1 for e in w.events if e["type"] == "broadcast.target"
               and e["data"]["broadcast_id"] == broadcast_id and e["data"]["state"] == "connected")


async def test_answered_targets_get_the_stream_without_a_round_trip_each(start_gateway, connect, watch) -> None:
    async with sipp_uas("answer", calls=N, timeout_s=60) as uas:
        gw = await start_gateway(**_one_worker_for_all())
        sent: collections.Counter[str] = collections.Counter()
        command = gw.sip._command

        async def counting(w: Any, cmd: dict) -> dict:
            sent[cmd.get("cmd")] += 1
            return await command(w, cmd)

        gw.sip._command = counting
        stats: list[dict] = []
        stats_in = asyncio.Event()
        on_control = gw.sip._on_control

        def reading_stats(w: Any, m: dict) -> None:
            if m.get("type") == "stats":
                stats.append(m)
                stats_in.set()
            on_control(w, m)

        gw.sip._on_control = reading_stats
        alice = await connect(gw)
        w = await watch(alice)
        b = await _broadcast(alice, uas)
        bid = b["broadcast_id"]
        await w.wait(lambda e: _connected(w, bid) == N, timeout=60)
        # The worker attached the broadcast's stream to each call as it was answered (the dial
        # named it); the supervisor knows from the confirmed events where to send the frames.
        assert gw.sip.stream_workers(bid) == {0: N}
        # The worker's own count (its stats, every 5 s): the stream feeds N calls, and no call
        # has an audio port of its own (a paging call's audio is the stream).
        stats_in.clear()
        async with asyncio.timeout(30):
            await stats_in.wait()
        assert stats[-1]["streams"][bid]["calls"] == N
        assert stats[-1]["ports"] == {}, "paging calls got a port each (a Python callback per call per 20 ms)"
        got = await alice.call("broadcast.get", broadcast_id=bid)
        assert got["targets"] == {"connected": N}
        await alice.call("broadcast.stop", broadcast_id=bid)
        await w.wait(lambda e: e["type"] == "broadcast.state" and e["data"]["broadcast_id"] == bid
                     and e["data"]["state"] == "ended", timeout=30)
        ended = await alice.call("broadcast.get", broadcast_id=bid)
    assert sent["dial"] == N
    assert sent["stream_attach"] == 0, f"one worker round trip per answered target: {dict(sent)}"
    assert ended["frames_sent"] > 0


async def test_a_burst_of_answers_is_handled_together_not_one_after_another(start_gateway, connect, watch) -> None:
    """The broadcast's SIP events are held back until every target has answered, then handed
    over at once: the N answers must then be handled concurrently (their store writes in flight
    together: one group commit), not each after the previous one's commit."""
    async with sipp_uas("answer", calls=N, timeout_s=60) as uas:
        gw = await start_gateway(**_one_worker_for_all())
        held: list[Any] = []
        route = gw.broadcasts.on_sip_event

        def hold_until_all_answered(ev: Any) -> None:
            held.append(ev)
            if sum(1 for e in held if e.kind == "state" and e.state == "confirmed") == N:
                for e in held:
                    route(e)
                gw.broadcasts.on_sip_event = route

        gw.broadcasts.on_sip_event = hold_until_all_answered
        publish = gw.broadcasts._bus.publish
        in_flight = peak = 0

        async def watching_publish(type: str, data: dict, session_id: str | None = None) -> Any:
            nonlocal in_flight, peak
            if type != "broadcast.target" or data.get("state") != "connected":
                return await publish(type, data, session_id=session_id)
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return await publish(type, data, session_id=session_id)
            finally:
                in_flight -= 1

        gw.broadcasts._bus.publish = watching_publish
        alice = await connect(gw)
        w = await watch(alice)
        b = await _broadcast(alice, uas)
        bid = b["broadcast_id"]
        await w.wait(lambda e: _connected(w, bid) == N, timeout=60)
        await alice.call("broadcast.stop", broadcast_id=bid)
        await w.wait(lambda e: e["type"] == "broadcast.state" and e["data"]["broadcast_id"] == bid
                     and e["data"]["state"] == "ended", timeout=30)
    assert peak == N, f"answers handled one after another: at most {peak} of {N} in flight"
