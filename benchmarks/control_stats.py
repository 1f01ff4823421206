"""Sans-I/O parts of the control-channel benchmark's multi-process load generator.

What is planned before the loader processes start and merged after they report, with no sockets and
no clocks of its own (tests/benchmarks/test_control_stats.py):
- which loader process owns which client (`owner`, `clients_of`);
- the open-loop request plan: request i is due at T0 + i/rate on load client i % load_clients with a
  method drawn from the mix by a seeded generator; each loader runs only the requests of its own
  clients, against one common T0, so the loaders together send exactly `rate` per second
  (`plan_requests`);
- the cheap reading of an event frame's seq (`event_seq`);
- merging: percentiles over the union of every loader's samples (not a mean of per-process
  percentiles), the achieved rate from total completions over the common window, fan-out as the
  earliest first and the latest last arrival over all loaders, and a verdict that flags a run below
  95 % of the target as loader-, machine- or server-bound (`merge_steady`, `merge_fanout`, `verdict`).

Times are seconds of CLOCK_MONOTONIC (`time.monotonic()`), read in every process: on Linux it is one
system-wide clock (time since boot, the same vDSO read of the kernel's timekeeper in every process of
a time namespace), so an arrival stamped in loader 1 and a send stamped in loader 0 are on one clock.
"""

from __future__ import annotations

import collections
import random
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

# Both servers encode an event as json.dumps({"jsonrpc": "2.0", "method": "event", "params":
# {"seq": N, "type": ..., ...}}, separators=(",", ":")) (gateway/protocol/codec.py encode_event,
# benchmarks/control_bare.py): the frame starts with this exact text, then seq's digits.
EVENT_PREFIX = '{"jsonrpc":"2.0","method":"event","params":{"seq":'
BELOW_TARGET = 0.95  # achieved / target under this: the run did not measure the server at that rate
LATE_LOADER_S = 0.05  # sends this late (p99 after their due time) mean the loader could not keep up
BUSY_LOADER_PCT = 85.0  # a loader process using this much of a core is saturated
STARVED_PCT = 25.0  # a process runnable but not running this share of the time is starved by others


def pct(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) or None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 2)


def loop_stalls(before: dict[float, float] | None, after: dict[float, float] | None) -> dict[str, Any] | None:
    """The gateway's loop stalls between two reads of its loop-lag histogram (cumulative counts by
    upper bound, `GatewayProcess.loop_lag`): the longest as the bucket it fell in (`max_ms` its
    upper bound, `max_from_ms` its lower one) and how many were over 5, 10 and 20 ms."""
    if not before or not after:
        return None
    bounds = sorted(after)
    per = {b: after[b] - before.get(b, 0.0) for b in bounds}  # cumulative deltas
    top = next((i for i in range(len(bounds) - 1, -1, -1)
                if per[bounds[i]] > (per[bounds[i - 1]] if i else 0.0)), None)
    total = per[bounds[-1]]

    def over(s: float) -> int:
        below = max((per[b] for b in bounds if b <= s), default=0.0)
        return int(total - below)
    return {"samples": int(total),
            "max_ms": None if top is None else ms(bounds[top]),
            "max_from_ms": None if top is None else ms(bounds[top - 1] if top else 0.0),
            "over_5ms": over(0.005), "over_10ms": over(0.01), "over_20ms": over(0.02)}


def event_seq(frame: str) -> int | None:
    """The seq of an event frame without decoding it, or None when the frame is not in that shape.

    Only a frame that starts with EVENT_PREFIX is read: the prefix is the object's opening
    structure up to the value of params' first key, so the digits after it are params.seq and
    nothing inside a string value can pass for it. Anything else (replies, another key order)
    returns None and is decoded in full by the caller.
    """
    if not frame.startswith(EVENT_PREFIX):
        return None
    start = len(EVENT_PREFIX)
    end = start
    n = len(frame)
    while end < n and frame[end].isdigit():
        end += 1
    if end == start or end >= n or frame[end] != ",":
        return None
    return int(frame[start:end])


def owner(client: int, loaders: int) -> int:
    """The loader process that owns client number `client` (round robin)."""
    return client % loaders


def clients_of(k: int, clients: int, loaders: int) -> list[int]:
    return list(range(k, clients, loaders))


@dataclass(frozen=True)
class Planned:
    i: int  # the request's number in the whole run
    due_s: float  # seconds after the common T0
    client: int  # global client number
    method: str


def parse_mix(text: str) -> list[tuple[str, float]]:
    out = []
    for part in text.split(","):
        name, _, w = part.partition("=")
        out.append((name.strip(), float(w or 1)))
    total = sum(w for _, w in out)
    return [(n, w / total) for n, w in out]


def plan_requests(total: int, rate: float, load_clients: int, loaders: int, mix: list[tuple[str, float]],
                  k: int, seed: int = 1) -> list[Planned]:
    """Loader k's share of the run's `total` requests (the same draw in every process)."""
    rnd = random.Random(seed)
    names = [n for n, _ in mix]
    weights = [w for _, w in mix]
    methods = rnd.choices(names, weights, k=total)
    out = []
    for i in range(total):
        client = i % load_clients
        if owner(client, loaders) == k:
            out.append(Planned(i, i / rate, client, methods[i]))
    return out


