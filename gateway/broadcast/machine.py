"""Broadcast and per-target state tables, and the retry policy (sans-I/O, no clock).

Both machines are `gateway.state.table.Machine` tables: an input with no entry in the current state
raises `InvalidTransition` (reason `invalid-state`) and the caller keeps its state.

Broadcast (`BROADCAST_MACHINE`):

    state      input          next      meaning
    starting   connected      active    a first target answered, or a zone started sending
    starting   stop           ending    the dispatcher stopped it
    starting   max-duration   ending
    starting   all-failed     ended     every target failed (or was busy) before any connected
    starting   all-ended      ended     every target reached a final state
    active     connected      active    more targets answering
    active     stop           ending
    active     max-duration   ending
    active     repeats-done   ending    the source played its repeat count
    active     all-ended      ended     every target ended (hung up, pre-empted with policy end)
    ending     connected      ending    a late answer: the service hangs it up
    ending     stop | max-duration | repeats-done   ending   (idempotent)
    ending     all-ended | all-failed               ended
    ended      -                                    (final)

Target (`TARGET_MACHINE`), one per SIP speaker/phone or zone:

    pending    dial -> ringing      refused -> busy (held by another broadcast, see arbiter)
               preempt -> pre-empted            stop -> ended
    ringing    early -> ringing     answered -> connected
               fail-retry -> retrying           fail-final -> failed
               preempt -> pre-empted            stop -> ended
    connected  disconnected -> ended            preempt -> pre-empted      stop -> ended
    retrying   dial -> ringing      preempt -> pre-empted      stop -> ended
    pre-empted resume -> resumed    stop -> ended   (policy "end": the service sends stop at once)
    resumed    dial -> ringing      preempt -> pre-empted      stop -> ended
    busy, failed, ended: final

`stop` means the broadcast no longer wants the target; the call leg's own machine
(`gateway.state.call`) takes care of CANCEL/BYE. Which failure input to feed is decided by
`RetryPolicy.input_for()` from the attempt number and the SIP code or cause.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.state.table import Machine


class BroadcastState(enum.StrEnum):
    STARTING = "starting"
    ACTIVE = "active"
    ENDING = "ending"
    ENDED = "ended"


class BroadcastInput(enum.StrEnum):
    CONNECTED = "connected"
    STOP = "stop"
    MAX_DURATION = "max-duration"
    REPEATS_DONE = "repeats-done"
    ALL_FAILED = "all-failed"
    ALL_ENDED = "all-ended"


B, BI = BroadcastState, BroadcastInput

_WIND_DOWN = {BI.STOP: B.ENDING, BI.MAX_DURATION: B.ENDING}

BROADCAST_MACHINE: Machine[BroadcastState, BroadcastInput] = Machine(
    "broadcast",
    {
        B.STARTING: {BI.CONNECTED: B.ACTIVE, **_WIND_DOWN, BI.ALL_FAILED: B.ENDED, BI.ALL_ENDED: B.ENDED},
        B.ACTIVE: {BI.CONNECTED: B.ACTIVE, **_WIND_DOWN, BI.REPEATS_DONE: B.ENDING, BI.ALL_ENDED: B.ENDED},
        B.ENDING: {
            BI.CONNECTED: B.ENDING,
            **{i: B.ENDING for i in (BI.STOP, BI.MAX_DURATION, BI.REPEATS_DONE)},
            BI.ALL_ENDED: B.ENDED,
            BI.ALL_FAILED: B.ENDED,
        },
        B.ENDED: {},
    },
    final=frozenset({B.ENDED}),
)

# The `reason` a `broadcast.ended` event carries, from the input that started the end.
END_REASON: dict[BroadcastInput, str] = {
    BI.STOP: "stopped",
    BI.MAX_DURATION: "max-duration",
    BI.REPEATS_DONE: "completed",
    BI.ALL_FAILED: "all-failed",
    BI.ALL_ENDED: "targets-ended",
}


class TargetState(enum.StrEnum):
    PENDING = "pending"
    RINGING = "ringing"
    CONNECTED = "connected"
    RETRYING = "retrying"
    PREEMPTED = "pre-empted"
    RESUMED = "resumed"
    BUSY = "busy"
    FAILED = "failed"
    ENDED = "ended"


class TargetInput(enum.StrEnum):
    DIAL = "dial"
    EARLY = "early"
    ANSWERED = "answered"
    FAIL_RETRY = "fail-retry"
    FAIL_FINAL = "fail-final"
    DISCONNECTED = "disconnected"
    REFUSED = "refused"
    PREEMPT = "preempt"
    RESUME = "resume"
    STOP = "stop"


T, TI = TargetState, TargetInput

_LIVE = {TI.PREEMPT: T.PREEMPTED, TI.STOP: T.ENDED}

TARGET_MACHINE: Machine[TargetState, TargetInput] = Machine(
    "broadcast target",
    {
        T.PENDING: {TI.DIAL: T.RINGING, TI.REFUSED: T.BUSY, **_LIVE},
        T.RINGING: {
            TI.EARLY: T.RINGING,
            TI.ANSWERED: T.CONNECTED,
            TI.FAIL_RETRY: T.RETRYING,
            TI.FAIL_FINAL: T.FAILED,
            **_LIVE,
        },
        T.CONNECTED: {TI.DISCONNECTED: T.ENDED, **_LIVE},
        T.RETRYING: {TI.DIAL: T.RINGING, **_LIVE},
        T.PREEMPTED: {TI.RESUME: T.RESUMED, TI.STOP: T.ENDED},
        T.RESUMED: {TI.DIAL: T.RINGING, **_LIVE},
        T.BUSY: {},
        T.FAILED: {},
        T.ENDED: {},
    },
    final=frozenset({T.BUSY, T.FAILED, T.ENDED}),
)

# SIP final responses worth another INVITE: timeouts, temporarily unavailable, busy (a paging
# speaker answering 486 may be free in a moment), server errors, busy everywhere.
RETRY_CODES = frozenset({408, 480, 486, 600}) | frozenset(range(500, 600))
# Causes (gateway `cause` strings) worth another attempt when there is no SIP code.
RETRY_CAUSES = frozenset({"timeout", "no-answer", "unreachable", "busy", "worker-crashed"})


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    delay_s: float  # 0 when not retrying
    why: str  # "retryable" | "not-retryable" | "retries-exhausted"


@dataclass(frozen=True)
class RetryPolicy:
    """`retries` further attempts after the first, each `delay_s` after the failure.

    Retry on 408/480/486/5xx/600 and on the causes timeout/no-answer/unreachable/busy; anything
    else (404, 403, 488, 603, 606, ...) fails at once. A SIP code, when given, decides over the cause.
    """

    retries: int = 2
    delay_s: float = 3.0

    def __post_init__(self) -> None:
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or self.retries < 0:
            raise ValueError(f"retries {self.retries!r} must be an integer >= 0")
        if not isinstance(self.delay_s, (int, float)) or self.delay_s < 0:
            raise ValueError(f"delay_s {self.delay_s!r} must be >= 0")

    @staticmethod
    def retryable(sip_code: int | None = None, cause: str | None = None) -> bool:
        if sip_code:
            return sip_code in RETRY_CODES
        return cause in RETRY_CAUSES

    def decide(self, attempt: int, sip_code: int | None = None, cause: str | None = None) -> RetryDecision:
        """After failed attempt number `attempt` (1 = the first INVITE): retry or fail for good."""
        if attempt < 1:
            raise ValueError(f"attempt {attempt!r} must be >= 1")
        if not self.retryable(sip_code, cause):
            return RetryDecision(False, 0.0, "not-retryable")
        if attempt > self.retries:
            return RetryDecision(False, 0.0, "retries-exhausted")
        return RetryDecision(True, float(self.delay_s), "retryable")

    def input_for(self, attempt: int, sip_code: int | None = None, cause: str | None = None) -> TargetInput:
        retry = self.decide(attempt, sip_code, cause).retry
        return TargetInput.FAIL_RETRY if retry else TargetInput.FAIL_FINAL
