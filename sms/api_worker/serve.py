"""The SMS API worker's main: the real `TwilioProvider`'s API side (the twilio library, `_HttpClient`
and its one connection pool of `max_connections`) behind the framed pipe of sms/api_ipc.py.

- stdin: requests; each `send` / `find` runs as a task of its own (at most `max_pending` at once:
  beyond it a request is refused at once with a 429 that was not sent, which the gateway's own
  bound never lets happen). A `ping` is answered at once: the gateway's liveness check.
- stdout: replies, every reply of one loop iteration coalesced into one write (as the SMPP
  session coalesces its PDUs: sms/smpp_session.py). Nothing else writes to fd 1: it is moved to a
  private fd and fd 1 points at stderr.
- stderr: our structlog lines (JSON), logged again by the gateway.
- A `shutdown` request or the end of stdin ends the process: requests still running are
  cancelled (the gateway has failed them already), the pool closed. SIGINT/SIGTERM to the whole
  process group are ignored (the gateway stops us in order), and we die with the gateway even on
  its `kill -9` (sip/lifeline.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import structlog

from gateway.logs import setup_logging
from sip.ipc import Control, read_message
from sip.lifeline import die_with_parent
from sms import api_ipc
from sms.provider import ProviderError
from sms.twilio import TwilioProvider

log = structlog.get_logger("sms.api_worker")

PONG = api_ipc.encode_control({"type": "pong"})


class ApiServer(asyncio.Protocol):
    """Reads requests from stdin, runs them against `provider`, writes the replies to `out`."""

    def __init__(self, provider: TwilioProvider, out: asyncio.WriteTransport, max_pending: int) -> None:
        self.provider = provider
        self.out = out
        self.max_pending = max_pending
        self.done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.tasks: set[asyncio.Task[None]] = set()
        self._decoder = api_ipc.Decoder()
        self._buf = bytearray()
        self._flushing = False

    # --- stdin ---------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        try:
            messages = self._decoder.feed(data)
        except api_ipc.IpcProtocolError:
            log.exception("sms.api_worker.bad_frame")
            self._finish("bad-frame")
            return
        for msg in messages:
            if isinstance(msg, Control):
                self._request(msg.data)

    def eof_received(self) -> bool | None:
        self._finish("stdin-closed")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish("stdin-closed")

    def _finish(self, why: str) -> None:
        if not self.done.done():
            self.done.set_result(why)

    def _request(self, m: dict[str, Any]) -> None:
        op, rid = m.get("op"), m.get("id")
        if op == "ping":
            self._reply(PONG)
            return
        if op == "shutdown":
            self._finish("shutdown")
            return
        if op not in ("send", "find") or not isinstance(rid, int):
            log.warning("sms.api_worker.bad_request", op=op)
            return
        if len(self.tasks) >= self.max_pending:
            self._reply(api_ipc.encode_error(rid, ProviderError(
                "sms api worker: too many requests at once", status_code=429, maybe_sent=False,
                details={"error": "api-worker-busy"})))
            return
        task = asyncio.get_running_loop().create_task(self._send(rid, m) if op == "send" else self._find(rid, m))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- the API calls -------------------------------------------------------------------------

    async def _send(self, rid: int, m: dict[str, Any]) -> None:
        try:
            sub = await self.provider.send(m["m"], m["s"], m["t"], m["b"])
        except Exception as exc:  # noqa: BLE001 - every failure goes back typed
            self._reply(api_ipc.encode_error(rid, _provider_error(exc, "send")))
            return
        self._reply(api_ipc.submitted_reply(rid, sub))

    async def _find(self, rid: int, m: dict[str, Any]) -> None:
        try:
            found = await self.provider.find_sent(m["t"], m["since"])
        except Exception as exc:  # noqa: BLE001
            self._reply(api_ipc.encode_error(rid, _provider_error(exc, "find_sent")))
            return
        self._reply(api_ipc.found_reply(rid, found))

    # --- stdout: one write per loop iteration --------------------------------------------------

    def _reply(self, frame: bytes) -> None:
        self._buf += frame
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        data, self._buf = self._buf, bytearray()
        if data and not self.out.is_closing():
            self.out.write(data)


def _provider_error(exc: BaseException, op: str) -> ProviderError:
    """A `ProviderError` as raised; anything else (our bug) as one that may have sent: the gateway
    looks before sending again."""
    if isinstance(exc, ProviderError):
        return exc
    log.error("sms.api_worker.request_failed", op=op, error=repr(exc), exc_info=exc)
    return ProviderError(f"sms api worker {op}: {type(exc).__name__}", error="connection", maybe_sent=True,
                         details={"op": op, "error": type(exc).__name__})


async def serve(cfg: dict[str, Any], ipc_fd: int) -> str:
    loop = asyncio.get_running_loop()
    provider = TwilioProvider(cfg["account_sid"], cfg["auth_token"], from_number=cfg["from_number"],
                              api_base=cfg["api_base"], public_url=cfg["public_url"], timeout_s=cfg["timeout_s"],
                              max_connections=cfg["max_connections"])
    out, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(ipc_fd, "wb", buffering=0))
    server = ApiServer(provider, out, int(cfg["max_pending"]))
    stdin = os.fdopen(0, "rb", buffering=0, closefd=False)
    transport, _ = await loop.connect_read_pipe(lambda: server, stdin)
    server._reply(api_ipc.encode_control({"type": "ready", "pid": os.getpid()}))
    log.info("sms.api_worker.ready", pid=os.getpid(), max_connections=cfg["max_connections"])
    why = await server.done
    transport.close()
    for task in list(server.tasks):
        task.cancel()
    await asyncio.gather(*server.tasks, return_exceptions=True)
    await provider.stop()
    server._flush()
    out.close()
    log.info("sms.api_worker.stopped", why=why)
    return why


def main() -> None:
    # The config (it holds the auth token) comes through the stdin pipe, never argv (readable by
    # every user). Read unbuffered: no byte of a request may be left in a reader's buffer.
    stdin = os.fdopen(0, "rb", buffering=0, closefd=False)
    msg = read_message(stdin)
    if not isinstance(msg, Control) or not isinstance(msg.data.get("config"), dict):
        sys.exit("sms.api_worker: the first message on stdin must be the config")
    cfg = msg.data["config"]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent(signal.SIGKILL, cfg.get("parent_pid"))
    ipc_fd = os.dup(1)  # replies only: fd 1 becomes stderr, so a stray print cannot break a frame
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    setup_logging(cfg.get("log_level", "info"), "json", stream=sys.stderr, secrets=(cfg["auth_token"],))
    asyncio.run(serve(cfg, ipc_fd))