def merge_fanout(parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One fan-out repetition seen by all loaders: {count, first, last} each -> the same, merged."""
    count, firsts, lasts = 0, [], []
    for p in parts:
        count += p["count"]
        if p["count"]:
            firsts.append(p["first"])
            lasts.append(p["last"])
    return {"count": count, "first": min(firsts) if firsts else None, "last": max(lasts) if lasts else None}


def verdict(target: float, achieved: float, late_p99_s: float | None, loader_cpu_pct: Sequence[float],
            events_expected: int = 0, events_received: int = 0, loader_wait_pct: Sequence[float] = (),
            server_wait_pct: float | None = None) -> dict[str, Any]:
    """Whether the run measured the server at the target rate, and if not what held it back:
    - "loader": a loader process used most of a core, or sent late while it had the cores;
    - "machine": the loaders sent late while waiting for a core (other processes held them), or the
      server waited for a core that long: neither side's own cost is what was measured;
    - "server": the loaders sent on time and the server had the cores, yet it did not keep up.
    """
    short = achieved < BELOW_TARGET * target
    lost = events_received < events_expected
    busiest = max(loader_cpu_pct, default=0.0)
    waited = max(loader_wait_pct, default=0.0)
    late = late_p99_s or 0.0
    if not short and not lost:
        why = f"achieved {achieved:.1f} of {target:g} req/s"
        if late > LATE_LOADER_S:  # the rate held, but the loaders' own delays are in the round trips
            why += (f"; but loader sends p99 {late * 1000:.0f} ms late (waited for a core up to {waited:.0f} % "
                    "of the time): round trips include the loaders' delays")
        return {"ok": True, "bound": None, "why": why}
    what = (f"achieved {achieved:.1f} of {target:g} req/s" if short else
            f"events {events_received} of {events_expected} delivered")
    loaders = (f"loader sends p99 {late * 1000:.0f} ms late, busiest loader {busiest:.0f} % of a core, "
               f"waited for a core up to {waited:.0f} % of the time")
    if busiest >= BUSY_LOADER_PCT:
        return {"ok": False, "bound": "loader", "why": f"{what}; {loaders}"}
    if late > LATE_LOADER_S and waited >= STARVED_PCT:
        return {"ok": False, "bound": "machine", "why": f"{what}; {loaders}"}
    if late > LATE_LOADER_S:
        return {"ok": False, "bound": "loader", "why": f"{what}; {loaders}"}
    if server_wait_pct is not None and server_wait_pct >= STARVED_PCT:
        return {"ok": False, "bound": "machine",
                "why": f"{what}; loaders on time, the server waited for a core {server_wait_pct:.0f} % of the time"}
    return {"ok": False, "bound": "server", "why": f"{what}; loaders on time ({loaders})"}


def merge_steady(parts: Sequence[dict[str, Any]], target_rate: float, duration: float, t0: float,
                 loader_cpu_pct: Sequence[float] = (), subscribers: int = 0, loader_wait_pct: Sequence[float] = (),
                 server_wait_pct: float | None = None) -> dict[str, Any]:
    """Every loader's steady-phase report -> one, with percentiles over the merged samples.

    A part: {"lat": {method: [s, ...]}, "errors": {key: n}, "late": [s, ...], "sent": n,
    "last_sent": t, "last_done": t, "unfinished": n, "events": n, "created_ok": n}, times on the
    shared monotonic clock. Achieved rate = completed requests / (last completion - T0) over all
    loaders, that span at least the configured duration; send rate = sent / (last send - T0 + one interval).
    """
    lat: dict[str, list[float]] = collections.defaultdict(list)
    errors: collections.Counter[str] = collections.Counter()
    late: list[float] = []
    sent = unfinished = events = created_ok = 0
    last_sent, last_done = t0, t0
    for p in parts:
        for m, v in p["lat"].items():
            lat[m].extend(v)
        errors.update(p["errors"])
        late.extend(p["late"])
        sent += p["sent"]
        unfinished += p["unfinished"]
        events += p["events"]
        created_ok += p["created_ok"]
        last_sent = max(last_sent, p["last_sent"] or t0)
        last_done = max(last_done, p["last_done"] or t0)
    ok = sum(len(v) for v in lat.values())
    all_lat = [x for v in lat.values() for x in v]
    elapsed = max(last_done - t0, duration)  # the plan's own span at least: its last send is due 1/rate early
    achieved = ok / elapsed
    send_rate = sent / (last_sent - t0 + 1 / target_rate) if sent else 0.0
    late_p99 = pct(late, 99)
    expected = created_ok * subscribers
    return {
        "target_rate": target_rate, "duration_s": duration, "loaders": len(parts),
        "sent": sent, "ok": ok, "errors": dict(errors), "unfinished": unfinished,
        "achieved_rate": round(achieved, 1), "send_rate": round(send_rate, 1), "elapsed_s": round(elapsed, 2),
        "sched_late_p99_ms": ms(late_p99),
        "rtt_all_p50_ms": ms(pct(all_lat, 50)), "rtt_all_p99_ms": ms(pct(all_lat, 99)),
        "rtt": {m: {"n": len(v), "p50_ms": ms(pct(v, 50)), "p99_ms": ms(pct(v, 99)), "max_ms": ms(max(v))}
                for m, v in sorted(lat.items()) if v},
        "events_expected": expected, "events_received": events,
        "event_deliveries_per_s": round(events / elapsed, 0),
        "verdict": verdict(target_rate, achieved, late_p99, loader_cpu_pct, expected, events, loader_wait_pct,
                           server_wait_pct),
    }
