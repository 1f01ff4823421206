"""One load-generator process of benchmarks/control_channel.py: a slice of the clients.

`benchmarks.control_channel` starts `--loaders` of these (multiprocessing, spawn) and drives them
phase by phase over a pipe: each command is a (name, args) tuple, each answer a dict. A loader owns
the clients whose number c has c % loaders == k (benchmarks/control_stats.py), connects and
subscribes them, stamps the arrival of every event frame on CLOCK_MONOTONIC (one clock for all
processes, see control_stats), and runs its share of the open-loop request plan against the common
T0 the coordinator hands out.

Per event frame a subscriber does the least it can: websockets has framed and decoded it; its seq is
read from the frame's fixed prefix (control_stats.event_seq) and only the first frame of each seq
in this process is decoded in full (a seq names one event of the store, so its type and session id
are the same in every copy). Replies and frames of any other shape go through GatewayClient's normal
path.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from multiprocessing.connection import Connection
from typing import Any

import structlog

from benchmarks.control_stats import Planned, event_seq, plan_requests
from gateway.client import GatewayClient


class Bench:
    """What this process's subscribers received: per event seq its (type, session id), per session
    the count and first/last arrival of its `session.state` frames."""

    def __init__(self) -> None:
        self.n = 0  # subscribers in this process
        self.events = 0
        self.overflows = 0
        self.gaps = 0
        self.decoded = 0  # frames decoded in full
        self.kinds: dict[int, tuple[str, str | None]] = {}
        self.arrivals: dict[str, list[float]] = {}  # session_id -> [count, first, last]
        self.waiters: dict[str, asyncio.Event] = {}

    def on_frame(self, client: "BenchClient", seq: int, frame: str | None, params: dict | None,
                 now: float) -> None:
        kind = self.kinds.get(seq)
        if kind is None:
            if params is None:
                self.decoded += 1
                params = json.loads(frame)["params"]  # type: ignore[arg-type]
            sid = params.get("session_id") or (params.get("data") or {}).get("session_id")
            self.kinds[seq] = kind = (params.get("type"), sid)
        if kind[0] == "events.overflow":
            self.overflows += 1
            return
        self.events += 1
        if client.last_seq is not None and seq != client.last_seq + 1:
            self.gaps += 1
        client.last_seq = seq
        if kind[0] == "session.state" and kind[1] is not None:
            a = self.arrivals.get(kind[1])
            if a is None:
                self.arrivals[kind[1]] = a = [0, now, now]
            a[0] += 1
            a[2] = now
            if a[0] >= self.n:
                w = self.waiters.get(kind[1])
                if w is not None:
                    w.set()


class BenchClient(GatewayClient):
    """Stamps each event frame's arrival as it is handed over; no consumer queue."""

    bench: Bench

    def _on_text(self, frame: str) -> None:
        now = time.monotonic()
        seq = event_seq(frame)
        if seq is None:
            super()._on_text(frame)  # a reply, or an event in another shape (-> _on_event)
        else:
            self.bench.on_frame(self, seq, frame, None, now)

    def _on_event(self, params: dict) -> None:
        seq = params.get("seq")
        if isinstance(seq, int):
            self.bench.on_frame(self, seq, None, params, time.monotonic())


