"""Wall-clock time in the one format the gateway stores and sends."""

from __future__ import annotations

import datetime as _dt
import time as _time

_second: tuple[int, str] = (-1, "")  # the last second formatted by now_iso, and its text


def now_iso() -> str:
    """UTC now as ISO 8601 with milliseconds and a Z: 2026-11-27T16:00:00.123Z.

    The date and time up to the second are formatted once a second (strftime is most of the
    cost: a control request stamps its audit row, its commit and its session, issue 13)."""
    global _second
    second, ms = divmod(_time.time_ns() // 1_000_000, 1000)
    kept = _second  # one read: a thread formatting another second meanwhile cannot mix them
    if kept[0] != second:
        kept = _second = (second, _time.strftime("%Y-%m-%dT%H:%M:%S.", _time.gmtime(second)))
    return f"{kept[1]}{ms:03d}Z"


def epoch_to_iso(seconds: float) -> str:
    """A time in seconds since the epoch, in the same format as `now_iso`."""
    return _format(_dt.datetime.fromtimestamp(seconds, _dt.UTC))


def _format(when: _dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def iso_to_epoch(iso: str) -> float:
    """Seconds since the epoch of a time in that format (or any ISO 8601 with an offset)."""
    return _dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
