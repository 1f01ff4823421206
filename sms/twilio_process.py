"""Twilio with its API calls in a worker process (sms/api_worker/): the Provider contract in the
gateway, the creates and lookups (the twilio library, its HTTP client, aiohttp's client: a quarter
of the gateway's Python at 500 messages/s) on another core.

    provider = TwilioProcessProvider(sid, token, from_number=..., public_url=..., max_connections=100)
    await provider.start(on_receipt, on_inbound)    # spawns the worker, waits for it to be ready
    submitted = await provider.send("m-1", "+15005550006", "+15551234567", "hello")

The webhooks (`webhook_routes()`, signatures checked with the auth token) are served here, as by
`TwilioProvider` (they are its `TwilioWebhooks`). `send()` and `find_sent()` are requests to the
worker over its stdin/stdout (sms/api_ipc.py), each request of one loop iteration in one write; a
`ProviderError` raised there arrives here as a `ProviderError` with the same status_code,
retryable, maybe_sent and details.

Supervision, as for the SIP workers (sip/worker_process.py):
- at most `max_pending` requests at the worker; beyond, a request is refused at once (429, not sent);
- the worker dying (kill -9, a crash) or stalling (no answer to a ping for `stall_s`, or a request
  unanswered `timeout_s + stall_s` after it went out: the worker's own deadline is `timeout_s`)
  fails every request in flight with `ProviderError(maybe_sent=True)`, retryable: the outbox looks
  the message up (`find_sent`) before it sends it again. A stalled worker is killed (SIGKILL);
- it is started again, after 0.2 s, doubling up to 5 s while it keeps dying young; a request made
  while it is down waits for it up to `timeout_s`, then fails (retryable, not sent);
- its stderr (its structlog JSON lines) is logged here again, with its pid;
- `stop()` asks it to end and kills it after `STOP_TIMEOUT`; it dies with the gateway anyway
  (PR_SET_PDEATHSIG, sip/lifeline.py), even on the gateway's kill -9.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from gateway.tasks import OwnedTasks
from sip.lifeline import terminate_child
from sms import api_ipc
from sms.provider import OnInbound, OnReceipt, ProviderError, Remote, Submitted
from sms.twilio import TwilioWebhooks, _parse_since

log = structlog.get_logger("sms.twilio_process")

START_TIMEOUT = 15.0
STOP_TIMEOUT = 3.0
HEARTBEAT_S = 1.0  # a ping when nothing was heard from the worker for this long
WATCH_S = 0.25  # how often deadlines and silence are checked (one timer, not one per request)
STABLE_S = 10.0  # a worker that lived this long restarts after the first delay again
FIRST_DELAY_S, MAX_DELAY_S = 0.2, 5.0


class _Worker:
    """One run of the worker process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.ready: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.up = False
        self.started_at = 0.0
        self.heard_at = 0.0  # loop time of its last message
        self.stalled = ""  # why we killed it


