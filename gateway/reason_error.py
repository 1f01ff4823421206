"""The one constructor of every channel package's root error (sip, sms, video).

Each root (`SipError`, `SmsError`, `VideoError`) carries a stable `reason` (the strings protocol v1
sends) and `details`, so the services map it to a `gateway.errors.GatewayError` without parsing
messages; this base holds what they share.
"""

from __future__ import annotations

from typing import Any


class ReasonError(Exception):
    reason: str = "error"

    def __init__(
        self, message: str | None = None, *, reason: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        if reason is not None:
            self.reason = reason
        super().__init__(message or self.reason)
        self.message = message or self.reason
        self.details = details or {}