class Loader:
    def __init__(self, k: int, loaders: int, url: str, token: str) -> None:
        self.k, self.loaders, self.url, self.token = k, loaders, url, token
        self.bench = Bench()
        self.clients: dict[int, BenchClient] = {}  # global client number -> connected client

    async def connect(self, numbers: list[int], concurrency: int) -> dict[str, Any]:
        sem = asyncio.Semaphore(concurrency)
        lat: list[float] = []
        failures: collections.Counter[str] = collections.Counter()

        async def one(i: int) -> None:
            async with sem:
                t = time.monotonic()
                try:
                    c = BenchClient(self.url, self.token, client_name=f"bench-{i}", reconnect=False, call_timeout=30)
                    c.bench = self.bench
                    await c.open()
                    await c.subscribe(c.hello["seq"])
                except Exception as exc:  # counted and reported, the run goes on
                    failures[type(exc).__name__] += 1
                    return
                lat.append(time.monotonic() - t)
                self.clients[i] = c

        await asyncio.gather(*(one(i) for i in numbers))
        self.bench.n = len(self.clients)
        return {"connected": len(self.clients), "failed": dict(failures), "lat": lat}

    async def trigger(self, title: str) -> dict[str, Any]:
        """The fan-out's request, from this process's first client: its session id and times."""
        c = self.clients[min(self.clients)]
        t0 = time.monotonic()
        res = await c.call("session.create", title=title)
        return {"sid": res["session_id"], "t0": t0, "t_reply": time.monotonic()}

    async def wait_fanout(self, sid: str, timeout: float) -> dict[str, Any]:
        """Wait (bounded) until every client here has that session's event; count, first, last."""
        b = self.bench
        a = b.arrivals.get(sid)
        if not (a and a[0] >= b.n) and b.n:
            w = b.waiters.setdefault(sid, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await w.wait()
            b.waiters.pop(sid, None)
        a = b.arrivals.get(sid) or [0, None, None]
        return {"count": a[0], "first": a[1], "last": a[2]}

    async def steady(self, plan: list[Planned], t0: float, drain_timeout: float) -> dict[str, Any]:
        """Run this process's planned requests, each at t0 + due (open loop)."""
        lat: dict[str, list[float]] = collections.defaultdict(list)
        errors: collections.Counter[str] = collections.Counter()
        late: list[float] = []
        tasks: set[asyncio.Task] = set()
        state = {"created_ok": 0, "last_done": None}
        self.events_before = self.bench.events

        async def one(c: BenchClient, p: Planned) -> None:
            params: dict[str, Any] = {"title": f"load-{p.i}"} if p.method == "session.create" else {}
            t = time.monotonic()
            try:
                await c.call(p.method, **params)
            except Exception as exc:
                errors[f"{p.method}:{type(exc).__name__}:{getattr(exc, 'reason', '')}"] += 1
                return
            done = time.monotonic()
            lat[p.method].append(done - t)
            state["last_done"] = done
            if p.method == "session.create":
                state["created_ok"] += 1

        loop = asyncio.get_running_loop()
        last_sent = None
        for p in plan:
            due = t0 + p.due_s
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic()
            late.append(max(0.0, now - due))
            c = self.clients.get(p.client)
            if c is None:
                errors[f"{p.method}:not-connected"] += 1
                continue
            last_sent = now
            task = loop.create_task(one(c, p))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(set(tasks), timeout=drain_timeout)
        unfinished = len(tasks)
        for t in list(tasks):
            t.cancel()
        return {"lat": dict(lat), "errors": dict(errors), "late": late, "sent": len(late),
                "last_sent": last_sent, "last_done": state["last_done"], "unfinished": unfinished,
                "created_ok": state["created_ok"], "events": 0}

    async def drain(self, expected_per_client: int, timeout: float) -> dict[str, Any]:
        """Wait (bounded) for the steady load's events to reach every client here."""
        expected = expected_per_client * self.bench.n
        deadline = time.monotonic() + timeout
        while self.bench.events - self.events_before < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        return {"events": self.bench.events - self.events_before}

    def totals(self) -> dict[str, Any]:
        b = self.bench
        return {"events_received": b.events, "overflows": b.overflows, "seq_gaps": b.gaps,
                "frames_decoded": b.decoded, "still_connected": sum(c.connected for c in self.clients.values())}

    async def close(self, concurrency: int) -> dict[str, Any]:
        sem = asyncio.Semaphore(concurrency)

        async def one(c: BenchClient) -> None:
            async with sem:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(10):
                        await c.close()

        t = time.monotonic()
        await asyncio.gather(*(one(c) for c in self.clients.values()))
        return {"close_s": time.monotonic() - t}


async def _serve(conn: Connection, k: int, loaders: int, url: str, token: str) -> None:
    loader = Loader(k, loaders, url, token)
    loop = asyncio.get_running_loop()
    while True:
        name, args = await loop.run_in_executor(None, conn.recv)
        if name == "stop":
            conn.send({})
            return
        try:
            if name == "steady":
                plan = plan_requests(args["total"], args["rate"], args["load_clients"], loaders,
                                     args["mix"], k, args.get("seed", 1))
                answer = await loader.steady(plan, args["t0"], args["drain_timeout"])
            elif name == "totals":
                answer = loader.totals()
            else:
                answer = await getattr(loader, name)(**args)
        except Exception as exc:  # the coordinator raises it, naming this loader
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        conn.send(answer)


def loader_main(conn: Connection, k: int, loaders: int, url: str, token: str) -> None:
    """The process's entry point (multiprocessing target)."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        asyncio.run(_serve(conn, k, loaders, url, token))
    finally:
        conn.close()

