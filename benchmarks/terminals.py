"""Field-terminal benchmark: many terminals reporting positions to consoles, and one instruction
to hundreds of terminals acknowledged.

    python -m benchmarks.terminals [--terminals 1000] [--consoles 5] [--period 5] [--duration 30]
                                   [--instruct 500]

The gateway runs in its own process (benchmarks/gateway_process.py's `GatewayProcess`, with the
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
     time until the last `delivered` and the last `acknowledged` event reach console 0;
  4. silence (a cell outage that leaves the connections open): every terminal pings once, all at
     the same moment, then says nothing: time from the end of their heartbeat window
     (`heartbeat_interval_s` x `missed_heartbeats`) until console 0 has seen every terminal go
     offline;
  5. fallback: one `terminal.instruct` to `instruct` of the now offline terminals: time until
     console 0 has seen each go `fallback-sms` (no SMS provider is configured: each SMS is
     refused at once and the refusal recorded on the delivery; the store work is all there).
Prints a JSON summary.

    python -m benchmarks.terminals --auth-only [--terminals 1000]

measures only the token lookup each hello (and each upload) does, in this process: the gateway's
`TokenTable` beside the reference it replaced (every configured token compared in turn), with one
token per terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hmac
import json
import logging
import random
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import structlog

from benchmarks.control_stats import ms, pct
from benchmarks.gateway_process import TOKEN, GatewayProcess, raise_fd_limit, self_cpu_s
from gateway.client import GatewayClient
from gateway.protocol import Principal
from gateway.timeutil import now_iso
from gateway.tokens import TokenTable


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
        self.steps: dict[str, dict[str, float]] = {"delivered": {}, "acknowledged": {}, "fallback-sms": {},
                                                   "offline": {}}
        self.done = {step: asyncio.Event() for step in self.steps}
        self.expect = {step: 0 for step in self.steps}

    def on_event(self, console: int, params: dict, now: float) -> None:
        self.events[console] += 1
        data = params.get("data") or {}
        if params.get("type") == "terminal.location":
            self.locations[console] += 1
            t0 = self.sent.get((data.get("terminal_id"), data.get("time")))
            if t0 is not None:
                self.delays.append(now - t0)
        elif params.get("type") == "terminal.instruction" and console == 0:
            self._step(data.get("step"), data["terminal_id"], now)
        elif params.get("type") == "terminal.presence" and console == 0 and data.get("state") == "offline":
            self._step("offline", data["terminal_id"], now)

    async def wait(self, step: str, timeout: float) -> bool:
        """Until every expected terminal reached `step` (False when `timeout` ran out first)."""
        try:
            async with asyncio.timeout(timeout):
                await self.done[step].wait()
            return True
        except TimeoutError:
            return False

    def took(self, step: str, t0: float) -> float | None:
        """Seconds from `t0` to the last terminal seen reaching `step` (None: none did)."""
        seen = self.steps[step].values()
        return round(max(seen) - t0, 3) if seen else None

    def restart(self, step: str, expect: int) -> int:
        """Count `step` afresh, `expect` terminals; how many had reached it before."""
        before = len(self.steps[step])
        self.steps[step].clear()
        self.done[step].clear()
        self.expect[step] = expect
        return before

    def _step(self, step: str | None, terminal_id: str, now: float) -> None:
        seen = self.steps.get(step or "")
        if seen is not None and step is not None:
            seen.setdefault(terminal_id, now)
            if self.expect[step] and len(seen) >= self.expect[step]:
                self.done[step].set()


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
        "gateway_cpu_ms_per_report": round(1000 * (s1["cpu_s"] - s0["cpu_s"]) / max(1, len(rtts)), 2),
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
    tally.expect.update(delivered=n, acknowledged=n)
    t0, cpu0 = time.perf_counter(), gw.sample()["cpu_s"]
    reply = await consoles[0].call("terminal.instruct", targets=[tid(i) for i in range(n)],
                                   text="All units: report to the flood post", ack_timeout_s=600)
    replied = time.perf_counter() - t0
    await tally.wait("delivered", args.instruct_timeout)
    await tally.wait("acknowledged", args.instruct_timeout)
    out["instruct"] = {
        "terminals": n, "reply_ms": ms(replied),
        "all_delivered_s": tally.took("delivered", t0), "delivered": len(tally.steps["delivered"]),
        "all_acknowledged_s": tally.took("acknowledged", t0), "acknowledged": len(tally.steps["acknowledged"]),
        "gateway_cpu_s": round(gw.sample()["cpu_s"] - cpu0, 2),
        "terminals_state": collections.Counter(t["state"] for t in reply["terminals"]),
    }

    cpu0 = gw.sample()["cpu_s"]
    pinged = await asyncio.gather(*(c.call("ping") for c in terms), return_exceptions=True)
    quiet_from = time.perf_counter()  # the last ping answered: from now on nothing is heard
    online = sum(not isinstance(p, BaseException) for p in pinged)
    offline_before = tally.restart("offline", online)
    window = args.heartbeat * args.missed
    await tally.wait("offline", window + args.instruct_timeout)
    offline = list(tally.steps["offline"].values())
    out["silence"] = {
        "terminals": online, "window_s": window,
        "all_offline_after_window_s": round(max(offline) - quiet_from - window, 3) if offline else None,
        "offline_events": len(offline), "offline_before_the_silence": offline_before,
        "gateway_cpu_s": round(gw.sample()["cpu_s"] - cpu0, 2),
    }

    out["instruct"]["fallback_sms"] = tally.restart("fallback-sms", n)  # offline at the instruction
    t0, cpu0 = time.perf_counter(), gw.sample()["cpu_s"]
    reply = await consoles[0].call("terminal.instruct", targets=[tid(i) for i in range(n)],
                                   text="All units: report to the flood post")
    replied = time.perf_counter() - t0
    await tally.wait("fallback-sms", args.instruct_timeout)
    out["fallback"] = {
        "terminals": n, "reply_ms": ms(replied),
        "all_fallback_sms_s": tally.took("fallback-sms", t0), "fallback_sms": len(tally.steps["fallback-sms"]),
        "gateway_cpu_s": round(gw.sample()["cpu_s"] - cpu0, 2),
    }
    await asyncio.gather(*(c.close() for c in [*terms, *consoles]), return_exceptions=True)
    return out


def auth_lookups(terminals: int) -> dict:
    """Microseconds per lookup of a terminal's token among `terminals` + 1 tokens: `TokenTable`
    (by digest) and the full scan it replaced; and what a reconnect storm of every terminal costs."""
    tokens = {token(i): SimpleNamespace(principal=tid(i), role="terminal") for i in range(terminals)}
    tokens[TOKEN] = SimpleNamespace(principal="bench", role="dispatcher")
    table = TokenTable(tokens)
    scanned = [(t.encode(), Principal(i.principal, i.role)) for t, i in tokens.items()]

    def scan(given: str) -> Principal | None:  # the reference: constant time per token, no early exit
        found = None
        for known, principal in scanned:
            if hmac.compare_digest(given.encode(), known):
                found = principal
        return found

    probe = token(terminals // 2)
    assert scan(probe) == table.principal(probe) == Principal(tid(terminals // 2), "terminal")
    out = {"tokens": len(tokens)}
    for name, fn, n in (("digest", table.principal, 20_000), ("scan", scan, max(20, 200_000 // terminals))):
        t0 = time.perf_counter()
        for _ in range(n):
            fn(probe)
        each = (time.perf_counter() - t0) / n
        out[name] = {"us_per_lookup": round(each * 1e6, 2), "all_terminals_hello_s": round(each * terminals, 4)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.terminals", description=__doc__.split("\n")[0])
    p.add_argument("--terminals", type=int, default=1000)
    p.add_argument("--consoles", type=int, default=5)
    p.add_argument("--period", type=float, default=5.0, help="seconds between a terminal's reports")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of steady reporting")
    p.add_argument("--instruct", type=int, default=500, help="terminals the instruction goes to")
    p.add_argument("--instruct-timeout", type=float, default=120.0)
    p.add_argument("--heartbeat", type=float, default=10.0,
                   help="terminals.heartbeat_interval_s (more than --period)")
    p.add_argument("--missed", type=int, default=2, help="terminals.missed_heartbeats")
    p.add_argument("--location-interval", type=float, default=1.0,
                   help="terminals.location_interval_s (above --period: reports are coalesced)")
    p.add_argument("--log-level", default="info",
                   help="the gateway's log level (info: its start is read from its log)")
    p.add_argument("--json-out", default=None)
    p.add_argument("--auth-only", action="store_true", help="only the token lookup, in this process")
    p.add_argument("--profile-server", default=None, metavar="PATH",
                   help="run the gateway under cProfile, its stats written to PATH when it stops")
    args = p.parse_args(argv)
    if args.auth_only:
        print(json.dumps(auth_lookups(args.terminals), indent=2))
        return 0
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))  # the loader's
    raise_fd_limit(args.terminals + args.consoles + 1024)
    endpoints = ", ".join(f'{{name = "{tid(i)}", kind = "terminal", phone = "+86138{i:08d}"}}'
                          for i in range(args.terminals))
    tokens = ", ".join([f'"{TOKEN}" = {{principal = "bench", role = "dispatcher"}}'] +
                       [f'"{token(i)}" = {{principal = "{tid(i)}", role = "terminal"}}'
                        for i in range(args.terminals)])
    with tempfile.TemporaryDirectory(prefix="bench-terminals-") as tmp:
        prof = str(Path(args.profile_server).resolve()) if args.profile_server else None
        gw = GatewayProcess(Path(tmp), args.log_level, prof, extra={
            "directory.endpoint": f"[{endpoints}]", "auth.tokens": f"{{{tokens}}}",
            "terminals.heartbeat_interval_s": str(args.heartbeat),
            "terminals.missed_heartbeats": str(args.missed),
            "terminals.location_interval_s": str(args.location_interval)})
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
