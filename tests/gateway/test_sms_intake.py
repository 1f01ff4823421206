"""Receipts and inbound messages are stored, once, before the provider is answered (issue 7, 3).

The gateway runs in this test's loop; Twilio is the stateful stub (behind Prism where the API is
used under load), which signs its webhooks and, like Twilio, POSTs one again when it gets no answer
or a 5xx. The store is read straight from SQLite: what was acknowledged must be there, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.timeutil import epoch_to_iso
from tests.gateway.gateway_proc import store_rows, wait_until
from tests.gateway.test_sms_twilio import SID, TOKEN, twilio_gateway
from tests.peers.sipp import free_port_block
from tests.peers.twilio_stub import TwilioStub

pytestmark = pytest.mark.peers

SENDER = "+15005550006"


@contextlib.asynccontextmanager
async def stub_gateway(start_gateway, tmp_path, **sets: Any) -> AsyncIterator[tuple[Any, TwilioStub, str]]:
    """A gateway whose Twilio API is the stub itself (no Prism: these tests are about webhooks)."""
    async with twilio_gateway(start_gateway, tmp_path, via_prism=False, **sets) as (gw, stub, _, public):
        yield gw, stub, public


def inbound_events(path: str) -> Counter[str]:
    """provider_id -> how many sms.inbound events were stored for it."""
    rows = store_rows(path, "SELECT json_extract(data, '$.provider_id') FROM events WHERE type = 'sms.inbound'")
    return Counter(r[0] for r in rows)


def status_events(path: str, state: str) -> Counter[str]:
    rows = store_rows(path, "SELECT json_extract(data, '$.message_id') FROM events WHERE type = 'sms.status'"
                         " AND json_extract(data, '$.state') = ?", (state,))
    return Counter(r[0] for r in rows)


async def test_the_same_webhook_twice_is_acted_on_once_even_after_a_restart(start_gateway, tmp_path) -> None:
    async with stub_gateway(start_gateway, tmp_path) as (gw, stub, public):
        url = public + "/webhooks/twilio/inbound"
        params = stub.inbound_params(SID, "+8613700137000", SENDER, "井盖丢失，请派人")
        # twice in a row, then twice at once: every answer 200, one sms.inbound event
        assert (await stub.post_signed(url, params))[0] == 200
        assert (await stub.post_signed(url, params))[0] == 200
        answers = await asyncio.gather(stub.post_signed(url, params), stub.post_signed(url, params))
        assert [a[0] for a in answers] == [200, 200]
        assert inbound_events(gw.store.path) == {params["MessageSid"]: 1}
        # a status callback twice: one `delivered`
        sent = await (await _client(gw)).call("sms.send", to=["+15551230001"], body="hello")
        await _until(lambda: status_events(gw.store.path, "delivered"), 10, "delivered")
        [(sid,)] = store_rows(gw.store.path, "SELECT provider_id FROM sms WHERE send_id = ?", (sent["send_id"],))
        status = {"AccountSid": SID, "MessageSid": sid, "MessageStatus": "delivered", "To": "+15551230001"}
        assert (await stub.post_signed(public + "/webhooks/twilio/status", status))[0] == 204
        assert list(status_events(gw.store.path, "delivered").values()) == [1]
        await gw.stop()
        # a new process on the same store: the dedup is durable
        gw2 = await start_gateway(**{"http.port": (port := free_port_block(span=1)),
                                     "sms.provider": "twilio", "sms.twilio.account_sid": SID,
                                     "sms.twilio.auth_token": TOKEN, "sms.twilio.api_base": stub.url,
                                     "sms.twilio.public_url": f"http://127.0.0.1:{port}"})
        assert (await stub.post_signed(f"http://127.0.0.1:{port}/webhooks/twilio/inbound", params))[0] == 200
        assert (await stub.post_signed(f"http://127.0.0.1:{port}/webhooks/twilio/status", status))[0] == 204
        assert inbound_events(gw2.store.path) == {params["MessageSid"]: 1}
        assert list(status_events(gw2.store.path, "delivered").values()) == [1]
        assert store_rows(gw2.store.path, "SELECT body FROM sms_inbound") == [("井盖丢失，请派人",)]


async def test_5000_inbound_webhooks_in_a_burst_while_sending_all_stored_once(
        start_gateway, tmp_path) -> None:
    n_inbound, n_sent, concurrency = 5000, 300, 100
    async with twilio_gateway(start_gateway, tmp_path, **{
            "sms.rate_per_s": 200, "sms.burst": 50, "sms.intake_limit": 64}) as (gw, stub, prism, public):
        client = await _client(gw)
        recipients = [f"+86139{i:08d}" for i in range(n_sent)]
        t0 = time.monotonic()
        sent = await client.call("sms.send", to=recipients, body="防汛紧急通知：请回复所在位置")
        url = public + "/webhooks/twilio/inbound"
        # replies from people we messaged, and from 200 numbers nobody messaged (bursts of 5 each)
        senders = recipients + [f"+86137{i:08d}" for i in range(200)]
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> tuple[str, int]:
            params = stub.inbound_params(SID, senders[i % len(senders)], SENDER, f"位置报告 #{i}")
            async with gate:
                status, _ = await stub.deliver_webhook(url, params)
            return params["MessageSid"], status

        answers = await asyncio.gather(*(one(i) for i in range(n_inbound)))
        burst_s = time.monotonic() - t0
        assert {status for _, status in answers} == {200}, Counter(s for _, s in answers)
        sids = {sid for sid, _ in answers}
        events = inbound_events(gw.store.path)
        assert set(events) == sids and set(events.values()) == {1}, "each inbound stored and published once"
        stored = store_rows(gw.store.path, "SELECT provider_id, seq FROM sms_inbound")
        assert len(stored) == n_inbound and {r[0] for r in stored} == sids and all(r[1] for r in stored)
        refused = stub.webhook_answers[503]
        # every message sent gets its receipts; one `delivered` each
        await _until(lambda: len(status_events(gw.store.path, "delivered")) >= n_sent, 60, "all delivered")
        assert (await client.call("sms.get", send_id=sent["send_id"]))["counts"] == {"delivered": n_sent}
        assert set(status_events(gw.store.path, "delivered").values()) == {1}
        assert all(answer == 204 for _, _, answer in stub.callbacks), Counter(a for *_, a in stub.callbacks)
        # a burst from a number nobody messaged goes to one session
        new = store_rows(gw.store.path, "SELECT sender, COUNT(DISTINCT session_id) FROM sms_inbound"
                                     " WHERE sender LIKE '+86137%' GROUP BY sender")
        assert len(new) == 200 and {n for _, n in new} == {1}
        print(f"\n{n_inbound} inbound in {burst_s:.1f} s while sending {n_sent}: {refused} answers 503"
              f" (retried), {stub.webhook_answers[200]} x 200; stored once each")
        assert prism.violations() == [], prism.violations()[:3]


async def test_retry_after_of_a_429_is_honoured(start_gateway, tmp_path) -> None:
    async with stub_gateway(start_gateway, tmp_path) as (gw, stub, _):
        client = await _client(gw)
        stub.fail_next(1, 429, retry_after=2)  # longer than sms.max_delay_s (1 s)
        sent = await client.call("sms.send", to=["+15551230002"], body="retry after")
        await _until(lambda: stub.creates["+15551230002"] == 1, 15, "the retry")
        gap = stub.create_times[1] - stub.create_times[0]
        assert 2.0 <= gap < 6.0, gap
        await _until(lambda: status_events(gw.store.path, "delivered"), 10, "delivered")
        got = await client.call("sms.get", send_id=sent["send_id"])
        assert got["counts"] == {"delivered": 1} and got["messages"][0]["attempts"] == 2


async def test_every_stale_sent_message_is_reconciled_and_unknown_ones_given_up(start_gateway, tmp_path) -> None:
    """1,200 messages `sent` long ago, whose receipts never came: more than one page. Those Twilio
    knows as delivered become delivered; the rest, unknown there, fail with `no-receipt`."""
    async with stub_gateway(start_gateway, tmp_path, **{"sms.reconcile_after_s": 1, "sms.give_up_after_s": 3600}) as (
            gw, stub, _):
        client = await _client(gw)
        # 50 real ones, delivered at Twilio, whose callbacks all failed (the gateway "was down")
        stub.stall_next(50)
        known = await client.call("sms.send", to=[f"+1555300{i:04d}" for i in range(50)], body="known")
        await _until(lambda: len(stub.messages) == 50 and len(
            store_rows(gw.store.path, "SELECT 1 FROM sms WHERE state = 'sent'")) == 50, 15, "50 sent")
        for m in stub.messages.values():
            m["status"] = "delivered"
        old = epoch_to_iso(time.time() - 2 * 86400)
        with contextlib.closing(sqlite3.connect(gw.store.path, timeout=10)) as db:
            db.execute("UPDATE sms SET created_at = ?, updated_at = ?", (old, old))
            db.commit()
        rows = [{"message_id": f"stale{i:05d}", "send_id": "stale", "session_id": None, "sender": SENDER,
                 "recipient": f"+1555400{i:04d}", "body": "lost", "encoding": "GSM-7", "segments": 1,
                 "state": "sent", "attempts": 1, "next_attempt_at": 0, "provider": "twilio",
                 "provider_id": f"SM{i:032x}", "created_at": old, "updated_at": old} for i in range(1200)]
        await gw.store.insert_sms(rows)
        await _until(lambda: _counts(gw.store.path) == {"delivered": 50, "failed": 1200}, 90,
                     "every stale message settled")
        assert set(store_rows(gw.store.path, "SELECT error FROM sms WHERE send_id = 'stale'")) == {("no-receipt",)}
        assert (await client.call("sms.get", send_id=known["send_id"]))["counts"] == {"delivered": 50}
        stub.release_stalled()


def _counts(path: str) -> dict[str, int]:
    return dict(store_rows(path, "SELECT state, COUNT(*) FROM sms GROUP BY state"))


async def _client(gw: Any) -> Any:
    from gateway.client import GatewayClient

    client = await GatewayClient.connect(gw.control.url, "tok-dispatcher", reconnect=False)
    _clients.append(client)
    return client


_clients: list[Any] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _clients:
        with contextlib.suppress(Exception):
            await _clients.pop().close()


async def _until(pred: Any, timeout: float, what: str) -> None:
    await wait_until(pred, timeout, what, step=0.05)
