"""The outbox's call slots (`sms.in_flight`) are provider requests at once: one is free again when
the provider has answered, not when its answer is stored (issue 13).

A real SQLite store and the real SmsService with a provider that answers at once; the unit that
stores the answers (`accepted`) is held back, as a stalled commit would be. Before, each call
held its slot until its answer was committed, so a slow store round stalled sending itself: with
in-flight 2 and the answers' commit held, 2 messages went out and then nothing (at 1,000/s a
100-slot window allows 100 ms of commit; the Twilio runs at 500/s reached 434-456/s).
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.directory import Directory
from gateway.events import EventBus
from gateway.services.sessions import SessionService
from gateway.services.sms import SmsService
from sms.config import SmsConfig
from sms.provider import Submitted
from tests.store.conftest import db_path, store  # noqa: F401  (fixtures: a real SQLite store in tmp_path)

SENDER = "+15005550006"


class AtOnce:
    name = "twilio"
    can_list = True

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.calls = asyncio.Event()

    async def start(self, on_receipt: Any, on_inbound: Any) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, message_id: str, sender: str, to: str, body: str) -> Submitted:
        self.sent.append(to)
        self.calls.set()
        return Submitted(f"SM{message_id}", "queued")

    async def find_sent(self, to: str, since_iso: str) -> list[Any]:
        return []

    def webhook_routes(self) -> list[Any]:
        return []


async def test_a_call_slot_is_free_once_the_provider_answered_not_once_the_answer_is_stored(store) -> None:
    bus = EventBus(store)
    provider = AtOnce()
    config = SmsConfig(provider="twilio", rate_per_s=1000, burst=10, in_flight=2)
    sms = SmsService(store, bus, SessionService(store, bus), Directory(), config, provider)
    held = asyncio.Event()
    accepted_many = sms._ledger._accepted_many

    async def stalled(items: list[Any]) -> Any:
        await held.wait()
        return await accepted_many(items)

    sms._ledger._accepts._write_all = stalled  # the commit of the answers stalls
    await sms.start()
    try:
        to = [f"+1555000{i:04d}" for i in range(8)]
        await sms.send(principal="alice", to=to, body="Evacuate district 3", template=None, variables=None,
                       session_id=None, sender=None)
        async with asyncio.timeout(10):
            while len(provider.sent) < len(to):
                provider.calls.clear()
                await provider.calls.wait()
        assert sorted(provider.sent) == to  # before: 2 (the in-flight limit), then nothing until the commit
        held.set()
        async with asyncio.timeout(10):
            while (await store.sms_counts((await store.find_sms(recipient=to[0], limit=1))[0]["send_id"])) != {"sent": 8}:
                await asyncio.sleep(0.02)
    finally:
        held.set()
        await sms.stop()
