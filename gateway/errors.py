"""The exception root of the gateway package and the stable error reasons of protocol v1.

Every error a client can cause is a `GatewayError` subclass carrying a JSON-RPC `code`, a stable
`reason` string (sent as `error.data.reason`) and optional `details`. Anything else that escapes a
handler is our own bug and is answered with a generic `internal-error`, no details sent.
"""

from __future__ import annotations

from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# Application codes (JSON-RPC reserves -32000..-32099 for implementation-defined server errors).
NOT_AUTHENTICATED = -32001
FORBIDDEN = -32003
NOT_FOUND = -32004
CONFLICT = -32009
UNAVAILABLE = -32010
RATE_LIMITED = -32029
TARGET_ERROR = -32030


class GatewayError(Exception):
    """Root of every error raised by the gateway package."""

    code: int = INTERNAL_ERROR
    reason: str = "internal-error"

    def __init__(
        self,
        message: str | None = None,
        *,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message or self.reason)
        self.message = message or self.reason
        if reason is not None:
            self.reason = reason
        self.details = details or {}

    def to_error(self) -> dict[str, Any]:
        """The JSON-RPC `error` object for this exception."""
        data: dict[str, Any] = {"reason": self.reason}
        if self.details:
            data["details"] = self.details
        return {"code": self.code, "message": self.message, "data": data}


class ParseError(GatewayError):
    code, reason = PARSE_ERROR, "parse-error"


class InvalidRequest(GatewayError):
    code, reason = INVALID_REQUEST, "invalid-request"


class MethodNotFound(GatewayError):
    code, reason = METHOD_NOT_FOUND, "unknown-method"


class InvalidParams(GatewayError):
    code, reason = INVALID_PARAMS, "invalid-params"


class NotAuthenticated(GatewayError):
    code, reason = NOT_AUTHENTICATED, "not-authenticated"


class Forbidden(GatewayError):
    code, reason = FORBIDDEN, "forbidden"


class NotFound(GatewayError):
    """`reason` names what was missing: `no-such-call`, `no-such-session`, `no-such-endpoint`."""

    code, reason = NOT_FOUND, "not-found"


class Conflict(GatewayError):
    """The object is in a state where the command does not apply (`invalid-state`)."""

    code, reason = CONFLICT, "invalid-state"


class Unavailable(GatewayError):
    """A needed part is not up (`no-capacity`, `sip-unavailable`, `shutting-down`)."""

    code, reason = UNAVAILABLE, "unavailable"


class RateLimited(GatewayError):
    code, reason = RATE_LIMITED, "rate-limited"


class TargetError(GatewayError):
    """The far end could not be reached (`target-unreachable`, `invalid-uri`)."""

    code, reason = TARGET_ERROR, "target-unreachable"


class ConfigError(GatewayError):
    """Invalid configuration: names the file, the key and why."""

    reason = "config-error"

    def __init__(self, file: str, key: str, why: str) -> None:
        super().__init__(f"{file}: {key}: {why}", details={"file": file, "key": key, "why": why})
        self.file, self.key, self.why = file, key, why