class TwilioProcessProvider:
    """The Provider contract (sms.provider) with Twilio's API calls in sms.api_worker."""

    name = "twilio"
    can_list = True

    def __init__(self, account_sid: str, auth_token: str, *, from_number: str, api_base: str, public_url: str,
                 timeout_s: float = 10, max_connections: int = 20, stall_s: float = 5.0,
                 log_level: str = "info", python: str = sys.executable) -> None:
        if timeout_s <= 0 or stall_s <= 0:
            raise ValueError("timeout_s and stall_s must be > 0")
        self.webhooks = TwilioWebhooks(auth_token, public_url)
        self.timeout_s, self.stall_s = timeout_s, stall_s
        self.max_pending = max(100, 2 * max_connections)
        self._config = {"account_sid": account_sid, "auth_token": auth_token, "from_number": from_number,
                        "api_base": api_base, "public_url": self.webhooks.public_url, "timeout_s": timeout_s,
                        "max_connections": max_connections, "max_pending": self.max_pending,
                        "log_level": log_level}
        self._account_sid = account_sid
        self._python = python
        self._worker: _Worker | None = None
        self._pending: dict[int, tuple[asyncio.Future[Any], float]] = {}  # id -> (reply, loop time sent)
        self._ids = itertools.count(1)
        self._out = bytearray()
        self._flushing = False
        self._up: asyncio.Event | None = None
        self._first: asyncio.Task[None] | None = None  # the first spawn (start() or the first request)
        self._tasks = OwnedTasks()
        self._stopping = False
        self._delay = FIRST_DELAY_S / 2  # doubled at a death: the first restart waits FIRST_DELAY_S
        self.restarts = 0
        self.down_cause: str | None = "not started"

    def __repr__(self) -> str:  # never the token
        return f"TwilioProcessProvider(account_sid={self._account_sid!r}, public_url={self.webhooks.public_url!r})"

    @property
    def unavailable(self) -> str | None:
        """Why the API worker cannot take requests now (None: it can): the KPI probe's `sms` part."""
        return self.down_cause

    @property
    def pid(self) -> int | None:
        w = self._worker
        return w.proc.pid if w is not None and w.up else None

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, on_receipt: OnReceipt, on_inbound: OnInbound) -> None:
        """Have the worker running (a worker that cannot start is a `ProviderError`: the gateway
        does not start with a provider it cannot use), then take webhooks."""
        await self._started()
        self.webhooks.start(on_receipt, on_inbound)

    async def _started(self) -> None:
        """Spawn the worker once, on the first need: the outbox reconciles what a crash left in
        `sending` (find_sent) before it starts the provider, as it may with `TwilioProvider`."""
        if self._first is None:
            self._stopping = False
            self._up = asyncio.Event()
            self._first = asyncio.get_running_loop().create_task(self._spawn(), name="sms.api_worker.spawn")
        await asyncio.shield(self._first)

    async def stop(self) -> None:
        self._stopping = True
        self.webhooks.stop()
        if self._first is not None and not self._first.done():
            self._first.cancel()
            await asyncio.gather(self._first, return_exceptions=True)
        w = self._worker
        if w is not None:  # it ignores SIGTERM by design: asked by its shutdown frame
            await terminate_child(w.proc, STOP_TIMEOUT, ask=lambda: self._ask_to_stop(w), own_session=False)
        await self._tasks.cancel_all()
        self._fail_pending("the gateway is stopping")
        self.down_cause = "stopped"

    # --- the API: requests to the worker ------------------------------------------------------

    async def send(self, message_id: str, sender: str, to: str, body: str) -> Submitted:
        rid = next(self._ids)
        result = await self._request(rid, api_ipc.send_request(rid, message_id, sender, to, body))
        return api_ipc.submitted_from_wire(result)

    async def find_sent(self, to: str, since_iso: str) -> list[Remote]:
        _parse_since(since_iso)  # a bad time is our caller's ValueError, as in-process
        rid = next(self._ids)
        return api_ipc.remotes_from_wire(await self._request(rid, api_ipc.find_request(rid, to, since_iso)))

    async def _request(self, rid: int, frame: bytes) -> Any:
        w = self._worker
        if w is None or not w.up:
            if self._first is None and not self._stopping:
                await self._started()
            await self._wait_up()
        if len(self._pending) >= self.max_pending:
            raise ProviderError("sms api worker: too many requests at once", status_code=429, maybe_sent=False,
                                details={"error": "api-worker-busy"})
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._pending[rid] = (fut, loop.time())
        self._out += frame
        if not self._flushing:
            self._flushing = True
            loop.call_soon(self._flush)
        try:
            return await fut
        finally:
            self._pending.pop(rid, None)

    async def _wait_up(self) -> None:
        if self._stopping or self._up is None:
            raise ProviderError("sms api worker is not running", error="connection", maybe_sent=False,
                                details={"error": "api-worker-down"})
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._up.wait()
        except TimeoutError:
            raise ProviderError(f"sms api worker is not running: {self.down_cause}", error="connection",
                                maybe_sent=False, details={"error": "api-worker-down"}) from None

    def _flush(self) -> None:
        """Every request of this loop iteration in one write."""
        self._flushing = False
        data, self._out = self._out, bytearray()
        w = self._worker
        if not data or w is None or w.proc.stdin is None or w.proc.stdin.is_closing():
            return  # the worker is gone: its reader fails what was pending
        w.proc.stdin.write(data)

    def _ask_to_stop(self, w: _Worker) -> None:
        """What is queued for the worker, then its shutdown frame; it ends when it has read it."""
        self._flush()
        assert w.proc.stdin is not None
        w.proc.stdin.write(api_ipc.SHUTDOWN)
        w.proc.stdin.close()

    def _fail_pending(self, why: str) -> None:
        """Every request in flight fails as one that may have been sent: looked up before a resend."""
        pending = list(self._pending.values())
        self._pending.clear()
        err = ProviderError(f"sms api worker: {why}", error="connection", maybe_sent=True,
                            details={"error": "api-worker-lost"})
        for fut, _ in pending:
            if not fut.done():
                fut.set_exception(err)

    # --- the worker process -------------------------------------------------------------------

    async def _spawn(self, restart: bool = False) -> None:
        proc = await asyncio.create_subprocess_exec(
            self._python, "-m", "sms.api_worker", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=str(Path(__file__).resolve().parent.parent), limit=1 << 20)
        w = self._worker = _Worker(proc)
        assert proc.stdin is not None
        proc.stdin.write(api_ipc.encode_control({"config": {**self._config, "parent_pid": os.getpid()}}))
        self._tasks.spawn(self._read(w), "sms.api_worker.read")
        self._tasks.spawn(self._log_stderr(w), "sms.api_worker.stderr")
        try:
            async with asyncio.timeout(START_TIMEOUT):
                ready = await w.ready
        except (TimeoutError, ProviderError) as exc:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise ProviderError(f"sms api worker did not start: {exc!r}", error="connection", maybe_sent=False,
                                details={"error": "api-worker-down"}) from None
        loop = asyncio.get_running_loop()
        w.up, w.started_at, w.heard_at = True, loop.time(), loop.time()
        self.down_cause = None
        self.restarts += restart
        assert self._up is not None
        self._up.set()
        self._tasks.spawn(self._watch(w), "sms.api_worker.watch")
        log.info("sms.api_worker.up", pid=ready.get("pid"), restarts=self.restarts)

    async def _read(self, w: _Worker) -> None:
        assert w.proc.stdout is not None
        decoder = api_ipc.Decoder()
        loop = asyncio.get_running_loop()
        pending = self._pending
        try:
            while data := await w.proc.stdout.read(65536):
                w.heard_at = loop.time()
                for msg in decoder.feed(data):
                    m = msg.data  # type: ignore[union-attr]
                    rid = m.get("id")
                    if rid is not None:
                        entry = pending.pop(rid, None)
                        if entry is not None and not entry[0].done():
                            if "ok" in m:
                                entry[0].set_result(m["ok"])
                            else:
                                entry[0].set_exception(api_ipc.error_from_wire(m.get("error")))
                    elif m.get("type") == "ready" and not w.ready.done():
                        w.ready.set_result(m)
        except api_ipc.IpcProtocolError:
            log.exception("sms.api_worker.bad_frame", pid=w.proc.pid, killing=True)
            with contextlib.suppress(ProcessLookupError):
                w.proc.kill()
        finally:
            await self._gone(w)

    async def _gone(self, w: _Worker) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(w.proc.wait(), 2)
        was_up, w.up = w.up, False
        if not w.ready.done():
            w.ready.set_exception(ProviderError(f"exited (rc {w.proc.returncode})", error="connection"))
        if self._worker is not w or not was_up:
            return  # never ready: whoever spawned it reports that
        assert self._up is not None
        self._up.clear()
        why = f"stalled ({w.stalled}) and was killed" if w.stalled else "exited"
        self.down_cause = f"sms api worker {why} (rc {w.proc.returncode})"
        lost = len(self._pending)
        self._fail_pending(f"{why} (rc {w.proc.returncode})")
        if self._stopping:
            return
        lived = asyncio.get_running_loop().time() - w.started_at
        self._delay = FIRST_DELAY_S if lived >= STABLE_S else min(max(self._delay * 2, FIRST_DELAY_S), MAX_DELAY_S)
        log.warning("sms.api_worker.died", pid=w.proc.pid, rc=w.proc.returncode, stalled=w.stalled or None,
                    requests_lost=lost, restart_in_s=self._delay)
        self._tasks.spawn(self._restart(), "sms.api_worker.restart")

    async def _restart(self) -> None:
        delay = self._delay
        while not self._stopping:
            await asyncio.sleep(delay)
            try:
                await self._spawn(restart=True)
            except ProviderError as exc:
                delay = self._delay = min(delay * 2, MAX_DELAY_S)
                log.warning("sms.api_worker.restart_failed", error=str(exc), retry_in_s=delay)
                continue
            return

    async def _watch(self, w: _Worker) -> None:
        """Ping when the worker has been quiet `HEARTBEAT_S`; kill it when it has been silent for
        `stall_s`, or the oldest request has waited `timeout_s + stall_s` (it answers every
        request within `timeout_s`, its own deadline)."""
        loop = asyncio.get_running_loop()
        while w.up and self._worker is w:
            slept_at = loop.time()
            await asyncio.sleep(WATCH_S)
            now = loop.time()
            if now - slept_at > WATCH_S + self.stall_s / 2:  # our own loop was stuck, not the worker
                w.heard_at = max(w.heard_at, now - WATCH_S)
            if not w.up or self._worker is not w:
                return
            oldest = next(iter(self._pending.values()), None)
            if oldest is not None and now - oldest[1] > self.timeout_s + self.stall_s:
                self._kill_stalled(w, f"a request unanswered for {now - oldest[1]:.1f} s")
                return
            if now - w.heard_at > self.stall_s:
                self._kill_stalled(w, f"silent for {now - w.heard_at:.1f} s")
                return
            if now - w.heard_at > HEARTBEAT_S:
                self._out += api_ipc.PING
                self._flush()

    def _kill_stalled(self, w: _Worker, why: str) -> None:
        if w.proc.returncode is not None or w.stalled:
            return
        w.stalled = why
        log.warning("sms.api_worker.stalled", pid=w.proc.pid, why=why, requests=len(self._pending), killing=True)
        with contextlib.suppress(ProcessLookupError):
            w.proc.kill()  # SIGKILL by pid: a stopped process too

    async def _log_stderr(self, w: _Worker) -> None:
        """The worker's log lines (JSON), logged here at their level with its pid; any other line
        (a traceback of a crash) as `sms.api_worker.stderr`."""
        assert w.proc.stderr is not None
        pid = w.proc.pid
        while line := await w.proc.stderr.readline():
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                _relog(text, pid)

    def webhook_routes(self) -> list[tuple[str, str, Callable[..., Any]]]:
        return self.webhooks.routes()


_DROP = ("event", "level", "timestamp", "logger")


def _relog(text: str, pid: int) -> None:
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("event"), str):
        log.warning("sms.api_worker.stderr", pid=pid, line=text)
        return
    level = logging.getLevelName(str(record.get("level", "info")).upper())
    fields = {k: v for k, v in record.items() if k not in _DROP}
    log.log(level if isinstance(level, int) else logging.INFO, record["event"], worker_pid=pid, **fields)
