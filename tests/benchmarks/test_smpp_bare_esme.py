"""benchmarks.smpp_bare_esme: the bare aiosmpplib reference of benchmarks.sms, against the SMSC
simulator (tests/peers/smpp_sim), and its throttled correlator."""

from __future__ import annotations

import asyncio

from benchmarks.smpp_bare_esme import BareEsme, Correlator
from tests.peers.smpp_sim import SmppSim


async def test_the_bare_esme_sends_and_counts_final_receipts():
    sim = SmppSim()
    await sim.start()
    finals: list[str] = []
    done = asyncio.Event()

    def on_final(smsc_id: str) -> None:
        finals.append(smsc_id)
        if len(finals) == 20:
            done.set()

    esme = BareEsme(sim.port, on_final, queue_size=100, timeout=5)
    await esme.start()
    try:
        async with asyncio.timeout(10):
            while not esme.bound:
                await asyncio.sleep(0.01)
        ids = await asyncio.gather(*(esme.send("+15005550006", f"+86138000{i:05d}", "Hi") for i in range(20)))
        async with asyncio.timeout(10):
            await done.wait()
        assert sorted(finals) == sorted(ids)
        pdus = await sim.wait_for("submit_sm", count=20)
        assert {bytes.fromhex(p["short_message_hex"]) for p in pdus} == {b"Hi"}
    finally:
        await esme.stop()
        await sim.stop()


async def test_the_correlator_still_expires_a_request_with_no_response():
    from aiosmpplib import EnquireLink

    c = Correlator("gw", sweep_s=1.0)
    old, new = EnquireLink(), EnquireLink()
    old.sequence_num, new.sequence_num = 1, 2
    await c.put(old)
    c._store["1"] = (c._store["1"][0] - c.max_ttl_response - 1, old)  # its response is overdue
    await c.put(new)  # within sweep_s of the last sweep: not swept yet
    assert set(c._store) == {"1", "2"}
    c.swept_at -= c.sweep_s  # the next sweep is due
    await c.get(new)
    assert set(c._store) == set()  # the overdue one expired, the answered one was taken
