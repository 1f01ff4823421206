"""SMS through the whole gateway to an SMSC over SMPP 3.4: gateway (sms.provider=smpp) ->
tests/peers/smpp_sim (the npm `smpp` library's server side, which records every PDU, rejects a
configured destination, sends a delivery receipt per accepted submit_sm and mobile-originated
deliver_sm on demand). node or the npm package missing = the test FAILS (require_sim)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from tests.peers.smpp_sim import ESME_RINVDSTADR, SmppSim

pytestmark = pytest.mark.peers

SOURCE = "10690000"
REJECTED = "+8613900000009"  # the simulator answers ESME_RINVDSTADR (permanent)
LI, WU, US = "+8613800138000", "+8613900139000", "+15551230001"
SHORT = "所有区值班人员到防汛指挥部报到"  # 15 UCS-2 units: one part
LONG = "请各值班人员立即前往防汛指挥部报到并携带对讲机和雨具，" * 3  # 81 UCS-2 units: two parts
FINAL = ("delivered", "undelivered", "failed")


@contextlib.asynccontextmanager
async def smpp_gateway(start_gateway, receipt_delay_ms: int = 50, silent: list[str] | None = None,
                       **sets) -> AsyncIterator[tuple]:
    sim = SmppSim(reject={REJECTED[1:]: ESME_RINVDSTADR},  # on the wire without the "+"
                  receipt_delay_ms=receipt_delay_ms, silent=silent)
    await sim.start()
    try:
        gw = await start_gateway(**{
            "sms.provider": "smpp", "sms.smpp.host": "127.0.0.1", "sms.smpp.port": sim.port,
            "sms.smpp.system_id": "gw", "sms.smpp.password": "secret", "sms.smpp.source_addr": SOURCE,
            "sms.rate_per_s": 50, "sms.burst": 10, "sms.base_delay_s": 0.2, "sms.max_delay_s": 1,
            "directory.endpoint": f'[{{name = "officer-li", uri = "tel:{LI}", groups = ["d3"]}}]',
            **sets})
        await sim.wait_for(lambda e: e["event"] == "bind_transceiver" and e["ok"])
        yield gw, sim
    finally:
        await sim.stop()


def _statuses(w, message_id: str) -> list[str]:
    return [e["data"]["state"] for e in w.events if e["type"] == "sms.status"
            and e["data"]["message_id"] == message_id]


def _final_count(w, message_ids) -> int:
    ids = set(message_ids)
    return sum(1 for e in w.events if e["type"] == "sms.status" and e["data"]["message_id"] in ids
               and e["data"]["state"] in FINAL)


async def _all_final(w, message_ids, timeout: float = 10) -> None:
    await w.wait(lambda _: _final_count(w, message_ids) >= len(message_ids), timeout)


def _accepted(sim: SmppSim) -> list[dict]:
    return [e for e in sim.of("submit_sm") if e["status"] == 0]


def _text(pdu: dict) -> str:
    raw = bytes.fromhex(pdu["short_message_hex"])
    return (raw[6:] if pdu["esm_class"] & 0x40 else raw).decode("utf-16-be")


async def test_chinese_and_two_part_to_three_numbers_every_status_from_receipts(
        start_gateway, connect, watch) -> None:
    async with smpp_gateway(start_gateway) as (gw, sim):
        alice = await connect(gw)
        w = await watch(alice)
        short = await alice.call("sms.send", to=[LI, WU, US], body=SHORT)
        long = await alice.call("sms.send", to=[LI, WU, US], body=LONG)
        assert (short["encoding"], short["segments"], short["recipients"]) == ("UCS-2", 1, 3)
        assert (long["encoding"], long["segments"], long["recipients"]) == ("UCS-2", 2, 3)
        ids = short["message_ids"] + long["message_ids"]
        await _all_final(w, ids)

        pdus = sim.of("submit_sm")
        assert len(pdus) == 3 + 6 and all(p["status"] == 0 for p in pdus), pdus
        assert all(p["data_coding"] == 8 and p["registered_delivery"] == 1 and p["source_addr"] == SOURCE
                   for p in pdus)
        singles = [p for p in pdus if not p["esm_class"] & 0x40]
        assert sorted(p["destination_addr"] for p in singles) == sorted(n[1:] for n in (LI, WU, US))
        for p in singles:  # UTF-16BE, no UDH
            assert p["esm_class"] == 0 and bytes.fromhex(p["short_message_hex"]) == SHORT.encode("utf-16-be")
        refs = set()
        for n in (LI, WU, US):
            parts = [p for p in pdus if p["esm_class"] & 0x40 and p["destination_addr"] == n[1:]]
            assert len(parts) == 2, (n, parts)
            udh = [bytes.fromhex(p["short_message_hex"])[:6] for p in parts]
            assert all(u[:3] == b"\x05\x00\x03" for u in udh)  # UDHL 5, IE 00 (8-bit ref), length 3
            assert udh[0][3] == udh[1][3] and [(u[4], u[5]) for u in udh] == [(2, 1), (2, 2)]
            refs.add(udh[0][3])
            assert "".join(_text(p) for p in parts) == LONG
        assert len(refs) == 3  # one concatenation reference per message

        for mid in ids:
            assert _statuses(w, mid) == ["queued", "sending", "sent", "delivered"], mid
        for sent, segments in ((short, 1), (long, 2)):
            got = await alice.call("sms.get", send_id=sent["send_id"])
            assert got["counts"] == {"delivered": 3}
            assert {m["recipient"] for m in got["messages"]} == {LI, WU, US}
            for m in got["messages"]:
                assert (m["state"], m["attempts"], m["encoding"], m["segments"]) == (
                    "delivered", 1, "UCS-2", segments)
                first = [p for p in pdus if p["destination_addr"] == m["recipient"][1:]
                         and (p["esm_class"] & 0x40) == (0x40 if segments == 2 else 0)][0]
                assert m["provider_id"] == first["message_id"]  # the first part's SMSC id
        assert len(sim.of("receipt_resp")) == 9 and all(r["status"] == 0 for r in sim.of("receipt_resp"))


async def test_rejected_destination_fails_at_once_others_delivered(start_gateway, connect, watch) -> None:
    async with smpp_gateway(start_gateway) as (gw, sim):
        alice = await connect(gw)
        w = await watch(alice)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        sent = await alice.call("sms.send", to=[LI, REJECTED, US], body=SHORT)
        got = await alice.call("sms.get", send_id=sent["send_id"])
        bad = next(m["message_id"] for m in got["messages"] if m["recipient"] == REJECTED)
        ev = await w.wait(lambda e: e["type"] == "sms.status" and e["data"]["message_id"] == bad
                          and e["data"]["state"] in FINAL, timeout=5)
        assert loop.time() - t0 < 2.0, "a permanent refusal must not wait for retries"
        assert ev["data"]["state"] == "failed" and ev["data"]["status_code"] == 400
        assert ev["data"].get("retry_in_s") is None
        await _all_final(w, sent["message_ids"])
        await asyncio.sleep(0.6)  # > sms.base_delay_s: a retry would show up here
        assert _statuses(w, bad) == ["queued", "sending", "failed"]
        got = await alice.call("sms.get", send_id=sent["send_id"])
        assert got["counts"] == {"delivered": 2, "failed": 1}
        by_to = {m["recipient"]: m for m in got["messages"]}
        assert by_to[REJECTED]["attempts"] == 1 and by_to[REJECTED]["error"]
        assert by_to[REJECTED]["provider_id"] is None
        rejected = [p for p in sim.of("submit_sm") if p["destination_addr"] == REJECTED[1:]]
        assert [p["status"] for p in rejected] == [ESME_RINVDSTADR]  # refused once, never retried
        assert sorted(p["destination_addr"] for p in _accepted(sim)) == sorted([LI[1:], US[1:]])


@pytest.mark.parametrize("wire_from", [
    pytest.param("+" + LI[1:], id="plus-on-the-wire"),
    pytest.param(LI[1:], id="ton0-digits"),  # plain digits (TON unknown), as many SMSCs send them
])
async def test_mo_reply_lands_in_the_incident_that_messaged_that_number(start_gateway, connect, watch,
                                                                         wire_from) -> None:
    async with smpp_gateway(start_gateway) as (gw, sim):
        alice = await connect(gw)
        w = await watch(alice)
        incident = await alice.call("session.create", title="Flood, district 3")
        sent = await alice.call("sms.send", to=["officer-li"], body="到防汛指挥部报到，收到请回复",
                                session_id=incident["session_id"])
        await _all_final(w, sent["message_ids"])
        # The simulator's deliver_sm carries TON 0 (unknown); the number as the SMSC writes it.
        await sim.send_mo(wire_from, SOURCE, "收到")
        ev = await w.wait(lambda e: e["type"] == "sms.inbound", timeout=5)
        assert ev["data"]["body"] == "收到" and ev["data"]["to"] == SOURCE
        assert ev["data"]["from"] == LI, ev["data"]
        assert ev["session_id"] == incident["session_id"], ev
        assert ev["data"]["in_reply_to"] == sent["send_id"]
        [resp] = await sim.wait_for("mo_resp")
        assert resp["status"] == 0
        # A number nobody messaged opens a session of its own.
        await sim.send_mo("8613700137000", SOURCE, "?")
        other = await w.wait(lambda e: e["type"] == "sms.inbound" and e["data"]["body"] == "?", timeout=5)
        assert other["session_id"] not in (None, incident["session_id"])


async def test_smsc_killed_mid_send_nothing_lost_nothing_doubled(start_gateway, connect, watch) -> None:
    # 3/s, one at a time: the kill lands in a quiet gap between two submits (after the last
    # receipt was acknowledged), so no submit_sm is on the wire when the SMSC dies.
    async with smpp_gateway(start_gateway, **{"sms.rate_per_s": 3, "sms.burst": 1,
                                              "sms.max_attempts": 100}) as (gw, sim):
        alice = await connect(gw)
        w = await watch(alice)
        first = [f"+86138001380{i:02d}" for i in range(8)]
        batch_a = await alice.call("sms.send", to=first, body="暴雨红色预警：请立即转移")
        await sim.wait_for("receipt_resp", count=2, timeout=5)
        await sim.kill()
        provider = gw.sms.provider
        async with asyncio.timeout(3):
            while provider.bound:
                await asyncio.sleep(0.02)
        assert len(_accepted(sim)) == 2
        # Sent while the SMSC is down: queued, attempts fail (retryable), nothing lost.
        batch_b = await alice.call("sms.send", to=[LI, WU], body="第二批：撤离路线见短信")
        await w.wait(lambda e: e["type"] == "sms.status" and e["data"]["message_id"] in batch_b["message_ids"]
                     and e["data"]["state"] == "queued" and e["data"].get("retry_in_s") is not None,
                     timeout=5)
        await asyncio.sleep(0.3)
        await sim.start()  # the same port
        ids = batch_a["message_ids"] + batch_b["message_ids"]
        await _all_final(w, ids, timeout=20)

        assert (await alice.call("sms.get", send_id=batch_a["send_id"]))["counts"] == {"delivered": 8}
        assert (await alice.call("sms.get", send_id=batch_b["send_id"]))["counts"] == {"delivered": 2}
        retried = {e["data"]["message_id"] for e in w.events if e["type"] == "sms.status"
                   and e["data"].get("retry_in_s") is not None}
        assert set(batch_b["message_ids"]) <= retried and len(retried) >= 3
        for mid in ids:
            states = _statuses(w, mid)
            assert states[-2:] == ["sent", "delivered"] and states.count("sent") == 1, (mid, states)
        seen = Counter((p["destination_addr"], _text(p)) for p in _accepted(sim))
        expected = {(n[1:], "暴雨红色预警：请立即转移") for n in first} | {(n[1:], "第二批：撤离路线见短信")
                                                                for n in (LI, WU)}
        assert set(seen) == expected and set(seen.values()) == {1}, seen  # each message once
        assert [b["ok"] for b in sim.of("bind_transceiver")] == [True, True]



async def test_receipt_right_after_submit_sm_resp_is_not_lost(start_gateway, connect, watch) -> None:
    # all 20 submitted at once, each receipt 1 ms after its submit_sm_resp
    async with smpp_gateway(start_gateway, receipt_delay_ms=1,
                            **{"sms.rate_per_s": 200, "sms.burst": 20}) as (gw, sim):
        alice = await connect(gw)
        w = await watch(alice)
        sent = await alice.call("sms.send", to=[f"+86138001380{i:02d}" for i in range(20)], body=SHORT)
        await sim.wait_for("receipt_resp", count=20, timeout=5)
        with contextlib.suppress(TimeoutError):
            await _all_final(w, sent["message_ids"], timeout=2)
        assert (await alice.call("sms.get", send_id=sent["send_id"]))["counts"] == {"delivered": 20}


async def test_a_timed_out_submit_is_not_sent_again_before_its_receipt_window(start_gateway, connect,
                                                                              watch) -> None:
    """The SMSC took the message but its submit_sm_resp never came: SMPP cannot be asked, so the
    attempt is recorded and the receipt awaited (sms.receipt_window_s) instead of sending again."""
    async with smpp_gateway(start_gateway, receipt_delay_ms=2500, silent=[WU[1:]], **{
            "sms.smpp.response_timeout_s": 1, "sms.receipt_window_s": 30}) as (gw, sim):
        alice = await connect(gw)
        w = await watch(alice)
        sent = await alice.call("sms.send", to=[WU], body=SHORT)
        [mid] = sent["message_ids"]
        requeued = await w.wait(lambda e: e["type"] == "sms.status" and e["data"]["message_id"] == mid
                                and e["data"]["state"] == "queued" and e["data"].get("retry_in_s") is not None,
                                timeout=10)
        assert requeued["data"]["retry_in_s"] >= 30 and requeued["data"]["error"] == "timeout"
        await _all_final(w, [mid], timeout=15)
        got = await alice.call("sms.get", message_id=mid)
        [pdu] = [p for p in sim.of("submit_sm") if p["destination_addr"] == WU[1:]]  # sent once
        assert (got["state"], got["attempts"], got["provider_id"]) == ("delivered", 1, pdu["message_id"])
        assert _statuses(w, mid) == ["queued", "sending", "queued", "delivered"]


async def test_a_receipt_that_came_before_the_submit_timed_out_is_applied(start_gateway, connect,
                                                                          watch) -> None:
    """The submit_sm_resp is lost but the receipt comes before our deadline: it is stored with no
    message (its SMSC id never reached us); when the attempt times out, it is that message's."""
    async with smpp_gateway(start_gateway, receipt_delay_ms=200, silent=[WU[1:]], **{
            "sms.smpp.response_timeout_s": 1.5, "sms.receipt_window_s": 30}) as (gw, sim):
        alice = await connect(gw)
        w = await watch(alice)
        sent = await alice.call("sms.send", to=[WU], body=SHORT)
        [mid] = sent["message_ids"]
        await sim.wait_for("receipt_resp")  # stored and acknowledged before the timeout
        await _all_final(w, [mid], timeout=10)
        got = await alice.call("sms.get", message_id=mid)
        [pdu] = [p for p in sim.of("submit_sm") if p["destination_addr"] == WU[1:]]  # sent once
        assert (got["state"], got["attempts"], got["provider_id"]) == ("delivered", 1, pdu["message_id"])
        assert _statuses(w, mid) == ["queued", "sending", "queued", "delivered"]
