"""A receipt on its way into the store costs no task of its own (issue 13, the gateway's CPU per
message): `intake` holds the receipt batcher's future (the batcher owns the write), where it made
a task per receipt around the coroutine that submitted it. What intake guarantees is unchanged:
the provider's answer waits until the receipt is stored, a twin waits for the same write, the
slots bound what is being stored.

A real SQLite store and the real SmsService, with the provider of tests/sms/test_call_slots.py
(it answers every create at once)."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.directory import Directory
from gateway.events import EventBus
from gateway.services.sessions import SessionService
from gateway.services.sms import SmsService
from sms.config import SmsConfig
from sms.provider import Receipt
from tests.sms.test_call_slots import SENDER, AtOnce
from tests.store.conftest import db_path, store  # noqa: F401  (fixtures: a real SQLite store in tmp_path)

N = 200


async def test_receipts_are_stored_through_intake_without_a_task_each(store) -> None:
    bus = EventBus(store)
    provider = AtOnce()
    config = SmsConfig(provider="twilio", rate_per_s=10_000, burst=N, in_flight=N)
    sms = SmsService(store, bus, SessionService(store, bus), Directory(), config, provider)
    await sms.start()
    try:
        sent = await sms.send(principal="alice", to=[f"+1555123{i:04d}" for i in range(N)], body="test",
                              template=None, variables=None, session_id=None, sender=SENDER)
        async with asyncio.timeout(20):
            while sms.sent_count < N:
                await asyncio.sleep(0.01)
        rows = await store.find_sms(send_id=sent["send_id"], limit=N)
        pids = [r["provider_id"] for r in rows]
        assert len(pids) == N and all(pids)

        loop = asyncio.get_running_loop()
        created: list[str] = []
        factory = loop.get_task_factory()

        def counting(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            created.append(kwargs.get("name") or "")
            return factory(loop, coro, **kwargs) if factory else asyncio.Task(coro, loop=loop, **kwargs)

        loop.set_task_factory(counting)
        try:
            receipts = [sms._on_receipt(Receipt(pid, status)) for pid in pids for status in ("sent", "delivered")]
            receipts.append(sms._on_receipt(Receipt(pids[0], "delivered")))  # a twin: the same write, or a duplicate
            await asyncio.gather(*receipts)
        finally:
            loop.set_task_factory(factory)
        ours = len(created) - len(receipts)  # gather wraps each coroutine in a task of its own
        assert ours <= 20, ours  # the batcher's runs (before: 402, one "sms.intake" task per receipt)
        assert await store.sms_counts(sent["send_id"]) == {"delivered": N}
        assert not sms._ledger._busy  # every slot free again
    finally:
        await sms.stop()
