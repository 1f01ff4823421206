"""Field-terminal benchmark: many terminals reporting positions to consoles, and one instruction
to hundreds of terminals acknowledged.

    python -m benchmarks.terminals [--terminals 1000] [--consoles 5] [--period 5] [--duration 30]
                                   [--instruct 500]

The gateway runs in its own process (benchmarks/control_channel.py's `GatewayProcess`, with the
terminals in its directory and one token each); the load generator (this process) shares the
machine's cores with it and its CPU is reported beside the gateway's.

Phases:
  1. connect: the consoles (subscribed to events), then every terminal (hello: online);
  2. steady: each terminal sends `terminal.report` every `period` s (staggered), for `duration` s,
     while console 0 asks `terminal.list` once a second: gateway CPU, report round trips, the
     delay from a report leaving a terminal to its `terminal.location` event reaching each
     console, events per console, `terminal.list` latency;
  3. instruct: one `terminal.instruct` to the first `instruct` terminals; every terminal client
     confirms (`terminal.received`) and then acknowledges (`terminal.ack`) as soon as it gets it:
     time until the last `delivered` and the last `acknowledged` event reach console 0.
Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog

from benchmarks.control_channel import TOKEN, GatewayProcess, ms, pct, raise_fd_limit, self_cpu_s
from gateway.client import GatewayClient
from gateway.timeutil import now_iso


def tid(i: int) -> str:
    return f"t{i:04d}"


def token(i: int) -> str:
    return f"bench-terminal-{i:04d}-token"


class Tally:
    def __init__(self, consoles: int) -> None:
        self.sent: dict[tuple[str, str], float] = {}  # (terminal, fix time) -> perf_counter at send
        self.delays: list[float] = []
        self.locations = [0] * consoles
        self.events = [0] * consoles
        self.steps: dict[str, dict[str, float]] = {"delivered": {}, "acknowledged": {}}
        self.done = {"delivered": asyncio.Event(), "acknowledged": asyncio.Event()}
        self.expect = 0

    def on_event(self, console: int, params: dict, now: float) -> None:
        self.events[console] += 1
        data = params.get("data") or {}
        if params.get("type") == "terminal.location":
            self.locations[console] += 1
            t0 = self.sent.get((data.get("terminal_id"), data.get("time")))
            if t0 is not None:
                self.delays.append(now - t0)
        elif params.get("type") == "terminal.instruction" and console == 0:
            seen = self.steps.get(data.get("step"))
            if seen is not None:
                seen.setdefault(data["terminal_id"], now)
                if self.expect and len(seen) >= self.expect:
                    self.done[data["step"]].set()


class Console(GatewayClient):
    tally: Tally
    index: int

    def _on_event(self, params: dict) -> None:
        self.tally.on_event(self.index, params, time.perf_counter())


class Terminal(GatewayClient):
    """Confirms each instruction (the base class does), then acknowledges it."""

    def _on_instruction(self, params: dict) -> None:
        fresh = params.get("instruction_id") not in self.instructions_seen
        super()._on_instruction(params)
        if fresh:
            self._spawn(self.ack(params["instruction_id"]))


async def report_loop(c: Terminal, i: int, tally: Tally, period: float, until: float, rtts: list[float],
                      errors: collections.Counter) -> None:
    await asyncio.sleep(random.uniform(0, period))
    while time.perf_counter() < until:
        t = now_iso()
        t0 = time.perf_counter()
        tally.sent[(tid(i), t)] = t0
        try:
            await c.report(31.2 + i / 10_000, 121.4, 8.0, time=t, battery=80.0)
            rtts.append(time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - counted, the run goes on
            errors[type(exc).__name__] += 1
        await asyncio.sleep(max(0.0, period - (time.perf_counter() - t0)))


async def run(args: argparse.Namespace, gw: GatewayProcess) -> dict:
    tally = Tally(args.consoles)
    out: dict[str, Any] = {"terminals": args.terminals, "consoles": args.consoles, "period_s": args.period,
                           "duration_s": args.duration}
    consoles = []
    for k in range(args.consoles):
        c = Console(gw.url, TOKEN, reconnect=False, call_timeout=60, event_queue=1_000_000)
        c.tally, c.index = tally, k
        await c.open()
        await c.subscribe(c.hello["seq"])
        consoles.append(c)
    sem = asyncio.Semaphore(100)

    async def connect(i: int) -> Terminal:
        async with sem:
            c = Terminal(gw.url, token(i), reconnect=False, call_timeout=60)
            await c.open()
            return c

    t0, cpu0 = time.perf_counter(), gw.sample()["cpu_s"]
    terms = await asyncio.gather(*(connect(i) for i in range(args.terminals)))
    out["connect_s"] = round(time.perf_counter() - t0, 2)
    out["connect_gateway_cpu_s"] = round(gw.sample()["cpu_s"] - cpu0, 2)
    await asyncio.sleep(1)  # the last presence events reach the consoles

    rtts: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    lists: list[float] = []
    until = time.perf_counter() + args.duration
    s0, loader0, t0 = gw.sample(), self_cpu_s(), time.perf_counter()
    events0 = list(tally.events)

    async def lister() -> None:
        while time.perf_counter() < until:
            t = time.perf_counter()
            roster = await consoles[0].terminals()
            lists.append(time.perf_counter() - t)
            out["roster_size"] = len(roster)
            await asyncio.sleep(1)

    await asyncio.gather(lister(), *(report_loop(c, i, tally, args.period, until, rtts, errors)
                                     for i, c in enumerate(terms)))
    wall = time.perf_counter() - t0
    await asyncio.sleep(2)  # trailing events
    s1 = gw.sample()
    out["steady"] = {
        "wall_s": round(wall, 1), "reports": len(rtts), "reports_per_s": round(len(rtts) / wall, 1),
        "errors": dict(errors),
        "gateway_cpu_pct": round(100 * (s1["cpu_s"] - s0["cpu_s"]) / wall, 1),
        "loader_cpu_pct": round(100 * (self_cpu_s() - loader0) / wall, 1),
        "gateway_rss_mb": s1["rss_mb"],
        "report_rtt_ms": {"p50": ms(pct(rtts, 50)), "p99": ms(pct(rtts, 99))},
        "report_to_console_ms": {"p50": ms(pct(tally.delays, 50)), "p99": ms(pct(tally.delays, 99)),
                                 "n": len(tally.delays)},
        "events_per_console": [e - e0 for e, e0 in zip(tally.events, events0)],
        "locations_per_console": tally.locations,
        "terminal_list_ms": {"p50": ms(pct(lists, 50)), "p99": ms(pct(lists, 99)), "n": len(lists)},
    }

    n = min(args.instruct, args.terminals)
    tally.expect = n
    t0, cpu0 = time.perf_counter(), gw.sample()["cpu_s"]
    reply = await consoles[0].call("terminal.instruct", targets=[tid(i) for i in range(n)],
                                   text="All units: report to the flood post", ack_timeout_s=600)
    replied = time.perf_counter() - t0
    async with asyncio.timeout(args.instruct_timeout):
        await tally.done["delivered"].wait()
        await tally.done["acknowledged"].wait()
    out["instruct"] = {
        "terminals": n, "reply_ms": ms(replied),
        "all_delivered_s": round(max(tally.steps["delivered"].values()) - t0, 3),
        "all_acknowledged_s": round(max(tally.steps["acknowledged"].values()) - t0, 3),
        "gateway_cpu_s": round(gw.sample()["cpu_s"] - cpu0, 2),
        "terminals_state": collections.Counter(t["state"] for t in reply["terminals"]),
    }
    await asyncio.gather(*(c.close() for c in [*terms, *consoles]), return_exceptions=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.terminals", description=__doc__.split("\n")[0])
    p.add_argument("--terminals", type=int, default=1000)
    p.add_argument("--consoles", type=int, default=5)
    p.add_argument("--period", type=float, default=5.0, help="seconds between a terminal's reports")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of steady reporting")
    p.add_argument("--instruct", type=int, default=500, help="terminals the instruction goes to")
    p.add_argument("--instruct-timeout", type=float, default=120.0)
    p.add_argument("--log-level", default="info",
                   help="the gateway's log level (info: its start is read from its log)")
    p.add_argument("--json-out", default=None)
    args = p.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))  # the loader's
    raise_fd_limit(args.terminals + args.consoles + 1024)
    endpoints = ", ".join(f'{{name = "{tid(i)}", kind = "terminal", phone = "+86138{i:08d}"}}'
                          for i in range(args.terminals))
    tokens = ", ".join([f'"{TOKEN}" = {{principal = "bench", role = "dispatcher"}}'] +
                       [f'"{token(i)}" = {{principal = "{tid(i)}", role = "terminal"}}'
                        for i in range(args.terminals)])
    with tempfile.TemporaryDirectory(prefix="bench-terminals-") as tmp:
        gw = GatewayProcess(Path(tmp), args.log_level, extra={
            "directory.endpoint": f"[{endpoints}]", "auth.tokens": f"{{{tokens}}}",
            "terminals.heartbeat_interval_s": str(max(10.0, args.period * 2))})
        gw.start()
        try:
            summary = asyncio.run(run(args, gw))
        finally:
            summary_stop = gw.stop()
        summary = {**summary, "stop": summary_stop, "log": gw.log_summary()}
    text = json.dumps(summary, indent=2, default=str)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
