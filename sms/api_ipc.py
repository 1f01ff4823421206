"""Sans-I/O messages between the gateway and its SMS API worker (sms/api_worker/), over the worker's
stdin/stdout, framed as the SIP workers' (sip/ipc.py: ``length | type | JSON object``).

Gateway -> worker: the config first (``{"config": {...}}``, through the pipe: it holds the auth
token), then requests ``{"op": "send" | "find" | "ping" | "shutdown", "id": n, ...}``.
Worker -> gateway: ``{"type": "ready", "pid": ...}`` once, then one reply per request:
``{"id": n, "ok": [provider_id, status]}`` (send), ``{"id": n, "ok": [[provider_id, to, body,
status, created], ...]}`` (find), ``{"id": n, "error": {...}}`` (a `ProviderError`, every field
that decides what the outbox does: `status_code`, `retryable`, `maybe_sent`, `details`), and
``{"type": "pong"}`` for a ping.

Requests carry short keys: at carrier rates each is encoded and decoded once in the gateway's
loop, the part this split takes load off.
"""

from __future__ import annotations

from typing import Any

from sip.ipc import Decoder, IpcProtocolError, encode_control
from sms.provider import ProviderError, Remote, Submitted

__all__ = ["Decoder", "IpcProtocolError", "encode_control", "encode_error", "error_from_wire",
           "find_request", "found_reply", "remotes_from_wire", "send_request", "submitted_reply"]

PING = encode_control({"op": "ping", "id": 0})
SHUTDOWN = encode_control({"op": "shutdown", "id": 0})


def send_request(rid: int, message_id: str, sender: str, to: str, body: str) -> bytes:
    return encode_control({"op": "send", "id": rid, "m": message_id, "s": sender, "t": to, "b": body})


def find_request(rid: int, to: str, since_iso: str) -> bytes:
    return encode_control({"op": "find", "id": rid, "t": to, "since": since_iso})


def submitted_reply(rid: int, sub: Submitted) -> bytes:
    return encode_control({"id": rid, "ok": [sub.provider_id, sub.status]})


def found_reply(rid: int, remotes: list[Remote]) -> bytes:
    return encode_control({"id": rid, "ok": [[r.provider_id, r.to, r.body, r.status, r.created] for r in remotes]})


def encode_error(rid: int, err: ProviderError) -> bytes:
    return encode_control({"id": rid, "error": error_to_wire(err)})


def error_to_wire(err: ProviderError) -> dict[str, Any]:
    return {"message": err.message, "status_code": err.status_code, "retryable": err.retryable,
            "maybe_sent": err.maybe_sent, "details": _plain(err.details)}


def error_from_wire(data: Any) -> ProviderError:
    """The worker's `ProviderError` as it was raised there (same status, retryable, maybe_sent,
    details); a malformed one is a retryable error that may have sent (look before resending)."""
    if not isinstance(data, dict):
        return ProviderError("sms api worker: malformed error reply", error="connection", maybe_sent=True)
    status = data.get("status_code")
    status = status if isinstance(status, int) and not isinstance(status, bool) else None
    details = data.get("details") if isinstance(data.get("details"), dict) else {}
    err = ProviderError(str(data.get("message") or "provider error"), status_code=status,
                        error="connection", details=dict(details), maybe_sent=bool(data.get("maybe_sent")))
    err.retryable = bool(data.get("retryable"))  # as the worker decided it, whatever the status
    return err


def submitted_from_wire(result: Any) -> Submitted:
    provider_id, status = result
    return Submitted(provider_id=str(provider_id), status=str(status))


def remotes_from_wire(result: Any) -> list[Remote]:
    return [Remote(provider_id=str(p), to=str(t), body=str(b), status=str(s), created=str(c))
            for p, t, b, s, c in result]


def _plain(value: Any) -> Any:
    """`details` as JSON can carry them: anything else as its repr (an exception, a datetime)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return repr(value)
