"""How a control connection serves its text frames: the hello gate before authentication, the
role's request budget, the in-flight bound, and running a request (audited) to its reply.

`RequestServing` is the part of `Connection` (gateway/connection.py) that reads requests; the
connection brings its state, outbox and counters (the names annotated below). A command that runs
to its end (`MethodSpec.runs_to_end`) is started in the server's `CommandRunner`
(gateway/commands.py): the connection only waits for its reply.
"""

from __future__ import annotations

import asyncio
import collections
import math
import sqlite3
import time
from typing import TYPE_CHECKING, Any, Callable, Coroutine

from websockets.asyncio.server import ServerConnection

from gateway.audit.request import RequestAudit
from gateway.connection_state import ConnState
from gateway.errors import Conflict, GatewayError, NotAuthenticated, RateLimited, Unavailable
from gateway.limits import EveryInterval
from gateway.protocol import codec
from gateway.protocol.methods import HelloParams, Principal, RequestContext, validate_params
from gateway.server_config import maybe_await as _maybe_await

if TYPE_CHECKING:
    from gateway.server import ControlServer

PROTOCOL_VERSION = 1


def store_full(exc: BaseException) -> bool:
    """sqlite3's SQLITE_FULL: the store's file system (gateway.data_dir) has no room left."""
    return isinstance(exc, sqlite3.OperationalError) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


