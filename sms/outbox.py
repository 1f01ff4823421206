"""Outgoing messages: the state table, retry classification and backoff, per-sender rate (sans-I/O).

States: queued -> sending -> sent -> delivered | undelivered | failed.

    queued   --send-->              sending   (an attempt starts)
    sending  --accepted-->          sent      (the provider API took it)
    sending  --transient-error-->   queued    (429 / 5xx / timeout, attempts left; backoff)
    sending  --permanent-error-->   failed    (other 4xx: at once)
    sending  --give-up-->           failed    (transient error, no attempts left)
    sent     --delivered/undelivered/failed--> the same-named state (delivery receipts)
    sent     --give-up-->           failed    (no final receipt, and the provider cannot tell,
                                               within `sms.give_up_after_s`: error `no-receipt`)

Receipts can overtake the API reply, so they are accepted in `sending` too (straight to the final
state), and in `queued` after a timed-out attempt (the receipt is for that attempt: sending again
would duplicate the message); likewise `accepted` in `queued` (queued --accepted--> sent: the
provider lists a timed-out attempt as taken). Either in `queued` before any attempt is refused.

Final states have no rows. Once final, late API replies and late or duplicate receipts are recorded
in the history (`ignored=True`) and change nothing; a new `send` is refused (`invalid-state`).

Time is always passed in (`now`, seconds on any monotonic scale); randomness is injected.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from gateway.state.table import InvalidTransition, Machine
from sms.errors import InvalidReceipt, InvalidState, NotDue
from sms.numbers import normalize
from sms.segments import SegmentInfo, check_max, encode_info


class MessageState(enum.Enum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"

    # Members are singletons compared by identity: hashed by identity too (enum.Enum hashes the
    # name in Python, a call per set or table lookup: four a step, in the ledger's units).
    __hash__ = object.__hash__


class MessageInput(enum.Enum):
    SEND = "send"
    ACCEPTED = "accepted"
    TRANSIENT_ERROR = "transient-error"
    PERMANENT_ERROR = "permanent-error"
    GIVE_UP = "give-up"
    DELIVERED = "delivered"  # receipts
    UNDELIVERED = "undelivered"
    FAILED = "failed"

    __hash__ = object.__hash__  # as MessageState's


S, I = MessageState, MessageInput
_STATE_OF = {s.value: s for s in S}  # a stored state's member without enum's lookup call
_INPUT_OF = {i.value: i for i in I}
_RECEIPTS = {I.DELIVERED: S.DELIVERED, I.UNDELIVERED: S.UNDELIVERED, I.FAILED: S.FAILED}
RECEIPT_INPUTS = frozenset(_RECEIPTS)
API_REPLY_INPUTS = frozenset({I.ACCEPTED, I.TRANSIENT_ERROR, I.PERMANENT_ERROR, I.GIVE_UP})

MESSAGE_MACHINE: Machine[MessageState, MessageInput] = Machine(
    "sms",
    {
        # GIVE_UP from queued: a held message (its last attempt may have reached the provider) that
        # could not be looked up until sms.give_up_after_s: failed, "unconfirmed", never sent blind
        S.QUEUED: {I.SEND: S.SENDING, I.ACCEPTED: S.SENT, I.GIVE_UP: S.FAILED, **_RECEIPTS},
        S.SENDING: {
            I.ACCEPTED: S.SENT,
            I.TRANSIENT_ERROR: S.QUEUED,
            I.PERMANENT_ERROR: S.FAILED,
            I.GIVE_UP: S.FAILED,
            **_RECEIPTS,
        },
        S.SENT: {**_RECEIPTS, I.GIVE_UP: S.FAILED},
        S.DELIVERED: {},
        S.UNDELIVERED: {},
        S.FAILED: {},
    },
    final=frozenset({S.DELIVERED, S.UNDELIVERED, S.FAILED}),
)


# --- retry -------------------------------------------------------------------------------------

Outcome = Literal["retry", "permanent"]
# Library exceptions that are connection failures without being OSError (aiohttp's
# ServerDisconnectedError etc. derive from ClientConnectionError); matched by name, no import.
_TRANSIENT_CLASS_NAMES = frozenset({"ClientConnectionError"})


def classify(status_code: int | None = None, error: BaseException | str | None = None) -> Outcome:
    """Whether a failed attempt is worth retrying.

    429, 408 and 5xx -> retry; any other 4xx -> permanent. `error` (used when there is no status):
    a timeout or connection error (TimeoutError, OSError, aiohttp ClientConnectionError, or the
    strings "timeout" / "connection") -> retry; anything else -> permanent (do not hammer).
    """
    if status_code is not None:
        if status_code < 400 or status_code > 599:
            raise ValueError(f"status {status_code} is not an error status")
        return "retry" if status_code in (408, 429) or status_code >= 500 else "permanent"
    if error is None:
        raise ValueError("classify() needs a status_code or an error")
    if isinstance(error, str):
        return "retry" if error in ("timeout", "connection") else "permanent"
    if isinstance(error, (TimeoutError, OSError)):
        return "retry"
    if any(cls.__name__ in _TRANSIENT_CLASS_NAMES for cls in type(error).__mro__):
        return "retry"
    return "permanent"


class Random(Protocol):
    def random(self) -> float: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`max_attempts` counts every attempt (the first included); delays are exponential, full jitter."""

    max_attempts: int
    base_delay_s: float
    max_delay_s: float

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 < self.base_delay_s <= self.max_delay_s:
            raise ValueError("need 0 < base_delay_s <= max_delay_s")

    def can_retry(self, attempts: int) -> bool:
        return attempts < self.max_attempts

    def ceiling(self, attempts: int) -> float:
        """The upper bound of the delay after `attempts` attempts: min(max, base * 2**(attempts-1))."""
        return min(self.max_delay_s, self.base_delay_s * 2.0 ** min(max(attempts - 1, 0), 1000))

    def delay(self, attempts: int, rng: Random, retry_after_s: float | None = None) -> float:
        """Seconds to wait after `attempts` attempts: uniform in [0, ceiling); never less than a
        server's Retry-After."""
        jittered = rng.random() * self.ceiling(attempts)
        return max(jittered, retry_after_s) if retry_after_s is not None else jittered


