"""The bare SMPP side of benchmarks.sms_bare: aiosmpplib's ESME with the least plumbing it needs.

The gateway's provider runs an ESME of its own (sms/smpp_session.py) since session 19; this keeps
the reference what it was, "the library alone": aiosmpplib 0.7.4 binds (transceiver), sends one
submit_sm per `send()` through a bounded broker and reports final receipts to `on_final(smsc_id)`;
the library answers each deliver_sm itself once the hook returns (nothing is stored).

`Correlator` is aiosmpplib's in-memory correlator with its expiry sweep run at most every
`sweep_s`: the library sweeps all its tables on every put and get (three or four times a message,
each over everything in flight; ~5-10 % of the Python time at 1,000 messages/s), which the
gateway's provider did the same way until session 19 (docs/benchmarks.md, SMS).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

from aiosmpplib import (
    ESME,
    NPI,
    TON,
    AbstractBroker,
    AbstractHook,
    BindMode,
    DeliverSm,
    GenericNack,
    PhoneNumber,
    SmppMessage,
    SmppSessionState,
    SubmitSm,
    SubmitSmResp,
)
from aiosmpplib.correlator import SimpleCorrelator
from aiosmpplib.retrytimer import SimpleExponentialBackoff

from sms.smpp import RECEIPT_STATES, parse_receipt

FINAL = ("delivered", "undelivered", "failed")


class Correlator(SimpleCorrelator):
    """aiosmpplib's correlator, its expiry sweep at most every `sweep_s` (an entry expires up to
    `sweep_s` after its TTL; `BareEsme.send()` keeps its own timeout)."""

    def __init__(self, name: str, sweep_s: float = 1.0) -> None:
        super().__init__(name)
        self.sweep_s = sweep_s
        self.swept_at = float("-inf")  # monotonic time of the last sweep

    async def _remove_expired(self) -> None:
        now = time.monotonic()
        if now - self.swept_at >= self.sweep_s:
            self.swept_at = now
            await super()._remove_expired()


class _Broker(AbstractBroker):
    """A bounded queue of submit_sm; those whose `send()` gave up are dropped, not sent late."""

    def __init__(self, maxsize: int) -> None:
        self._queue: asyncio.Queue[tuple[SmppMessage, asyncio.Future[Any] | None]] = asyncio.Queue(maxsize)
        self.futures: dict[str, asyncio.Future[Any]] = {}

    async def enqueue(self, message: SmppMessage) -> None:
        self._queue.put_nowait((message, self.futures.get(getattr(message, "log_id", ""))))

    async def dequeue(self) -> SmppMessage:
        while True:
            message, future = await self._queue.get()
            if future is None or not future.done():
                return message


class _Hook(AbstractHook):
    def __init__(self, esme: BareEsme) -> None:
        self.esme = esme

    async def sending(self, smpp_message: SmppMessage, pdu: bytes, client_id: str) -> None:
        return None

    async def received(self, smpp_message: SmppMessage | None, pdu: bytes, client_id: str) -> None:
        if isinstance(smpp_message, (SubmitSmResp, GenericNack)):
            smsc_id = str(getattr(smpp_message, "message_id", "") or "")
            self.esme.resolve(smpp_message.log_id, (int(smpp_message.command_status), smsc_id))
        elif isinstance(smpp_message, DeliverSm) and smpp_message.is_receipt():
            fields = parse_receipt(smpp_message.short_message)
            if RECEIPT_STATES.get(fields.get("stat", "").upper()) in FINAL:
                self.esme.on_final(fields.get("id", ""))

    async def send_error(self, smpp_message: SmppMessage, error: Exception, client_id: str) -> None:
        self.esme.resolve(getattr(smpp_message, "log_id", ""), error)


def _address(number: str) -> PhoneNumber:
    if number.startswith("+"):
        return PhoneNumber(number[1:], TON.INTERNATIONAL, NPI.ISDN)
    return PhoneNumber(number, TON.UNKNOWN, NPI.ISDN)


class BareEsme:
    """aiosmpplib's ESME bound to 127.0.0.1:`port` as system_id "gw", password "secret"."""

    def __init__(self, port: int, on_final: Callable[[str], None], *, queue_size: int, timeout: float) -> None:
        self.on_final, self.timeout = on_final, float(timeout)
        self._broker = _Broker(queue_size)
        self._esme = ESME(
            smsc_host="127.0.0.1", smsc_port=port, system_id="gw", password="secret",
            bind_mode=BindMode.TRANSCEIVER, socket_timeout=float(timeout), hook=_Hook(self), broker=self._broker,
            correlator=Correlator("gw"), log_level=logging.WARNING,
            retry_timer=SimpleExponentialBackoff(min_delay=1000, max_increases=5),
        )
        self._log_ids = itertools.count(1)
        self._task: asyncio.Task[None] | None = None

    @property
    def bound(self) -> bool:
        return self._esme.session_state == SmppSessionState.BOUND_TRX

    async def start(self) -> None:
        await self._esme.connect()
        self._task = asyncio.create_task(self._esme.start(), name="bare-esme")

    async def stop(self) -> None:
        async with asyncio.timeout(3.0):
            await self._esme.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def resolve(self, log_id: str, result: Any) -> None:
        future = self._broker.futures.get(log_id)
        if future is not None and not future.done():
            future.set_result(result)

    async def send(self, sender: str, to: str, body: str) -> str:
        """One single-part GSM-7 submit_sm; its SMSC id (raises on an error status or a timeout)."""
        log_id = str(next(self._log_ids))
        submit = SubmitSm(short_message=body, source=_address(sender), destination=_address(to),
                          registered_delivery=0x01, encoding="gsm0338", log_id=log_id)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._broker.futures[log_id] = future
        try:
            await self._broker.enqueue(submit)
            async with asyncio.timeout(self.timeout):
                result = await future
        finally:
            self._broker.futures.pop(log_id, None)
            if not future.done():
                future.cancel()
        if isinstance(result, BaseException):
            raise result
        status, smsc_id = result
        if status != 0:
            raise RuntimeError(f"submit_sm refused: 0x{status:08X}")
        return str(smsc_id)
