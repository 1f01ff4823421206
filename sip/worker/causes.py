"""How a call ended, as a stable cause string. Pure: no pjsua2, no threads (unit-tested)."""

from __future__ import annotations


def normalize_cause(
    *, code: int, confirmed: bool, local_end: str | None, outbound: bool, got_response: bool
) -> str:
    """Map how a call ended to a stable cause string (pure; unit-tested)."""
    if confirmed:
        return "local-hangup" if local_end else "remote-hangup"
    if local_end == "timeout":
        return "no-answer"
    if local_end == "reject":
        return "rejected"
    if local_end:
        return "cancelled"
    if code in (486, 600):
        return "busy"
    if code == 487:
        return "cancelled"
    if code in (408, 480):
        return "no-answer" if got_response else "unreachable"
    if code in (503, 502, 504) and not got_response:
        return "unreachable"
    if not outbound and code in (0, 487):
        return "cancelled"
    if code >= 400:
        return "rejected"
    return "unknown"
