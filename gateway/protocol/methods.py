"""The method table of protocol v1: who may call what, with which params.

`METHODS` maps a method name to a `MethodSpec(name, roles, params_model, starts_work)`.
Params models are pydantic v2 models with `extra="forbid"`; `validate_params()` turns a raw
dict into the model or raises `InvalidParams` listing each field error (reason `invalid-uri`
when a URI is what is wrong). Services attach handlers through a `Registry`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Awaitable, Callable, Literal, Mapping

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from gateway.audit.request import RequestAudit
from gateway.errors import Forbidden, InvalidParams, MethodNotFound

from . import uri

if TYPE_CHECKING:  # pragma: no cover
    from gateway.connection import Connection

# --- roles -------------------------------------------------------------------------------------

DISPATCHER, OBSERVER, TERMINAL, ADMIN = "dispatcher", "observer", "terminal", "admin"
ROLES = frozenset({DISPATCHER, OBSERVER, TERMINAL, ADMIN})

ALL = frozenset({DISPATCHER, OBSERVER, TERMINAL, ADMIN})
READ = frozenset({DISPATCHER, OBSERVER, ADMIN})
COMMAND = frozenset({DISPATCHER, ADMIN})


@dataclass(frozen=True)
class Principal:
    """Who is on the other end: from the token given to `hello`."""

    name: str
    role: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}")


class RequestContext:
    """What a handler knows about the request it serves."""

    __slots__ = ("principal", "connection", "method", "request_id", "_conn_log", "_log", "audit")

    def __init__(self, principal: Principal, connection: "Connection", method: str, request_id: Any,
                 conn_log: Any) -> None:
        self.principal, self.connection, self.method, self.request_id = principal, connection, method, request_id
        self._conn_log = conn_log  # the connection's logger (bound once: conn_id, principal, role)
        self._log: Any = None
        # The request's ok audit row, for a handler to pass to its one store write (None: the
        # server writes the row after the outcome; gateway/audit/request.py)
        self.audit: RequestAudit | None = None

    @property
    def log(self) -> Any:
        """A structlog BoundLogger bound with conn_id, principal, method, request_id: bound on
        first use, so a request that logs nothing binds nothing."""
        if self._log is None:
            self._log = self._conn_log.bind(method=self.method, request_id=self.request_id)
        return self._log

    @property
    def role(self) -> str:
        return self.principal.role


# --- params models -----------------------------------------------------------------------------

_ID_RE = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
Id = Annotated[str, Field(pattern=_ID_RE, description="an opaque id made by the gateway")]
IdempotencyKey = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[\x21-\x7e]+$",
        description="repeat the request with the same key: the first result, nothing new started",
    ),
]
_HEADER_NAME_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]{1,64}")
# Headers the SIP stack owns; a console may not set them.
_RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "Via", "Call-ID", "CSeq", "From", "To", "Contact", "Content-Length", "Content-Type",
        "Max-Forwards", "Route", "Record-Route", "Authorization", "Proxy-Authorization",
        # identity: a console must not assert or hide who is calling (RFC 3325, RFC 8224)
        "P-Asserted-Identity", "P-Preferred-Identity", "Privacy", "Identity", "Identity-Info",
    )
)


def _reserved_header(name: str) -> bool:
    """Set by the gateway: the names above, and every one-letter name, since the compact forms
    (v f t i m l c k s e o u r b x, y, a, ...) are the same headers under another spelling."""
    return len(name) == 1 or name.lower() in _RESERVED_HEADERS


def _check_target(value: str) -> str:
    if uri.has_header_part(value):
        raise PydanticCustomError(
            "invalid_uri",
            "header parts (?name=value) are not allowed in a target URI: {value}",
            {"value": value[:80]},
        )
    if not uri.is_target(value):
        raise PydanticCustomError(
            "invalid_uri",
            "not a sip:/sips:/tel: URI or a directory name: {value}",
            {"value": value[:80]},
        )
    return value


def _check_sip_uri(value: str) -> str:
    if not uri.is_sip_uri(value):
        raise PydanticCustomError("invalid_uri", "not a sip:/sips: URI: {value}", {"value": value[:80]})
    return value


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, frozen=True)


class HelloParams(Params):
    token: str = Field(min_length=1, max_length=512)
    client: str | None = Field(None, max_length=128, description='e.g. "console/1.4"')


class PingParams(Params):
    pass


class SessionCreateParams(Params):
    title: str | None = Field(None, max_length=200)
    idempotency_key: IdempotencyKey | None = None


class SessionListParams(Params):
    state: str | None = Field(None, pattern=r"^[a-z][a-z\-]{0,31}$")


class SessionIdParams(Params):
    session_id: Id


class EventsSubscribeParams(Params):
    since_seq: int | None = Field(
        None, ge=0, le=2**63 - 1,  # a seq is an SQLite integer (int64)
        description="replay every stored event with seq > since_seq, then live"
    )


class DirectoryListParams(Params):
    kind: Literal["phone", "speaker", "trunk", "terminal"] | None = None
    group: str | None = Field(None, max_length=64)


class CallListParams(Params):
    session_id: Id | None = None


class CallDialParams(Params):
    target: str = Field(description="sip:/sips:/tel: URI, or a directory name")
    session_id: Id | None = None
    from_uri: str | None = None
    display_name: str | None = Field(None, max_length=64)
    headers: dict[str, str] | None = Field(None, max_length=32)
    timeout_s: float | None = Field(None, gt=0, le=600)
    idempotency_key: IdempotencyKey | None = None

    _target = field_validator("target")(classmethod(lambda cls, v: _check_target(v)))

    @field_validator("from_uri")
    @classmethod
    def _from(cls, v: str | None) -> str | None:
        return None if v is None else _check_sip_uri(v)

    @field_validator("display_name")
    @classmethod
    def _display(cls, v: str | None) -> str | None:
        if v is not None and re.search(r'[\x00-\x1f\x7f"\\]', v):
            raise ValueError("control characters, quotes and backslashes are not allowed")
        return v

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is None:
            return v
        for name, value in v.items():
            if not _HEADER_NAME_RE.fullmatch(name):
                raise ValueError(f"bad header name {name[:64]!r}")
            if _reserved_header(name):
                raise ValueError(f"header {name!r} is set by the gateway")
            if len(value) > 512 or re.search(r"[\x00\r\n]", value):
                raise ValueError(f"bad value for header {name!r} (CR, LF, NUL or too long)")
        return v


class CallIdParams(Params):
    call_id: Id


class CallRejectParams(Params):
    call_id: Id
    code: int = Field(486, ge=400, le=699)


class CallDtmfParams(Params):
    call_id: Id
    digits: str = Field(pattern=r"^[0-9*#A-D]{1,32}$")


class CallTransferParams(Params):
    call_id: Id
    target: str = Field(description="sip:/sips:/tel: URI, or a directory name")

    _target = field_validator("target")(classmethod(lambda cls, v: _check_target(v)))


class MediaOpenParams(Params):
    call_id: Id | None = None
    broadcast_id: Id | None = None
    direction: Literal["both", "in", "out"] = Field(
        "both", description="in: console -> call; out: call -> console"
    )
    rate: Literal[8000, 16000] = 16000

    @model_validator(mode="after")
    def _one_target(self) -> "MediaOpenParams":
        if (self.call_id is None) == (self.broadcast_id is None):
            raise ValueError("give exactly one of call_id (a call) or broadcast_id (live broadcast audio)")
        return self


class MediaCloseParams(Params):
    channel: int = Field(ge=0, le=65535)


class ToneSourceParams(Params):
    type: Literal["tone"]
    frequency: float = Field(1000.0, ge=50, le=4000, description="Hz")
    seconds: float = Field(5.0, gt=0, le=600)


class FileSourceParams(Params):
    type: Literal["file"]
    path: str = Field(min_length=1, max_length=1024, description="a WAV file under broadcast.media_dir")


class TtsSourceParams(Params):
    type: Literal["tts"]
    text: str = Field(max_length=5000)
    language: str = Field("en", max_length=16, description="en, zh (Mandarin)")


class LiveSourceParams(Params):
    type: Literal["live"]


BroadcastSource = Annotated[
    ToneSourceParams | FileSourceParams | TtsSourceParams | LiveSourceParams,
    Field(discriminator="type"),
]


class BroadcastStartParams(Params):
    targets: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        min_length=1, max_length=2000,
        description="directory names, group:NAME, zone:NAME (multicast) or sip: URIs",
    )
    source: BroadcastSource
    priority: str = Field("normal", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    session_id: Id | None = None
    max_duration_s: float | None = Field(None, gt=0, le=86400)
    repeat: int = Field(1, ge=1, le=100)
    repeat_gap_s: float = Field(2.0, ge=0, le=600)
    chime: bool | None = Field(None, description="pre-announcement chime; default from config")
    idempotency_key: IdempotencyKey | None = None


class BroadcastIdParams(Params):
    broadcast_id: Id


class SmsTextParams(Params):
    body: str | None = Field(None, max_length=5000)
    template: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    variables: dict[str, str | int | float] | None = Field(None, max_length=50)


class SmsSendParams(SmsTextParams):
    to: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        max_length=10_000, description="E.164 numbers, directory names, group:NAME")
    session_id: Id | None = None
    sender: str | None = Field(None, max_length=32)
    idempotency_key: IdempotencyKey | None = None


class SmsTemplatesParams(Params):
    pass


class SmsGetParams(Params):
    message_id: Id | None = None
    send_id: Id | None = None

    @model_validator(mode="after")
    def _one(self) -> "SmsGetParams":
        if (self.message_id is None) == (self.send_id is None):
            raise ValueError("give exactly one of message_id or send_id")
        return self


# --- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodSpec:
    name: str
    roles: frozenset[str]
    params_model: type[BaseModel]
    starts_work: bool = False
    audited: bool | Literal["errors"] = True  # "errors": only refused requests (high-rate telemetry)
    summary: str = ""
    # Once started, the command runs to its end in a task the server owns, whatever happens to
    # the connection (a lost client cancels the wait for the reply, never the work). Every
    # starts_work method does; so do the commands that change a call, session or broadcast.
    # Reads, and what is bound to the connection itself (subscriptions, media), are cancelled.
    runs_to_end: bool = False

    def __post_init__(self) -> None:
        if self.starts_work and not self.runs_to_end:
            object.__setattr__(self, "runs_to_end", True)
        if not self.roles <= ROLES:
            raise ValueError(f"{self.name}: unknown roles {sorted(self.roles - ROLES)}")
        if self.starts_work and "idempotency_key" not in self.params_model.model_fields:
            raise ValueError(f"{self.name}: starts_work needs an idempotency_key param")

    def allows(self, role: str) -> bool:
        return role == ADMIN or role in self.roles


def _spec(name, roles, model, starts_work=False, summary="", audited=True, runs_to_end=False) -> MethodSpec:
    return MethodSpec(name, frozenset(roles) | {ADMIN}, model, starts_work, audited, summary, runs_to_end)


METHODS: dict[str, MethodSpec] = {
    s.name: s
    for s in (
        _spec("hello", ALL, HelloParams, summary="authenticate; must be the first request", audited=False),
        _spec("ping", ALL, PingParams, summary="application-level liveness check", audited=False),
        _spec("session.create", COMMAND, SessionCreateParams, True, "open a dispatch session"),
        _spec("session.list", READ, SessionListParams, summary="list sessions"),
        _spec("session.get", READ, SessionIdParams, summary="one session"),
        _spec("session.close", COMMAND, SessionIdParams, summary="close a session", runs_to_end=True),
        _spec("events.subscribe", READ, EventsSubscribeParams, summary="replay after since_seq, then live"),
        _spec("directory.list", READ, DirectoryListParams, summary="endpoints of the directory"),
        _spec("call.dial", COMMAND, CallDialParams, True, "place an outbound call"),
        _spec("call.list", READ, CallListParams, summary="the live calls (of one session)"),
        _spec("call.answer", COMMAND, CallIdParams, summary="answer an inbound call", runs_to_end=True),
        _spec("call.reject", COMMAND, CallRejectParams, summary="reject an inbound call", runs_to_end=True),
        _spec("call.hangup", COMMAND, CallIdParams, summary="end a call", runs_to_end=True),
        _spec("call.hold", COMMAND, CallIdParams, summary="put a call on hold", runs_to_end=True),
        _spec("call.unhold", COMMAND, CallIdParams, summary="resume a held call", runs_to_end=True),
        _spec("call.dtmf", COMMAND, CallDtmfParams, summary="send DTMF digits", runs_to_end=True),
        _spec("call.transfer", COMMAND, CallTransferParams, summary="blind transfer (REFER)", runs_to_end=True),
        _spec("call.listen", COMMAND, CallIdParams, summary="monitor a call's audio"),
        _spec("media.open", COMMAND, MediaOpenParams, summary="bind binary frames to a call"),
        _spec("media.close", COMMAND, MediaCloseParams, summary="unbind a media channel"),
        _spec("broadcast.start", COMMAND, BroadcastStartParams, True,
              "announce to speakers, phones and zones"),
        _spec("broadcast.stop", COMMAND, BroadcastIdParams, summary="stop a broadcast", runs_to_end=True),
        _spec("broadcast.get", READ, BroadcastIdParams, summary="a broadcast and its targets"),
        _spec("sms.send", COMMAND, SmsSendParams, True, "text numbers, directory entries and groups"),
        _spec("sms.get", READ, SmsGetParams, summary="a message, or a whole send with counts"),
        _spec("sms.preview", COMMAND, SmsTextParams, summary="encoding and segments before sending"),
        _spec("sms.templates", READ, SmsTemplatesParams, summary="the configured message templates"),
    )
}


def validate_params(spec: MethodSpec, raw: Mapping[str, Any]) -> BaseModel:
    """The params model for `raw`, or `InvalidParams` with one detail per field error."""
    try:
        return spec.params_model.model_validate(dict(raw))
    except pydantic.ValidationError as exc:
        errors = [
            {"loc": ".".join(str(p) for p in e["loc"]) or "params", "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        reason = "invalid-uri" if any(e["type"] == "invalid_uri" for e in errors) else "invalid-params"
        raise InvalidParams(f"invalid params for {spec.name}", reason=reason, details={"errors": errors}) from None


Handler = Callable[[RequestContext, Any], Awaitable[dict]]


@dataclass
class Registry:
    """Method table plus the handlers services registered for it."""

    methods: dict[str, MethodSpec] = field(default_factory=lambda: dict(METHODS))
    handlers: dict[str, Handler] = field(default_factory=dict)

    def define(self, spec: MethodSpec) -> None:
        """Add a method to the table (later issues: conference.*, sms.*, terminal.* ...)."""
        if spec.name in self.methods:
            raise ValueError(f"method {spec.name!r} already defined")
        self.methods[spec.name] = spec

    def register(self, name: str, handler: Handler) -> None:
        if name not in self.methods:
            raise KeyError(f"no method {name!r} in the table")
        if name in self.handlers:
            raise ValueError(f"handler for {name!r} already registered")
        self.handlers[name] = handler

    def spec(self, name: str) -> MethodSpec:
        try:
            return self.methods[name]
        except KeyError:
            raise MethodNotFound(f"unknown method {name[:64]!r}", details={"method": name[:64]}) from None

    def resolve(self, name: str, role: str, raw: Mapping[str, Any]) -> tuple[MethodSpec, Handler, BaseModel]:
        """Spec, handler and validated params, checked in this order: method, role, params.

        Raises MethodNotFound / Forbidden / InvalidParams. A method in the table without a
        registered handler is answered as unknown (its service is not running here).
        """
        spec = self.spec(name)
        if not spec.allows(role):
            raise Forbidden(f"role {role!r} may not call {name}", details={"method": name, "role": role})
        handler = self.handlers.get(name)
        if handler is None:
            raise MethodNotFound(f"method {name!r} is not available", details={"method": name})
        return spec, handler, validate_params(spec, raw)


# The terminal.* entries live with their params models (they import the building blocks above).
from .terminals import TERMINAL_METHODS  # noqa: E402

METHODS.update((s.name, s) for s in TERMINAL_METHODS)

# The video.* entries live with their params models (they import the building blocks above).
from .video import VIDEO_METHODS  # noqa: E402

METHODS.update((s.name, s) for s in VIDEO_METHODS)

# terminal.feedback (text and uploads into an incident) lives with its params model.
from .feedback import FEEDBACK_METHODS  # noqa: E402

METHODS.update((s.name, s) for s in FEEDBACK_METHODS)

# The conference.* entries live with their params models (they import the building blocks above).
from .conference import CONFERENCE_METHODS  # noqa: E402

METHODS.update((s.name, s) for s in CONFERENCE_METHODS)

# The kpi.* entries (the two indicators, maintenance windows) live with their params models.
from .kpi import KPI_METHODS  # noqa: E402

METHODS.update((s.name, s) for s in KPI_METHODS)
