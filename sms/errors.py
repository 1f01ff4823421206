"""The exception root of the sms package.

`SmsError` carries a stable `reason` string and `details` so the SMS service can map it to a
`gateway.errors.GatewayError` without parsing messages (sms/ imports nothing from gateway.errors).

Mapping note for the service (reason -> gateway error, `reason` and `details` passed through):

    invalid-number, unknown-variable, invalid-variable, invalid-template,
    too-many-segments                      -> InvalidParams  (the client's input is wrong)
    invalid-state, not-due                 -> Conflict       (the message is not in a state for it)
    invalid-receipt                        -> not a client error: log it, answer the webhook 200
    anything else                          -> internal-error, no details sent

`gateway.state.table.InvalidTransition` never leaves sms/: `sms.outbox` turns it into `InvalidState`.
"""

from __future__ import annotations

from gateway.reason_error import ReasonError


class SmsError(ReasonError):
    """Root of every error raised by the sms package."""

    reason: str = "sms-error"


class InvalidNumber(SmsError):
    """Not an E.164 number; `details["input"]` is what was given, `details["why"]` says why."""

    reason = "invalid-number"


class UnknownVariable(SmsError):
    """A template placeholder has no value; `details["name"]` is the first, `details["missing"]` all."""

    reason = "unknown-variable"


class InvalidVariable(SmsError):
    """A variable value is not text or a number (`details["name"]`, `details["type"]`)."""

    reason = "invalid-variable"


class InvalidTemplate(SmsError):
    """Template syntax we do not accept: unbalanced braces, `{a.b}`, `{a[0]}`, `{0}`, `{a!r}`, `{a:>9}`."""

    reason = "invalid-template"


class TooManySegments(SmsError):
    """The body needs more segments than configured (`details`: segments, max, encoding)."""

    reason = "too-many-segments"


class InvalidState(SmsError):
    """The message is not in a state where this input applies (`details`: state, input)."""

    reason = "invalid-state"


class NotDue(SmsError):
    """An attempt was started before the message's `next_attempt_at` (retry backoff)."""

    reason = "not-due"


class InvalidReceipt(SmsError):
    """A delivery receipt with a status we do not know (`details["status"]`)."""

    reason = "invalid-receipt"
