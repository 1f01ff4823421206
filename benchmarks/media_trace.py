"""The worker's media trace (`sip.media_trace` log lines, sip/worker/media_trace.py) read beside
the beeps of benchmarks.conferences, sans I/O apart from reading the log.

- `read_trace`: the trace records of a gateway's JSON log, in time order.
- `leg_series`: one call's jitter buffer over time (the talker's leg: its remote URI names it);
  `playout_series`: the frames queued towards the calls in the workers' playout queues (a
  broadcast's stream) over time.
- `per_beep`: each paired beep with what the talker's jitter buffer held (ms: the delay it adds)
  just before the beep was sent, and its burst level then (in the codec's 10 ms frames).
- `counters`: lost / discarded / empty frames of that buffer over a window.
- `thread_waits`: each worker thread's time runnable but waiting for a core, per sample interval
  (the largest interval, and the total), from the schedstat the trace carries.
Tested without processes in tests/benchmarks/test_media_trace.py.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

COUNTERS = ("lost", "discard", "empty")


def parse_trace(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The `sip.media_trace` records among JSON log lines, ordered by their time (t_ns)."""
    out = []
    for ln in lines:
        if '"sip.media_trace"' not in ln:
            continue
        with contextlib.suppress(ValueError):
            rec = json.loads(ln)
            if rec.get("event") == "sip.media_trace" and isinstance(rec.get("t_ns"), int):
                out.append(rec)
    return sorted(out, key=lambda r: r["t_ns"])


def read_trace(log: Path) -> list[dict[str, Any]]:
    with contextlib.suppress(OSError):
        with open(log, errors="replace") as f:
            return parse_trace(f)
    return []


def leg_series(records: list[dict[str, Any]], uri_part: str) -> list[tuple[int, dict[str, Any]]]:
    """(t_ns, jitter buffer) of the call whose remote URI contains `uri_part` (the first one seen)."""
    call_id = None
    out = []
    for r in records:
        calls = r.get("calls") or {}
        if call_id is None:
            call_id = next((cid for cid, c in calls.items() if uri_part in str(c.get("uri", ""))), None)
        if call_id is not None and call_id in calls:
            out.append((r["t_ns"], calls[call_id]))
    return out


def playout_series(records: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """(t_ns, {"frames": n}): the frames waiting in the workers' playout queues (streams, consoles)."""
    return [(r["t_ns"], {"frames": sum((r.get("playout") or {}).values())}) for r in records]


def at_or_before(series: list[tuple[int, dict[str, Any]]], t_ns: int) -> dict[str, Any] | None:
    """The last sample taken at or before `t_ns`."""
    best = None
    for t, jb in series:
        if t > t_ns:
            break
        best = jb
    return best


def per_beep(pairs: list[tuple[int, int]], series: list[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """For each (sent, heard) beep: its delay, and the talker's buffer just before it was sent."""
    out = []
    for s, h in pairs:
        jb = at_or_before(series, s)
        out.append({"sent_ns": s, "delay_ms": round((h - s) / 1e6, 1),
                    "jb_held_ms": jb["held_ms"] if jb else None, "burst": jb["burst"] if jb else None})
    return out


def counters(series: list[tuple[int, dict[str, Any]]], since_ns: int, until_ns: int | None = None) -> dict[str, int]:
    """How many frames the buffer lost, discarded and found empty between two times (the
    samples nearest inside the window; 0 without two samples)."""
    inside = [jb for t, jb in series if t >= since_ns and (until_ns is None or t <= until_ns)]
    if len(inside) < 2:
        return dict.fromkeys(COUNTERS, 0)
    return {k: int(inside[-1][k]) - int(inside[0][k]) for k in COUNTERS}


def thread_waits(records: list[dict[str, Any]], since_ns: int, pid: int | None = None) -> dict[str, dict[str, float]]:
    """Per worker thread (by name, the id dropped): the largest wait for a core within one sample
    interval and the total over the window, ms; and the longest interval between two samples
    (the main loop's own lateness) under "main loop"."""
    recs = [r for r in records if r["t_ns"] >= since_ns and (pid is None or r.get("pid") == pid)]
    out: dict[str, dict[str, float]] = {}
    for a, b in zip(recs, recs[1:]):
        if a.get("pid") != b.get("pid"):
            continue
        ta, tb = a.get("threads") or {}, b.get("threads") or {}
        for key, vb in tb.items():
            va = ta.get(key)
            if va is None:
                continue
            name = key.rsplit("/", 1)[0]
            w = (vb[1] - va[1]) / 1e6
            d = out.setdefault(name, {"max_ms": 0.0, "total_ms": 0.0})
            d["max_ms"] = round(max(d["max_ms"], w), 1)
            d["total_ms"] = round(d["total_ms"] + w, 1)
        gap = (b["t_ns"] - a["t_ns"]) / 1e6
        m = out.setdefault("main loop", {"max_ms": 0.0, "total_ms": 0.0})
        m["max_ms"] = round(max(m["max_ms"], gap), 1)
    return out