# --- rate --------------------------------------------------------------------------------------


class TokenBucket:
    """`rate_per_s` tokens a second, at most `burst` saved; full at the first `now` it sees."""

    def __init__(self, rate_per_s: float, burst: float = 1.0) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("need rate_per_s > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated: float | None = None

    def _refill(self, now: float) -> None:
        if self.updated is not None and now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        if self.updated is None or now > self.updated:  # a clock going back refills nothing
            self.updated = now

    def next_send_at(self, now: float) -> float:
        """The earliest time (>= now) a message may be sent."""
        self._refill(now)
        if self.tokens >= 1 - 1e-9:
            return now
        return now + (1 - self.tokens) / self.rate_per_s

    def try_take(self, now: float) -> bool:
        """Take a token if one is there (send now) and say whether it was."""
        if self.next_send_at(now) > now:
            return False
        self.tokens = max(0.0, self.tokens - 1)
        return True


class SenderRates:
    """One `TokenBucket` per sender (senders are configured numbers: a bounded set)."""

    def __init__(self, rate_per_s: float, burst: float = 1.0) -> None:
        TokenBucket(rate_per_s, burst)  # validate now
        self.rate_per_s, self.burst = rate_per_s, burst
        self._buckets: dict[str, TokenBucket] = {}

    def bucket(self, sender: str) -> TokenBucket:
        if sender not in self._buckets:
            self._buckets[sender] = TokenBucket(self.rate_per_s, self.burst)
        return self._buckets[sender]

    def next_send_at(self, sender: str, now: float) -> float:
        return self.bucket(sender).next_send_at(now)

    def try_take(self, sender: str, now: float) -> bool:
        return self.bucket(sender).try_take(now)


# --- the message record ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    at: float
    input: MessageInput
    before: MessageState
    after: MessageState
    ignored: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class OutgoingMessage:
    """One message to one number. Create with `OutgoingMessage.queue()`; feed it inputs."""

    id: str
    sender: str
    to: str
    body: str
    info: SegmentInfo
    created_at: float
    state: MessageState = S.QUEUED
    attempts: int = 0
    next_attempt_at: float | None = None
    provider_id: str | None = None
    error: dict[str, Any] | None = None
    history: list[Change] = field(default_factory=list)

    @classmethod
    def queue(cls, id: str, sender: str, to: str, body: str, *, now: float, max_segments: int) -> OutgoingMessage:
        """Validate the number and the size (`invalid-number`, `too-many-segments`), then queue."""
        return cls(id, sender, normalize(to), body, check_max(body, max_segments), created_at=now)

    @classmethod
    def restore(cls, id: str, sender: str, to: str, body: str, *, state: str, attempts: int,
                next_attempt_at: float | None, provider_id: str | None, created_at: float) -> OutgoingMessage:
        """A stored message, to feed it the next input (the service keeps rows, not objects)."""
        member = _STATE_OF.get(state) or S(state)  # S(): ValueError for a state that is none
        return cls(id, sender, to, body, encode_info(body), created_at=created_at, state=member,
                   attempts=attempts, next_attempt_at=next_attempt_at, provider_id=provider_id)

    @property
    def final(self) -> bool:
        return MESSAGE_MACHINE.is_final(self.state)

    def due(self, now: float) -> bool:
        return self.state is S.QUEUED and (self.next_attempt_at is None or now >= self.next_attempt_at)

    def _apply(self, now: float, event: MessageInput, **detail: Any) -> Change:
        before = self.state
        if self.final and (event in API_REPLY_INPUTS or event in RECEIPT_INPUTS):
            change = Change(now, event, before, before, ignored=True, detail=detail)
            self.history.append(change)
            return change
        if (event in RECEIPT_INPUTS or event is I.ACCEPTED) and before is S.QUEUED and self.attempts == 0:
            raise InvalidState(
                f"message {self.id}: {event.value} before any attempt",
                details={"state": before.value, "input": event.value},
            )
        try:
            after = MESSAGE_MACHINE.next(before, event)
        except InvalidTransition as exc:
            raise InvalidState(f"message {self.id}: {exc.message}", details=exc.details) from None
        self.state = after
        change = Change(now, event, before, after, detail=detail)
        self.history.append(change)
        return change

    def start_attempt(self, now: float) -> Change:
        """queued -> sending (`not-due` while a retry backoff runs)."""
        if self.state is S.QUEUED and not self.due(now):
            raise NotDue(
                f"message {self.id}: next attempt at {self.next_attempt_at}",
                details={"now": now, "next_attempt_at": self.next_attempt_at},
            )
        change = self._apply(now, I.SEND, attempt=self.attempts + 1)
        self.attempts += 1
        self.next_attempt_at = None
        return change

    def accepted(self, now: float, provider_id: str | None = None) -> Change:
        """The provider API took the message (sending -> sent)."""
        if provider_id is not None and self.provider_id is None:
            self.provider_id = provider_id
        return self._apply(now, I.ACCEPTED, provider_id=provider_id)

    def attempt_failed(
        self,
        now: float,
        policy: RetryPolicy,
        rng: Random,
        *,
        status_code: int | None = None,
        error: BaseException | str | None = None,
        retry_after_s: float | None = None,
    ) -> Change:
        """The attempt failed: back to queued with a backoff, or failed (permanent / exhausted)."""
        outcome = classify(status_code, error)
        why: dict[str, Any] = {"status_code": status_code, "error": None if error is None else str(error)}
        if self.final:
            return self._apply(now, I.PERMANENT_ERROR if outcome == "permanent" else I.TRANSIENT_ERROR, **why)
        if outcome == "retry" and policy.can_retry(self.attempts):
            delay = policy.delay(self.attempts, rng, retry_after_s)
            change = self._apply(now, I.TRANSIENT_ERROR, delay_s=delay, **why)
            self.next_attempt_at = now + delay
            return change
        event = I.PERMANENT_ERROR if outcome == "permanent" else I.GIVE_UP
        change = self._apply(now, event, **why)
        self.error = {"reason": event.value, "attempts": self.attempts, **why}
        return change

    def give_up(self, now: float, why: str) -> Change:
        """sent -> failed: no final receipt came and the provider could not say within the bound;
        queued -> failed: held for a lookup that kept failing until the bound."""
        change = self._apply(now, I.GIVE_UP, why=why)
        if not change.ignored:
            self.error = {"reason": why, "attempts": self.attempts}
        return change

    def receipt(self, now: float, status: str) -> Change:
        """A delivery receipt: `delivered`, `undelivered` or `failed` (the provider's mapping is the
        service's job); `invalid-receipt` for anything else."""
        event = _INPUT_OF.get(status)
        if event not in RECEIPT_INPUTS:
            raise InvalidReceipt(f"unknown receipt status {status!r}", details={"status": status})
        assert event is not None
        change = self._apply(now, event)
        if not change.ignored and event is not I.DELIVERED:
            self.error = {"reason": event.value, "attempts": self.attempts}
        return change
