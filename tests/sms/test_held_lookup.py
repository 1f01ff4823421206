"""A message whose attempt may have reached the provider (no answer: `maybe_sent`) is looked up
before it is sent again; when that lookup itself fails (the provider's API worker restarting,
the API unreachable) it is not sent blind: it stays held and is looked up again.

Before, a failed lookup counted as "not found" and the message was sent a second time: with the
Twilio API calls in a worker process (sms/twilio_process.py), a worker that died while lookups
were in flight sent each of those messages twice. Same at start: a message caught in `sending`
whose lookup failed at recovery was sent again without a lookup.

A real SQLite store and the real SmsService; the provider is a stand-in that only answers (the
wire is covered by tests/gateway/test_sms_api_worker.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.directory import Directory
from gateway.events import EventBus
from gateway.services.sessions import SessionService
from gateway.services.sms import SmsService
from sms.config import SmsConfig
from sms.provider import ProviderError, Remote, Submitted
from tests.sms.test_call_slots import AtOnce
from tests.store.conftest import db_path, store  # noqa: F401  (fixtures: a real SQLite store in tmp_path)

BODY = "Evacuate district 3"


class Unsure(AtOnce):
    """Takes the first create but its answer is lost (maybe_sent); its first `failing_lookups`
    lookups fail; then it lists what it took."""

    def __init__(self, failing_lookups: int) -> None:
        super().__init__()
        self.taken: list[Remote] = []
        self.lookups = 0
        self.failing_lookups = failing_lookups
        self.changed = self.calls

    async def send(self, message_id: str, sender: str, to: str, body: str) -> Submitted:
        self.sent.append(to)
        self.changed.set()
        sid = f"SM{len(self.sent):032d}"
        self.taken.append(Remote(sid, to, body, "queued", "2026-01-01T00:00:00+00:00"))
        if len(self.sent) == 1:
            raise ProviderError("sms api worker: exited (rc -9)", error="connection", maybe_sent=True)
        return Submitted(sid, "queued")

    async def find_sent(self, to: str, since_iso: str) -> list[Remote]:
        self.lookups += 1
        self.changed.set()
        if self.lookups <= self.failing_lookups:
            raise ProviderError("sms api worker is not running", error="connection", maybe_sent=False)
        return [r for r in self.taken if r.to == to]


def _service(store, provider: Unsure) -> SmsService:  # noqa: F811
    bus = EventBus(store)
    config = SmsConfig(provider="twilio", rate_per_s=100, burst=10, in_flight=4, base_delay_s=0.05, max_delay_s=0.1)
    return SmsService(store, bus, SessionService(store, bus), Directory(), config, provider)


async def _until(provider: Unsure, pred: Any) -> None:
    async with asyncio.timeout(10):
        while not pred():
            provider.changed.clear()
            await provider.changed.wait()


async def test_a_held_message_whose_lookup_fails_is_not_sent_blind(store) -> None:  # noqa: F811
    provider = Unsure(failing_lookups=2)
    sms = _service(store, provider)
    await sms.start()
    try:
        await sms.send(principal="alice", to=["+15550001111"], body=BODY, template=None, variables=None,
                       session_id=None, sender=None)
        await _until(provider, lambda: provider.lookups >= 3)  # two failed, the third found it
        async with asyncio.timeout(10):
            while (row := (await store.find_sms(recipient="+15550001111", limit=1))[0])["state"] != "sent":
                await asyncio.sleep(0.02)
        assert provider.sent == ["+15550001111"], "sent again after a failed lookup"
        assert row["provider_id"] == provider.taken[0].provider_id
    finally:
        await sms.stop()


class Hangs(Unsure):
    """Takes a create and never answers it: the service stopped then leaves it `sending`."""

    async def send(self, message_id: str, sender: str, to: str, body: str) -> Submitted:
        self.sent.append(to)
        self.taken.append(Remote(f"SM{len(self.sent):032d}", to, body, "queued", "2026-01-01T00:00:00+00:00"))
        self.changed.set()
        await asyncio.Event().wait()
        raise AssertionError("never answered")


async def test_recovery_holds_a_message_whose_lookup_fails(store) -> None:  # noqa: F811
    """A message left `sending` (the gateway stopped mid-attempt), its lookup at the next start
    failing: held (looked up before its next attempt), not sent again blind."""
    first = Hangs(failing_lookups=0)
    sms = _service(store, first)
    await sms.start()
    await sms.send(principal="alice", to=["+15550002222"], body=BODY, template=None, variables=None,
                   session_id=None, sender=None)
    await _until(first, lambda: len(first.sent) == 1)
    await sms.stop()
    assert (await store.find_sms(recipient="+15550002222", limit=1))[0]["state"] == "sending"
    again = Unsure(failing_lookups=1)
    again.taken = list(first.taken)
    sms = _service(store, again)
    await sms.start()  # recovery: the lookup fails
    try:
        await _until(again, lambda: again.lookups >= 2)
        async with asyncio.timeout(10):
            while (row := (await store.find_sms(recipient="+15550002222", limit=1))[0])["state"] != "sent":
                await asyncio.sleep(0.02)
        assert again.sent == [], "sent again after a failed lookup"
        assert row["provider_id"] == first.taken[0].provider_id
    finally:
        await sms.stop()


async def test_a_held_message_whose_lookup_never_succeeds_fails_unconfirmed_at_the_bound(store) -> None:  # noqa: F811
    """The lookup fails for good (e.g. the list API refused): looked up again, never sent blind, and
    `sms.give_up_after_s` after its creation it ends `failed`, error "unconfirmed" (before: held
    and looked up every second for ever, `queued` to the dispatcher)."""
    provider = Unsure(failing_lookups=10**9)
    bus = EventBus(store)
    config = SmsConfig(provider="twilio", rate_per_s=100, burst=10, in_flight=4, base_delay_s=0.05, max_delay_s=0.1,
                       give_up_after_s=2.5)
    sms = SmsService(store, bus, SessionService(store, bus), Directory(), config, provider)
    await sms.start()
    try:
        await sms.send(principal="alice", to=["+15550003333"], body=BODY, template=None, variables=None,
                       session_id=None, sender=None)
        async with asyncio.timeout(15):
            while (row := (await store.find_sms(recipient="+15550003333", limit=1))[0])["state"] != "failed":
                await asyncio.sleep(0.05)
        assert row["error"] == "unconfirmed", row
        assert provider.sent == ["+15550003333"], "sent again without knowing whether the first arrived"
        assert provider.lookups >= 2, "looked up again before giving up"
        lookups = provider.lookups
        await asyncio.sleep(1.5)  # nothing more happens to a failed message
        assert provider.lookups == lookups and provider.sent == ["+15550003333"]
    finally:
        await sms.stop()
