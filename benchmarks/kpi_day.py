"""What the two indicators cost over a day of dispatch facts: `kpi.get` of the last 24 h, and the
/metrics gauges' refresh, on a real store (SQLite in a temp dir) seeded with N targets spread over
the day (calls, SMS, broadcast SIP targets, terminal instructions; about one in 20 missed).

    .venv/bin/python -m benchmarks.kpi_day --targets 100000 --repeat 5
    .venv/bin/python -m benchmarks.kpi_day --targets 100000 --days 30 --repeat 1

Side by side in one run: `kpi.get` over 24 h (what the /metrics gauges' refresh did once a minute
until session 22), the gauges' first refresh after a start, and each refresh after it
(gateway/kpi/rolling.py). Prints, as JSON: the seeding, and for each measured step the median wall time, the process CPU time
and the peak of Python's allocations during one call (tracemalloc, measured in a pass of its own so
that it does not slow the timed ones).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from gateway.kpi import facts
from gateway.kpi.config import KpiConfig
from gateway.kpi.gauges import WINDOW_S
from gateway.kpi.rolling import RollingTimeliness
from gateway.kpi.service import KpiService
from gateway.store import Store
from gateway.timeutil import epoch_to_iso

SHARES = (("call", 0.3), ("sms", 0.5), ("broadcast", 0.1), ("instruction", 0.1))
PER_BROADCAST = 10


def _rows(n: int, t0: float, span_s: float, rng: random.Random) -> dict[str, list[tuple]]:
    """The stored rows of `n` targets started in [t0, t0 + span_s), as the services write them."""
    out: dict[str, list[tuple]] = {"calls": [], "sms": [], "receipts": [], "broadcasts": [], "events": [],
                                   "instructions": [], "deliveries": []}
    counts = {ch: int(n * share) for ch, share in SHARES}
    at = lambda t: epoch_to_iso(t)  # noqa: E731
    for i in range(counts["call"]):
        s = t0 + rng.random() * span_s
        late = rng.random() < 0.05
        out["calls"].append((f"c{t0:.0f}-{i}", "outbound", f"sip:duty{i % 300}@district", at(s),
                             at(s + (45 if late else 4)), at(s + 120), 200, "local-hangup"))
    for i in range(counts["sms"]):
        s = t0 + rng.random() * span_s
        mid = f"m{t0:.0f}-{i}"
        ok = rng.random() >= 0.05
        out["sms"].append((mid, f"s{i // 100}", "+1000", f"+86138{i % 100000:08d}", "x",
                           "delivered" if ok else "undelivered", at(s), at(s + 6), None if ok else "30007"))
        if ok:
            out["receipts"].append(("twilio", f"SM{t0:.0f}{i}", "delivered", mid, at(s + 6)))
    for b in range(counts["broadcast"] // PER_BROADCAST):
        s = t0 + rng.random() * span_s
        bid = f"b{t0:.0f}-{b}"
        targets = [{"target": f"spk-{k}", "kind": "sip", "state": "ended"} for k in range(PER_BROADCAST)]
        out["broadcasts"].append((bid, at(s), at(s + 60), json.dumps({"targets": targets})))
        for k in range(PER_BROADCAST):
            data = json.dumps({"broadcast_id": bid, "target": f"spk-{k}", "state": "connected"})
            out["events"].append((at(s + (12 if rng.random() < 0.05 else 1)), data))
    for j in range(counts["instruction"] // 5):
        s = t0 + rng.random() * span_s
        iid = f"i{t0:.0f}-{j}"
        out["instructions"].append((iid, at(s)))
        for k in range(5):
            acked = None if rng.random() < 0.05 else at(s + 8)
            out["deliveries"].append((iid, f"unit-{k}", "acknowledged" if acked else "delivered", at(s), at(s + 1),
                                      acked))
    return out


async def seed(store: Store, n: int, t0: float, span_s: float, seed_: int = 1) -> int:
    rows = _rows(n, t0, span_s, random.Random(seed_))

    async def work(tx: Any) -> None:
        await tx.executemany("INSERT INTO calls (call_id, direction, remote_uri, created_at, answered_at, ended_at,"
                             " sip_code, cause) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows["calls"])
        await tx.executemany("INSERT INTO sms (message_id, send_id, sender, recipient, body, state, created_at,"
                             " updated_at, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows["sms"])
        await tx.executemany("INSERT INTO sms_receipts (provider, provider_id, status, message_id, received_at)"
                             " VALUES (?, ?, ?, ?, ?)", rows["receipts"])
        await tx.executemany("INSERT INTO broadcasts (broadcast_id, created_at, ended_at, extra)"
                             " VALUES (?, ?, ?, ?)", rows["broadcasts"])
        await tx.executemany("INSERT INTO events (type, time, data) VALUES ('broadcast.target', ?, ?)",
                             rows["events"])
        await tx.executemany("INSERT INTO terminal_instructions (instruction_id, text, require_ack, ack_timeout_s,"
                             " fallback, created_at) VALUES (?, 'go', 1, 60, 'none', ?)", rows["instructions"])
        await tx.executemany("INSERT INTO terminal_deliveries (instruction_id, terminal_id, state, queued_at,"
                             " delivered_at, acknowledged_at) VALUES (?, ?, ?, ?, ?, ?)", rows["deliveries"])

    await store.atomic(work)
    return len(rows["calls"]) + len(rows["sms"]) + len(rows["events"]) + len(rows["deliveries"])


async def measure(step: Callable[[], Awaitable[Any]], repeat: int) -> dict[str, float]:
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        await step()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    tracemalloc.start()
    await step()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"wall_s_median": round(statistics.median(walls), 4), "cpu_s_median": round(statistics.median(cpus), 4),
            "walls_s": [round(x, 4) for x in walls], "python_peak_mb": round(peak / 2**20, 2)}


async def run(a: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"targets_per_day": a.targets, "days": a.days, "repeat": a.repeat}
    with tempfile.TemporaryDirectory(prefix="bench-kpi-") as tmp:
        async with Store(Path(tmp) / "gw.db") as store:
            cfg = KpiConfig()
            now = time.time()
            await facts.start_run(store, cfg.deadlines(), epoch_to_iso(now - a.days * WINDOW_S - 3600))
            t = time.perf_counter()
            out["rows"] = 0
            for d in range(a.days):  # the day before each day: the older ones only for the long window
                out["rows"] += await seed(store, a.targets, now - (d + 1) * WINDOW_S, WINDOW_S, seed_=d + 1)
            out["seed_s"] = round(time.perf_counter() - t, 2)
            kpi = KpiService(store, cfg, tmp, {})
            # What /metrics' refresh did until session 22 (kpi.get of the last 24 h once a minute) ...
            out["kpi_get_24h"] = await measure(lambda: kpi.get(time.time() - WINDOW_S), a.repeat)
            # ... the gauges' refresh now: the first after a start (the day read an hour at a time) ...
            out["gauges_first_refresh"] = await measure(
                lambda: kpi.gauge_figures(RollingTimeliness(WINDOW_S), time.time()), a.repeat)
            # ... and each one after it (the open targets: the longest deadline and a minute of them).
            rolling = RollingTimeliness(WINDOW_S)
            await kpi.gauge_figures(rolling, time.time())
            out["gauges_refresh"] = await measure(lambda: kpi.gauge_figures(rolling, time.time()), a.repeat)
            if a.days > 1:  # kpi.get over every day seeded (an auditor's month)
                out[f"kpi_get_{a.days}d"] = await measure(lambda: kpi.get(time.time() - a.days * WINDOW_S), 1)
            out["ratios"] = {f"{k}_vs_kpi_get": round(out[k]["cpu_s_median"] / out["kpi_get_24h"]["cpu_s_median"], 4)
                             for k in ("gauges_first_refresh", "gauges_refresh")}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", type=int, default=100_000, help="dispatched targets over the day")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--days", type=int, default=1, help="days seeded, --targets each; >1: kpi.get over them all too")
    a = p.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))  # the store's info
    print(json.dumps(asyncio.run(run(a)), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
