"""The exception root of the sip package.

`SipError` carries a stable `reason` (the same strings as protocol v1: `no-capacity`,
`sip-unavailable`, `no-such-call`, `invalid-state`, `target-unreachable`, `shutting-down`) so the
call service can map it to a `gateway.errors.GatewayError` without parsing messages.
"""

from __future__ import annotations

from gateway.reason_error import ReasonError


class SipError(ReasonError):
    """Root of every error raised by the sip package."""

    reason: str = "sip-error"


class NoCapacity(SipError):
    """Every worker holds calls_per_worker calls and max_workers are running."""

    reason = "no-capacity"


class SipUnavailable(SipError):
    """No worker is up (not started, shutting down, or all crashed)."""

    reason = "sip-unavailable"


class NoSuchCall(SipError):
    reason = "no-such-call"


class InvalidState(SipError):
    reason = "invalid-state"


class WorkerError(SipError):
    """A worker refused or failed a command; `reason` is the worker's reason string."""

    reason = "worker-error"


class TargetError(SipError):
    """The far end cannot be reached or addressed (`invalid-uri`, `target-unreachable`)."""

    reason = "target-unreachable"
