"""SMS reconciliation with the provider: what it has of a message we could not be sure of.

A message caught in `sending` (the gateway stopped mid-attempt) or held (its attempt may have
reached the provider) is looked up (`find`) before it is sent again, and taken from the
provider's record when it has one (`adopt`). Receipts can be lost (sent while the gateway was
down, or in transit): every `sms.reconcile_after_s / 4` a pass looks up the messages `sent` for
longer than `sms.reconcile_after_s`, oldest first, page by page, and gives up on one still
without a final status `sms.give_up_after_s` after its creation (`failed`, `no-receipt`).
The send path itself is gateway/services/sms.py.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from gateway import sms_store
from gateway.services.sms_ledger import RECEIPT_INPUTS, SmsLedger
from gateway.store import Store
from gateway.timeutil import epoch_to_iso, iso_to_epoch
from sms.config import SmsConfig
from sms.provider import Provider, ProviderError, Receipt, Remote

log = structlog.get_logger("gateway.services.sms")

LOOKUP_FAILED = (ProviderError, TimeoutError, OSError)  # a find_sent that could not tell
STALE_PAGE = 200  # stale `sent` messages looked at per read


class Reconciler:
    def __init__(self, store: Store, ledger: SmsLedger, config: SmsConfig, provider: Provider | None) -> None:
        self._store, self._ledger, self.config, self.provider = store, ledger, config, provider

    async def find(self, row: dict, *, strict: bool = False) -> Remote | None:
        """The provider's record of this message, if it has one we have not matched already. A
        lookup that fails is None (logged), or raised with `strict` (the caller must not take
        "not found" from it: it is about to send again)."""
        assert self.provider is not None
        try:
            remote = await self.provider.find_sent(row["recipient"], row["created_at"])
        except LOOKUP_FAILED as err:
            log.warning("sms.reconcile_failed", message_id=row["message_id"], error=repr(err))
            if strict:
                raise
            return None
        for m in remote:
            if m.provider_id == row.get("provider_id"):
                return m
            if m.body == row["body"] and m.to == row["recipient"] and not row.get("provider_id") \
                    and not await self._store.find_sms(provider_id=m.provider_id, limit=1):
                return m
        return None

    async def adopt(self, row: dict, remote: Remote) -> None:
        """Take the provider's word for a message: its id (-> sent), and its status when final."""
        await self._ledger.accepted(row["message_id"], remote.provider_id, reconciled=True)
        if remote.status in RECEIPT_INPUTS:
            await self._ledger.receipt(Receipt(remote.provider_id, remote.status), can_list=True)

    async def run(self) -> None:
        """Receipts can be lost (sent while we were down, or lost in transit): every message `sent`
        for longer than reconcile_after_s is looked up at the provider, oldest first, page by page."""
        period = max(1.0, self.config.reconcile_after_s / 4)
        while True:
            await asyncio.sleep(period)
            await self.reconcile_pass()

    async def reconcile_pass(self) -> int:
        """One pass over the stale `sent` messages; how many were looked at."""
        before = epoch_to_iso(time.time() - self.config.reconcile_after_s)
        after: tuple[str, str] | None = None
        seen = 0
        while page := await sms_store.stale(self._store, "sent", before, after, limit=STALE_PAGE):
            for row in page:
                await self._one(row)
            seen += len(page)
            after = (page[-1]["updated_at"], page[-1]["message_id"])
        return seen

    async def _one(self, row: dict) -> None:
        assert self.provider is not None
        remote = await self.find(row) if self.provider.can_list else None
        if remote is not None and remote.status in RECEIPT_INPUTS:
            await self._ledger.receipt(Receipt(remote.provider_id, remote.status), can_list=True)
        elif time.time() - iso_to_epoch(row["created_at"]) >= self.config.give_up_after_s:
            await self._ledger.step(row["message_id"], lambda m, now: m.give_up(now, "no-receipt"),
                                    columns={"error": "no-receipt"})
            log.warning("sms.given_up", message_id=row["message_id"], provider_id=row.get("provider_id"),
                        known_at_provider=remote is not None)
        else:  # look again later, not at every pass
            await self._store.update_sms(row["message_id"])
