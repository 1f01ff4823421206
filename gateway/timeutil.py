"""Wall-clock time in the one format the gateway stores and sends."""

from __future__ import annotations

import datetime as _dt


def now_iso() -> str:
    """UTC now as ISO 8601 with milliseconds and a Z: 2026-11-27T16:00:00.123Z."""
    return _format(_dt.datetime.now(_dt.UTC))


def epoch_to_iso(seconds: float) -> str:
    """A time in seconds since the epoch, in the same format as `now_iso`."""
    return _format(_dt.datetime.fromtimestamp(seconds, _dt.UTC))


def _format(when: _dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def iso_to_epoch(iso: str) -> float:
    """Seconds since the epoch of a time in that format (or any ISO 8601 with an offset)."""
    return _dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
