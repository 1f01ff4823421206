"""One load-generator process of benchmarks/control_channel.py: a slice of the clients.

`benchmarks.control_channel` starts `--loaders` of these (multiprocessing, spawn) and drives them
phase by phase over a pipe: each command is a (name, args) tuple, each answer a dict. A loader owns
the clients whose number c has c % loaders == k (benchmarks/control_stats.py), connects and
subscribes them, stamps the arrival of every event frame on CLOCK_MONOTONIC (one clock for all
processes, see control_stats), and runs its share of the open-loop request plan against the common
T0 the coordinator hands out.

Per event frame a subscriber does the least it can. The clients that send load are GatewayClients
(`BenchClient`); the others, by default, are `LeanSubscriber`s: websockets' sans-I/O protocol on a
bare transport, with no reader task, future or queue per frame. Either way an event's seq is read
from the frame's fixed prefix (control_stats.event_seq) and only the first frame of each seq in
this process is decoded in full (a seq names one event of the store, so its type and session id
are the same in every copy); replies and frames of any other shape are decoded as usual.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import time
from multiprocessing.connection import Connection
from typing import Any

import structlog
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from benchmarks.control_stats import Planned, event_seq, plan_requests
from gateway.client import GatewayClient
from gateway.protocol import codec


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

    def on_frame(self, client: "BenchClient | LeanSubscriber", seq: int, frame: str | None, params: dict | None,
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


class LeanSubscriber(asyncio.Protocol):
    """A subscriber that only stamps event arrivals: websockets' sans-I/O ClientProtocol on a bare
    asyncio transport, so a frame costs one data_received and one parse, with no reader task woken,
    no future and no message queue per frame (what GatewayClient's connection pays). It says hello
    and subscribes like any client, answers pings (the protocol queues the pong) and offers no
    compression. Used for the clients that send no load; GatewayClient for the others.
    """

    def __init__(self, url: str, token: str, name: str, bench: Bench) -> None:
        self.url, self.token, self.name, self.bench = url, token, name, bench
        self.protocol = ClientProtocol(parse_uri(url), max_size=1 << 20)
        self.transport: asyncio.Transport | None = None
        self.last_seq: int | None = None
        self.lost = asyncio.get_running_loop().create_future()
        self._opened = asyncio.get_running_loop().create_future()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}

    @property
    def connected(self) -> bool:
        return not self.lost.done() and self.protocol.state is State.OPEN

    async def open(self) -> None:
        host, port = self.protocol.uri.host, self.protocol.uri.port
        await asyncio.get_running_loop().create_connection(lambda: self, host, port)
        try:
            async with asyncio.timeout(30):
                await self._opened
                hello = await self.call("hello", {"token": self.token, "client": self.name})
                await self.call("events.subscribe", {"since_seq": hello["seq"]})
        except BaseException:
            assert self.transport is not None
            self.transport.close()
            raise

    async def call(self, method: str, params: dict) -> dict:
        req_id = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        self.protocol.send_text(codec.encode_request(req_id, method, params).encode())
        self._flush()
        resp = await fut
        if resp.error is not None:
            raise RuntimeError(f"{method}: {resp.error}")
        return resp.result

    async def close(self) -> None:
        if self.connected:
            self.protocol.send_close()
            self._flush()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await asyncio.shield(self.lost)
        if self.transport is not None:
            self.transport.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.protocol.send_request(self.protocol.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.protocol.receive_data(data)
        for ev in self.protocol.events_received():
            if isinstance(ev, Frame):
                if ev.opcode is Opcode.TEXT:
                    self._on_text(ev.data.decode(), now)
            elif not self._opened.done():  # the handshake's response
                if self.protocol.state is State.OPEN:
                    self._opened.set_result(None)
                else:
                    self._opened.set_exception(ConnectionError(f"handshake: {self.protocol.handshake_exc}"))
        self._flush()

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        for fut in (self._opened, *self._pending.values()):
            if not fut.done():
                fut.set_exception(ConnectionError("connection lost"))

    def _on_text(self, frame: str, now: float) -> None:
        seq = event_seq(frame)
        if seq is not None:
            self.bench.on_frame(self, seq, frame, None, now)
            return
        msg = codec.parse_response(frame)
        if isinstance(msg, codec.Response):
            fut = self._pending.pop(msg.id, None) if isinstance(msg.id, int) else None
            if fut is not None and not fut.done():
                fut.set_result(msg)
        elif isinstance(msg, codec.Notification) and isinstance(msg.params.get("seq"), int):
            self.bench.on_frame(self, msg.params["seq"], None, msg.params, now)

    def _flush(self) -> None:
        if self.transport is None:
            return
        for data in self.protocol.data_to_send():
            if data:
                self.transport.write(data)
            elif self.transport.can_write_eof():
                self.transport.write_eof()  # the protocol's end of stream after a close


class Loader:
    def __init__(self, k: int, loaders: int, url: str, token: str) -> None:
        self.k, self.loaders, self.url, self.token = k, loaders, url, token
        self.bench = Bench()
        self.clients: dict[int, BenchClient] = {}  # global client number -> connected load client
        self.subscribers: dict[int, LeanSubscriber] = {}  # ... -> connected subscriber sending no load

    async def connect(self, numbers: list[int], concurrency: int, lean_from: int | None) -> dict[str, Any]:
        """Connect and subscribe clients `numbers`; those >= lean_from (None: none) as LeanSubscriber."""
        sem = asyncio.Semaphore(concurrency)
        lat: list[float] = []
        failures: collections.Counter[str] = collections.Counter()

        async def one(i: int) -> None:
            async with sem:
                t = time.monotonic()
                try:
                    if lean_from is not None and i >= lean_from:
                        sub = LeanSubscriber(self.url, self.token, f"bench-{i}", self.bench)
                        await sub.open()
                        self.subscribers[i] = sub
                        lat.append(time.monotonic() - t)
                        return
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
        self.bench.n = len(self.clients) + len(self.subscribers)
        return {"connected": self.bench.n, "failed": dict(failures), "lat": lat}

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
                "frames_decoded": b.decoded,
                "still_connected": sum(c.connected for c in [*self.clients.values(), *self.subscribers.values()])}

    async def close(self, concurrency: int) -> dict[str, Any]:
        sem = asyncio.Semaphore(concurrency)

        async def one(c: BenchClient | LeanSubscriber) -> None:
            async with sem:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(10):
                        await c.close()

        t = time.monotonic()
        await asyncio.gather(*(one(c) for c in [*self.clients.values(), *self.subscribers.values()]))
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

