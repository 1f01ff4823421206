"""The SMS provider contract (docs/design.md, "SMS"): what a provider reports and how it fails.

A provider sends one message per `send()`, reports delivery receipts and inbound messages through
the callbacks given to `start()` and answers its peer only once the callback has returned (an
awaitable result is awaited: the gateway stores the report first). A callback that raises means
"not taken": the provider answers so that its peer retries (HTTP 503, a throttling deliver_sm_resp).
It serves its webhooks through `webhook_routes()`, and lists what it
sent to a number (`find_sent()`) so the outbox can reconcile after a crash or a timed-out attempt
(a timeout does not prove the message was not sent).

Every failure of an API call is a `ProviderError`; `retryable` is decided by `sms.outbox.classify`
(429 / 408 / 5xx / timeout / connection error: retry; any other 4xx: permanent).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.text import to_utf8
from sms.errors import SmsError
from sms.outbox import classify


def _normalise_text(report: Any) -> None:
    """Text from a provider (a UCS-2 body with a lone surrogate, bytes that are not UTF-8) is
    normalised at the edge (U+FFFD), so it can always be stored and sent on."""
    for name in report.__slots__:
        value = getattr(report, name)
        if isinstance(value, str):
            object.__setattr__(report, name, to_utf8(value))


@dataclass(frozen=True, slots=True)
class Submitted:
    """The provider API took the message: its id there and the status it reported (queued|sent|...)."""

    provider_id: str
    status: str

    def __post_init__(self) -> None:
        _normalise_text(self)


@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivery report, status as the provider says it (delivered|undelivered|failed|sent|...).
    `message_id` is ours when the provider can tell (SMPP, same process); `to` is the number the
    message went to when the report carries it (an SMPP receipt's source address)."""

    provider_id: str
    status: str
    error_code: str | None = None
    message_id: str | None = None
    to: str | None = None

    def __post_init__(self) -> None:
        _normalise_text(self)


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message received on one of our numbers. `dedup_key` is set when `provider_id` does not
    survive a redelivery (SMPP): a delivery with the same key within the window is the same one."""

    provider_id: str
    sender: str
    to: str
    body: str
    dedup_key: str | None = None

    def __post_init__(self) -> None:
        _normalise_text(self)


@dataclass(frozen=True, slots=True)
class Remote:
    """A message as the provider lists it (reconciliation); `created` is ISO 8601, UTC."""

    provider_id: str
    to: str
    body: str
    status: str
    created: str

    def __post_init__(self) -> None:
        _normalise_text(self)


class ProviderError(SmsError):
    """An API call failed. `status_code` is the HTTP status (None: no answer, e.g. a timeout);
    `retryable` says whether another attempt may succeed (`sms.outbox.classify`); `maybe_sent`
    whether the provider may have taken the message all the same (no answer to a request that went
    out: look before sending again). `details["retry_after_s"]`: the provider's Retry-After."""

    reason = "provider-error"

    def __init__(
        self,
        message: str | None = None,
        *,
        status_code: int | None = None,
        error: BaseException | str | None = None,
        details: dict[str, Any] | None = None,
        maybe_sent: bool | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.status_code = status_code
        if status_code is not None and 400 <= status_code <= 599:
            outcome = classify(status_code)
        else:  # no answer, or an answer that is not an error status (a 2xx we could not read)
            outcome = classify(error=error if error is not None else "unknown")
        self.retryable = outcome == "retry"
        self.maybe_sent = (status_code is None and self.retryable) if maybe_sent is None else maybe_sent
        self.details.setdefault("status_code", status_code)
        self.details.setdefault("retryable", self.retryable)


OnReceipt = Callable[[Receipt], Awaitable[None] | None]
OnInbound = Callable[[Inbound], Awaitable[None] | None]


async def deliver(callback: Callable[[Any], Awaitable[None] | None] | None, item: Any) -> None:
    """Hand `item` to a start() callback and wait until it has taken it (raises if it did not)."""
    if callback is None:
        raise ProviderError("the provider is not started", status_code=503)
    result = callback(item)
    if inspect.isawaitable(result):
        await result


class Provider(Protocol):
    name: str
    can_list: bool  # whether find_sent() can see what was sent (Twilio yes, SMPP no)

    async def start(self, on_receipt: OnReceipt, on_inbound: OnInbound) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, message_id: str, sender: str, to: str, body: str) -> Submitted: ...

    async def find_sent(self, to: str, since_iso: str) -> list[Remote]: ...

    def webhook_routes(self) -> list[tuple[str, str, Callable[..., Any]]]: ...
