"""kill -9 of the gateway while receipts and inbound messages arrive: what the provider sends again
after the restart is stored once, and nothing it was told was taken is lost (issue 7, section 3).

The gateway is its own process (`python -m gateway.cli serve`); the peers run here: the Twilio stub
POSTs signed webhooks and, like Twilio, POSTs one again when it got no answer or a 5xx; the SMPP
simulator keeps every deliver_sm until it is answered ESME_ROK and delivers the unanswered ones
again after the next bind, like an SMSC. The kill lands while dozens of webhooks / deliver_sm are
in flight (some stored but not yet answered, some not stored); the store is read between kill and
restart to tell which.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from gateway.client import GatewayClient
from tests.gateway.gateway_proc import gateway_proc, store_rows, wait_until
from tests.gateway.test_sms_crash import sms_gateway_overrides
from tests.gateway.test_sms_twilio import SID, TOKEN
from tests.peers.smpp_sim import SmppSim
from tests.peers.twilio_stub import twilio_stub

pytestmark = pytest.mark.peers

N_SMS = 200
N_INBOUND = 1500
KILL_AT = 400  # inbound messages stored when the gateway is killed
INBOUND_EVENTS = "SELECT COUNT(*) FROM events WHERE type = 'sms.inbound'"


def count(path: str, sql: str, params: tuple = ()) -> int:
    try:
        return int(store_rows(path, sql, params)[0][0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def events_per(path: str, type_: str, key: str, where: str = "") -> Counter[str]:
    sql = f"SELECT json_extract(data, '$.{key}') FROM events WHERE type = ?" + where
    return Counter(r[0] for r in store_rows(path, sql, (type_,)))


async def send_sms(url: str, to: list[str], body: str) -> dict:
    client = await GatewayClient.connect(url, "tok-dispatcher", reconnect=False)
    try:
        return await client.call("sms.send", to=to, body=body)
    finally:
        await client.close()


async def check_published_once(path: str, key: str, expected: set[str]) -> None:
    """One sms.inbound event for each of `expected` (by `key` of its data), none lost, none twice."""
    with contextlib.suppress(AssertionError):  # the check below says what is missing
        await wait_until(lambda: count(path, INBOUND_EVENTS) >= len(expected), 10, "inbound events")
    seen = events_per(path, "sms.inbound", key)
    assert set(seen) == expected and set(seen.values()) == {1}, (
        f"each inbound published once: {len(expected - set(seen))} lost,"
        f" {sum(1 for v in seen.values() if v > 1)} twice")


def check_sent_once_delivered_once(path: str, n: int) -> None:
    states = dict(store_rows(path, "SELECT state, COUNT(*) FROM sms GROUP BY state"))
    assert states == {"delivered": n}, states
    delivered = events_per(path, "sms.status", "message_id", " AND json_extract(data, '$.state') = 'delivered'")
    assert len(delivered) == n and set(delivered.values()) == {1}, "one `delivered` per message"


async def test_twilio_kill9_between_post_and_answer_retries_stored_once(tmp_path: Path) -> None:
    t0 = time.monotonic()
    # 10 s of sending, each message's callbacks 0.2 s apart: receipts flow across the kill (at
    # 50/s they could all be answered before it, once the `queued` / `sent` ones no longer waited
    # for their commit)
    async with twilio_stub(SID, TOKEN, webhook_retry_s=0.3, callback_delay_s=0.2) as stub:
        overrides = sms_gateway_overrides(tmp_path / "data", stub.url, rate_per_s=20, burst=10)
        overrides["sms.reconcile_after_s"] = 600  # only the stub's retries may bring lost receipts
        async with gateway_proc(overrides, tmp_path) as gw:
            await gw.start()
            public = overrides["sms.twilio.public_url"]
            gate = asyncio.Semaphore(30)

            async def one(i: int) -> tuple[str, int]:
                params = stub.inbound_params(SID, f"+86138{i % 300:08d}", "+15005550006", f"报告 #{i}")
                async with gate:
                    status, _ = await stub.deliver_webhook(public + "/webhooks/twilio/inbound", params)
                return params["MessageSid"], status

            inbound = asyncio.gather(*(one(i) for i in range(N_INBOUND)))
            # the send starts half-way to the kill, so the kill lands while its receipts come
            await wait_until(lambda: count(gw.store_path, INBOUND_EVENTS) >= KILL_AT // 2,
                             60, f"{KILL_AT // 2} inbound stored", step=0.005)
            sent = await send_sms(gw.url, [f"+86139{i:08d}" for i in range(N_SMS)], "请回复所在位置")
            delivered = "SELECT COUNT(*) FROM sms WHERE state = 'delivered'"
            await wait_until(lambda: count(gw.store_path, INBOUND_EVENTS) >= KILL_AT
                             and count(gw.store_path, delivered) >= 10,
                             60, f"{KILL_AT} inbound stored, receipts coming", step=0.005)
            await gw.kill9()
            stored_at_kill = set(events_per(gw.store_path, "sms.inbound", "provider_id"))
            final_at_kill = count(gw.store_path, delivered)
            assert final_at_kill < N_SMS, "the kill must land while receipts still come"
            await gw.start()
            answers = await inbound
            assert {status for _, status in answers} == {200}, Counter(s for _, s in answers)
            await wait_until(lambda: len(stub.callbacks) >= 3 * N_SMS, 60, "every callback answered")

            await check_published_once(gw.store_path, "provider_id", {sid for sid, _ in answers})
            assert count(gw.store_path, "SELECT COUNT(*) FROM sms_inbound") == N_INBOUND
            unanswered = {sid for sid, _, answer in stub.webhook_log if answer == 0}
            assert unanswered, "the kill must cut webhooks in flight"
            stored_unanswered = unanswered & stored_at_kill
            assert {a for _, _, a in stub.callbacks} == {204}
            await wait_until(lambda: count(gw.store_path, "SELECT COUNT(*) FROM sms WHERE state = 'delivered'")
                             >= N_SMS, 30, "all delivered")
            check_sent_once_delivered_once(gw.store_path, N_SMS)
            assert set(stub.creates.values()) == {1} and len(stub.creates) == N_SMS
            cut = Counter(status for _, status, answer in stub.webhook_log if answer == 0)
            assert cut["inbound"] and sum(cut.values()) > cut["inbound"], f"receipts cut too: {cut}"
            print(f"\nkill at {len(stored_at_kill)} inbound stored: {len(unanswered)} webhooks unanswered"
                  f" ({len(stored_unanswered)} of them stored before the kill), cut callbacks {dict(cut)};"
                  f" all retried and stored once; send {sent['recipients']}; {time.monotonic() - t0:.1f} s")


async def test_smpp_kill9_receipts_and_inbound_redelivered_stored_once(tmp_path: Path) -> None:
    t0 = time.monotonic()
    sim = SmppSim(receipt_delay_ms=50)
    await sim.start()
    try:
        overrides = sms_gateway_overrides(tmp_path / "data", "http://127.0.0.1:9", rate_per_s=200, burst=20)
        overrides.update({
            "sms.provider": "smpp", "sms.smpp.host": "127.0.0.1", "sms.smpp.port": sim.port,
            "sms.smpp.system_id": "gw", "sms.smpp.password": "secret", "sms.smpp.source_addr": "10690000",
            "sms.reconcile_after_s": 600, "sms.receipt_window_s": 10,
        })
        async with gateway_proc(overrides, tmp_path) as gw:
            await gw.start()
            await sim.wait_for(lambda e: e["event"] == "bind_transceiver" and e["ok"], timeout=20)
            to = [f"+86139{i:08d}" for i in range(N_SMS)]
            await send_sms(gw.url, to, "暴雨预警，请回复")
            for i in range(N_INBOUND):
                await sim.send_mo(f"86138{i % 300:08d}", "10690000", f"报告 #{i}")
            await wait_until(lambda: count(gw.store_path, INBOUND_EVENTS) >= KILL_AT,
                             60, f"{KILL_AT} inbound stored", step=0.005)
            await gw.kill9()
            at_kill = count(gw.store_path, INBOUND_EVENTS)
            await gw.start()

            def acknowledged(kind: str) -> set[int]:
                return {e["delivery"] for e in sim.of(kind + "_resp") if e["status"] == 0}

            await wait_until(lambda: len(acknowledged("mo")) >= N_INBOUND, 90, "every MO acknowledged")

            def accepted() -> list[dict]:
                return [e for e in sim.of("submit_sm") if e["status"] == 0]

            await wait_until(lambda: len(acknowledged("receipt")) >= len(accepted()) >= N_SMS, 60,
                             "every receipt acknowledged")
            await wait_until(lambda: count(gw.store_path, "SELECT COUNT(*) FROM sms WHERE state = 'delivered'")
                             >= N_SMS, 60, "all delivered")

            await check_published_once(gw.store_path, "body", {f"报告 #{i}" for i in range(N_INBOUND)})
            bodies = Counter(r[0] for r in store_rows(gw.store_path, "SELECT body FROM sms_inbound"))
            assert len(bodies) == N_INBOUND and set(bodies.values()) == {1}, "each MO stored once"
            redelivered = Counter(e["kind"] for e in sim.of("redeliver"))
            assert redelivered["mo"] > 0, "the kill must leave deliver_sm unacknowledged"
            check_sent_once_delivered_once(gw.store_path, N_SMS)
            per_dest = Counter(e["destination_addr"] for e in accepted())
            assert len(per_dest) == N_SMS and set(per_dest.values()) == {1}, "no message sent twice"
            print(f"\nkill at {at_kill} MO stored; redelivered after restart {dict(redelivered)};"
                  f" all stored once; {time.monotonic() - t0:.1f} s")
    finally:
        await sim.stop()
