"""Which receipts wait for their commit before the provider is answered (issue 13).

A receipt that can change its message's state (delivered, undelivered, failed, ...) is answered
only once stored (issue 7: a receipt acknowledged is never lost). Twilio's `queued` and `sent`
callbacks, two of every three, change no state (they are kept for the history): before, each also
held its callback connection for a whole store round, and at 500/s the provider's connections could
not keep up (a receipt backlog of 17-22 s after the last create). A real SQLite store and the real
SmsService; the receipts' write is held, as a stalled commit would be.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.directory import Directory
from gateway.events import EventBus
from gateway.services.sessions import SessionService
from gateway.services.sms import SmsService
from sms.config import SmsConfig
from sms.provider import Receipt
from tests.sms.test_call_slots import AtOnce
from tests.store.conftest import db_path, store  # noqa: F401  (fixtures: a real SQLite store in tmp_path)


async def test_a_receipt_that_changes_no_state_is_answered_before_its_commit_and_stored_after(store) -> None:
    bus = EventBus(store)
    sms = SmsService(store, bus, SessionService(store, bus), Directory(),
                     SmsConfig(provider="twilio", rate_per_s=100, burst=10, in_flight=4), AtOnce())
    held, writing = asyncio.Event(), asyncio.Event()
    receipts_many = sms._ledger._receipts._write_all

    async def stalled(items: list[Any]) -> Any:
        writing.set()
        await held.wait()
        return await receipts_many(items)

    sms._ledger._receipts._write_all = stalled  # the receipts' store round stalls
    await sms.start()
    try:
        async with asyncio.timeout(5):  # answered while its write is held (before: not until released)
            await sms._on_receipt(Receipt("SM1", "queued"))
            await sms._on_receipt(Receipt("SM1", "sent"))
        await writing.wait()
        delivered = asyncio.create_task(sms._on_receipt(Receipt("SM1", "delivered")))
        failed = asyncio.create_task(sms._on_receipt(Receipt("SM2", "failed")))
        async with asyncio.timeout(5):  # both are in the next round, waiting behind the held one
            while len(sms._ledger._receipts._pending) < 2:
                await asyncio.sleep(0)
        assert not delivered.done() and not failed.done()  # these wait for their commit
        held.set()
        async with asyncio.timeout(5):
            await asyncio.gather(delivered, failed)
        rows = await store.fetchall("SELECT provider_id, status FROM sms_receipts")
        assert sorted(map(tuple, rows)) == [("SM1", "delivered"), ("SM1", "queued"), ("SM1", "sent"), ("SM2", "failed")]
    finally:
        held.set()
        await sms.stop()


async def test_stopping_writes_the_receipts_answered_before_their_commit(store) -> None:
    bus = EventBus(store)
    sms = SmsService(store, bus, SessionService(store, bus), Directory(),
                     SmsConfig(provider="twilio", rate_per_s=100, burst=10, in_flight=4), AtOnce())
    await sms.start()
    for i in range(50):
        await sms._on_receipt(Receipt(f"SM{i}", "sent"))
    await sms.stop()  # drains what was answered
    assert (await store.fetchall("SELECT COUNT(*) FROM sms_receipts"))[0][0] == 50
