"""What a `ControlServer` (gateway/server.py) is built with: its settings (`ServerConfig`, read
from `[control]` by gateway/app.py) and the hooks the wiring plugs in (`ServerHooks`), with the
types of those callbacks. No I/O."""

from __future__ import annotations

import inspect
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping

from gateway.commands import IdempotencyStore
from gateway.errors import GatewayError
from gateway.limits import DEFAULT_REQUEST_BUDGETS, RequestBudget
from gateway.protocol.methods import Principal, RequestContext

if TYPE_CHECKING:
    from gateway.connection import Connection

MaybeAwaitable = Any  # T | Awaitable[T]
Authenticator = Callable[[str], "Principal | None | Awaitable[Principal | None]"]
AuditHook = Callable[[RequestContext, str, dict, "dict | GatewayError"], Awaitable[None]]
CloseCallback = Callable[["Connection"], MaybeAwaitable]
BinaryCallback = Callable[[bytes], None]


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0: chosen by the OS, read it back from ControlServer.port
    path: str = "/v1/control"
    gateway_id: str = "gateway"
    ping_interval: float | None = 20.0  # seconds between server pings
    ping_timeout: float | None = 20.0  # a peer silent this long after a ping is dropped
    close_timeout: float = 5.0
    max_size: int = 1 << 20  # larger frames close the connection with 1009
    max_in_flight: int = 256  # concurrent requests per connection; beyond: rate-limited
    send_queue_size: int = 256  # outbox frames for events (replies get a reserve)
    media_queue_size: int = 64  # outbox audio frames, a budget of their own (full: dropped, counted)
    subscription_grace_s: float = 0.5  # how long a pump waits for room before cutting
    overflow_close_s: float = 30.0  # after events.overflow: a peer neither resubscribing nor reading is closed
    work_grace_s: float = 2.0  # on stop: how long started commands may take to finish
    max_work: int = 1024  # commands running to their end, all connections (gone ones too)
    open_timeout: float = 10.0
    hello_timeout: float = 10.0  # a connection that has not said hello by then is closed (1008)
    max_connections: int = 1024  # all connections; beyond: 503 at the handshake
    max_connections_per_source: int = 64  # per remote address; beyond: 503 at the handshake
    max_hello_failures: int = 5  # failed hellos on one connection; beyond: closed (1008)
    hello_failures_burst: int = 20  # failed hellos per source before rate-limited ...
    hello_failures_per_s: float = 1.0  # ... and the rate they are forgiven at
    ssl: ssl.SSLContext | None = None  # wss:// (gateway/tls.py); the TLS handshake within open_timeout
    # Text frames per principal after hello, by role (a role without one: unlimited); beyond: rate-limited.
    request_budgets: Mapping[str, RequestBudget] = field(default_factory=lambda: DEFAULT_REQUEST_BUDGETS)


@dataclass
class ServerHooks:
    """What the wiring (gateway/app.py) plugs in. All optional."""

    current_seq: Callable[[], MaybeAwaitable] = lambda: 0
    audit: AuditHook | None = None
    # The audit hook writes to the store the handlers write to: a request whose effect is one
    # write gets its ok row committed with it (RequestContext.audit, gateway/audit/request.py)
    audit_in_writes: bool = False
    idempotency: IdempotencyStore | None = None
    on_authenticated: CloseCallback | None = None
    on_closed: CloseCallback | None = None
    on_ping: Callable[["Connection"], None] | None = None  # an application-level `ping` (a heartbeat)
    # Every answered request: (method, outcome ok|error|internal|rate-limited|invalid, seconds or None)
    on_request: Callable[[str, str, float | None], None] | None = None


async def maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value