class RequestServing:
    """A connection's text frames: hello first, then requests within budget (see the module)."""

    # What the connection (gateway/connection.py) provides.
    id: str
    server: ControlServer
    _ws: ServerConnection
    principal: Principal | None
    client: str | None
    state: ConnState
    source: str
    log: Any
    stats: collections.Counter
    _hello_failures: int
    _inflight: set[asyncio.Task]
    _budget_logged: EveryInterval
    _reply: Callable[[str], None]
    _reply_error: Callable[[Any, GatewayError], None]
    _count: Callable[..., None]
    _transition: Callable[[str], None]

    async def _on_text(self, text: str) -> None:
        msg = codec.parse_message(text)
        if self.principal is None:
            await self._before_hello(msg)
            return
        if not self._within_budget(msg):
            return
        if isinstance(msg, codec.Invalid):
            self.log.info("control.request.invalid", reason=msg.error.reason, msg=msg.error.message)
            self._count(None, "invalid")
            self._reply_error(msg.id, msg.error)
            return
        if isinstance(msg, codec.Notification):
            self.log.debug("control.notification.ignored", method=msg.method)
            return
        if len(self._inflight) >= self.server.config.max_in_flight:
            self.stats["rate_limited"] += 1
            self._count(msg.method, "rate-limited")
            self._reply_error(msg.id, RateLimited(
                "too many requests in flight",
                details={"max_in_flight": self.server.config.max_in_flight}))
            return
        serve = self._start(msg)
        if serve is None:
            return
        task = asyncio.get_running_loop().create_task(serve, name=f"req-{self.id}-{msg.id}")
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    def _within_budget(self, msg: codec.Request | codec.Notification | codec.Invalid) -> bool:
        """Every text frame after hello spends one of the principal's request budget (by role,
        shared by its connections). Spent: the frame is answered rate-limited (a notification is
        dropped), neither run nor audited; a count and a log line at most every 10 s remain."""
        assert self.principal is not None
        wait = self.server.request_budgets.take(self.principal.role, self.principal.name, time.monotonic())
        if wait == 0.0:
            return True
        wait = math.ceil(wait * 1000) / 1000  # never "retry after 0"
        self.stats["budget_refused"] += 1
        due, skipped = self._budget_logged.due()
        if due:
            self.log.info("control.request.over-budget", retry_after_s=wait, suppressed=skipped)
        if not isinstance(msg, codec.Notification):
            self._count(msg.method if isinstance(msg, codec.Request) else None, "rate-limited")
            self._reply_error(msg.id, RateLimited("request budget of the role spent", details={
                "retry_after_s": wait, "role": self.principal.role}))
        return False

    def _hello_late(self) -> None:
        if self.principal is None and self.state is ConnState.OPEN:
            self.log.info("control.hello.timeout")
            self.server._spawn(self._ws.close(1008, "no hello in time"))

    async def _before_hello(self, msg: codec.Request | codec.Notification | codec.Invalid | None) -> None:
        """A frame before hello (`None`: a binary one). Each that is not a successful hello is a
        failed attempt, like a bad token: it counts on this connection (beyond
        `max_hello_failures` the next frame closes it, 1008) and spends its source's budget (while
        spent, every frame is answered rate-limited and not even a good token is tried)."""
        cfg, throttle = self.server.config, self.server.hello_throttle
        if self._hello_failures >= cfg.max_hello_failures:
            if self.state is ConnState.OPEN:
                self.log.info("control.hello.too-many-failures", failures=self._hello_failures)
                await self._ws.close(1008, "too many failed hellos")
            return
        req_id = None if isinstance(msg, codec.Notification) or msg is None else msg.id
        answers = isinstance(msg, (codec.Request, codec.Invalid))  # a notification or binary gets none
        wait = throttle.retry_after(self.source, time.monotonic())
        if wait > 0:
            self._hello_failures += 1
            if answers:
                self._reply_error(req_id, RateLimited("too many failed hellos from this address",
                                                      details={"retry_after_s": round(wait, 3)}))
            return
        if isinstance(msg, codec.Request) and msg.method == "hello":
            t0 = time.perf_counter()
            err = await self._hello(msg)
            self._count("hello", "ok" if err is None else "error", time.perf_counter() - t0)
            if err is None:
                return
        elif isinstance(msg, codec.Invalid):
            err = msg.error
        else:
            err = NotAuthenticated("send hello with a token first")
        self._hello_failures += 1
        throttle.failed(self.source, time.monotonic())
        self.log.info("control.hello.failed", reason=err.reason,
                      frame="binary" if msg is None else type(msg).__name__.lower())
        if answers:
            self._reply_error(req_id, err)

    async def _hello(self, req: codec.Request) -> GatewayError | None:
        """None once authenticated (or on our own failure, answered here); the peer's error otherwise."""
        try:
            params = validate_params(self.server.registry.spec("hello"), req.params)
            assert isinstance(params, HelloParams)
            principal = await _maybe_await(self.server.authenticator(params.token))
            if principal is None:
                raise NotAuthenticated("invalid token")
            seq = await _maybe_await(self.server.hooks.current_seq())
        except GatewayError as err:
            return err
        except Exception:
            self.log.exception("control.hello.crashed")
            self._reply_error(req.id, GatewayError("internal error"))
            return None
        self.principal, self.client = principal, params.client
        self._transition("hello-ok")
        self.log = self.log.bind(principal=principal.name, role=principal.role)
        self.log.info("control.hello", client=params.client)
        if self.server.hooks.on_authenticated is not None:
            try:
                await _maybe_await(self.server.hooks.on_authenticated(self))
            except Exception:
                self.log.exception("control.hook.on-authenticated-crashed")
        self._reply(codec.encode_result(req.id, {
            "principal": principal.name, "role": principal.role,
            "gateway_id": self.server.config.gateway_id, "seq": seq, "protocol": PROTOCOL_VERSION,
        }))
        return None

    def _start(self, req: codec.Request) -> Coroutine[Any, Any, None] | None:
        """What serves `req` on this connection: a command that runs to its end is started now,
        owned by the server (received whole, it runs whatever happens to the connection; its
        result is stored under its key), and the connection only waits for its reply."""
        spec = self.server.registry.methods.get(req.method)
        if spec is None or not spec.runs_to_end:
            return self._serve(req)
        if self.server.commands.full:
            # Bounded across connections too: a client cannot pile up work by reconnecting.
            self.stats["rate_limited"] += 1
            self._count(req.method, "rate-limited")
            self._reply_error(req.id, RateLimited(
                "too many commands running", details={"max_work": self.server.config.max_work}))
            return None
        return self._wait_for(self.server.commands.start(self._serve(req), f"cmd-{self.id}-{req.id}"))

    async def _wait_for(self, work: asyncio.Task[None]) -> None:
        """The command replies itself when it ends (`_reply` does nothing once the connection is
        closed), in its own step: not two task hops later, behind whatever the loop has queued
        meanwhile (the fan-out of its own commit). Here it only holds its in-flight place."""
        await asyncio.shield(work)  # cancelled with the connection: the wait only

    async def _serve(self, req: codec.Request) -> None:
        self._reply(await self._execute(req))

    async def _execute(self, req: codec.Request) -> str:
        """Run one request (audited) and return the reply's text."""
        assert self.principal is not None
        ctx = RequestContext(self.principal, self, req.method, req.id, self.log)
        audit_params: dict = req.params
        audited = req.method != "hello"  # never store a token in the audit log
        outcome: dict | GatewayError
        t0, counted = time.perf_counter(), "ok"
        try:
            if req.method == "hello":
                raise Conflict("already authenticated")
            spec = self.server.registry.spec(req.method)
            audited = spec.audited
            if req.method == "ping":
                result: Any = {}
                if self.server.hooks.on_ping is not None:
                    self.server.hooks.on_ping(self)
            else:
                spec, handler, params = self.server.registry.resolve(req.method, self.principal.role, req.params)
                audit_params = params.model_dump(mode="json", exclude_none=True)
                key = getattr(params, "idempotency_key", None) if spec.starts_work else None
                if audited is True and key is None and self.server.hooks.audit_in_writes:
                    ctx.audit = RequestAudit(self.principal.name, self.principal.role, req.method, audit_params)
                if key is not None:
                    result = await self.server.commands.idempotent(self.principal.name, key, req.method,
                                                           lambda: handler(ctx, params))
                else:
                    result = await handler(ctx, params)
            if not isinstance(result, dict):
                raise TypeError(f"handler for {req.method} returned {type(result).__name__}, not dict")
            text = codec.encode_result(req.id, result)
            outcome = result
        except GatewayError as err:
            ctx.log.info("control.request.error", reason=err.reason)
            outcome, text, counted = err, codec.encode_error(req.id, err), "error"
        except Exception as exc:
            if store_full(exc):  # the store's disk is full: a part down, refused clearly (rolled back)
                ctx.log.error("control.request.storage-full", method=req.method)
                err = Unavailable("refused: the store's disk is full (gateway.data_dir)", reason="storage-full")
                outcome, text, counted = err, codec.encode_error(req.id, err), "error"
            else:
                ctx.log.exception("control.request.internal-error")
                err = GatewayError("internal error")
                outcome, text, counted = err, codec.encode_error(req.id, err), "internal"
        self._count(req.method, counted, time.perf_counter() - t0)
        failed = isinstance(outcome, GatewayError)
        if ctx.audit is not None and ctx.audit.written and not failed:
            audited = False  # its row was committed with its write
        if audited and (audited is True or failed) and self.server.hooks.audit:
            try:
                await self.server.hooks.audit(ctx, req.method, audit_params, outcome)
            except Exception:
                ctx.log.exception("control.audit.failed")
        return text

