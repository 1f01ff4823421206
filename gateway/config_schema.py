"""What the configuration holds: the frozen dataclasses `load_config` returns, the checks of its
compound values (tokens, directory endpoints, zones, profiles) and `SCHEMA`, the table of every
key with its type, check and default. No I/O; gateway/config.py reads and layers the sources.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.broadcast.config import BroadcastConfig, SpeakerProfile, Zone
from gateway.config_ops import OPS_SCHEMA, AuditConfig, MetricsConfig
from gateway.config_fields import (
    E164_RE,
    _Bad,
    _bool,
    _codecs,
    _dataclass_check,
    _e164_list,
    _Field,
    _host,
    _int,
    _names_list,
    _positive,
    _seconds,
    _show,
    _sip_uri,
    _str,
    _templates_check,
)
from gateway.directory import KINDS, NAME_RE, TERMINAL, Endpoint, uri_problem
from gateway.kpi.config import KPI_SCHEMA, KpiConfig
from gateway.limits import DEFAULT_REQUEST_BUDGETS, RequestBudget
from sip.config import JB_DEFAULTS, SipConfig
from sms.config import SmsConfig
from video.config import ICE_SCHEMES, RemoteJanus, VideoConfig

DEFAULTS_LABEL = "<defaults>"

ROLES = ("dispatcher", "observer", "terminal", "admin")
DEV_PRINCIPALS = ("dispatcher", "observer", "terminal")
LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
SIP_PROXY_MODES = ("auto", "none", "external")
# A map tile URL: https:// (or a path on the gateway's own host), with {z}, {x} and {y} in it.
TILE_URL_RE = re.compile(r"^(https://[A-Za-z0-9.\-]+(:[0-9]{1,5})?)?/(?=.*\{z\})(?=.*\{x\})(?=.*\{y\})[A-Za-z0-9._~/{}\-%?=&]*$")
CONTROL_URL_RE = re.compile(r"^wss?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(:[0-9]{1,5})?(/[A-Za-z0-9._~/\-]*)?$")




# --------------------------------------------------------------------------------------------
# Result


@dataclass(frozen=True)
class GatewayConfig:
    id: str = "gw1"
    data_dir: str = "data"
    log_format: str = "auto"  # auto: console on a tty, JSON lines otherwise
    log_level: str = "info"
    heap_trim_interval_s: float = 300.0  # gateway/heap_trim.py


@dataclass(frozen=True)
class ControlConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    path: str = "/v1/control"
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    max_frame_bytes: int = 1_048_576
    max_in_flight: int = 32
    send_queue: int = 1000
    media_queue: int = 100
    hello_timeout_s: float = 10.0
    overflow_close_s: float = 30.0
    max_connections: int = 1024
    max_connections_per_source: int = 64
    max_hello_failures: int = 5
    hello_failures_burst: int = 20
    hello_failure_refill_s: float = 1.0
    tls_cert: str | None = None  # PEM certificate (chain) and key: wss:// instead of ws://
    tls_key: str | None = None
    # Requests per principal, by role (gateway/limits.py); beyond: rate-limited, not run or audited.
    request_budget: Mapping[str, RequestBudget] = field(default_factory=lambda: DEFAULT_REQUEST_BUDGETS)


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    header_timeout_s: float = 10.0
    keepalive_s: float = 15.0
    max_connections: int = 1024
    max_connections_per_source: int = 1024  # a provider's callbacks or a reverse proxy: one address
    health_reserve: int = 8  # beyond the limits: connections only for GET /healthz or /readyz
    tls_cert: str | None = None  # PEM certificate (chain) and key: HTTPS instead of HTTP
    tls_key: str | None = None
    terminal_page: bool = True  # the reference field terminal at /terminal (gateway/terminal_page.py)
    terminal_control_url: str | None = None  # the control channel as terminals reach it; None: derived
    console: bool = True  # the dispatch console at /console (console/, built; gateway/console_page.py)
    console_control_url: str | None = None  # the control channel as consoles reach it; None: derived
    console_map_tiles: str | None = None  # the console map's tile URL ({z}/{x}/{y}); None: no tiles


@dataclass(frozen=True)
class StoreConfig:
    path: str = "gateway.db"  # relative to gateway.data_dir; ":memory:" allowed
    # Retention (gateway/retention.py): 0 keeps forever. Events and audit hold an incident's
    # history: the defaults keep it for more than a year.
    events_keep_days: int = 400
    audit_keep_days: int = 400
    idempotency_keep_days: int = 30
    prune_interval_s: float = 3600.0


@dataclass(frozen=True)
class TokenInfo:
    principal: str
    role: str


@dataclass(frozen=True)
class AuthConfig:
    tokens: Mapping[str, TokenInfo] = field(default_factory=lambda: types.MappingProxyType({}))
    dev_tokens: bool = True
    generated: bool = False  # True when `tokens` are dev tokens made at load: print them


@dataclass(frozen=True)
class CallsConfig:
    ring_timeout_s: float = 30.0  # unanswered inbound call
    dial_timeout_s: float = 60.0  # outbound call not answered
    conference_dial_in_prefix: str = "conf"  # a conference's dial-in number: this + 6 digits
    conference_pin_attempts: int = 3  # wrong dial-in PINs before the caller is hung up
    conference_pin_timeout_s: float = 30.0  # a dial-in caller without the right PIN by then is hung up


@dataclass(frozen=True)
class TerminalsConfig:
    """Field terminals (gateway/services/terminals.py)."""

    heartbeat_interval_s: float = 10.0  # a terminal sends terminal.report or ping at least this often
    missed_heartbeats: int = 3  # this many intervals silent: offline (its connection is closed)
    location_interval_s: float = 1.0  # at most one terminal.location event per terminal this often
    track_max_points: int = 5000  # the most points one terminal.track answer holds
    ack_timeout_s: float = 60.0  # terminal.instruct default: not acknowledged by then -> SMS fallback
    redeliver_s: float = 10.0  # an instruction pushed to a terminal that did not confirm it is pushed again


@dataclass(frozen=True)
class UploadsConfig:
    """Photos and audio clips uploaded over the http port (gateway/uploads/)."""

    dir: str = "uploads"  # relative to gateway.data_dir unless absolute
    max_bytes: int = 20 * 1024 * 1024  # a larger upload is refused (413), nothing kept
    max_concurrent: int = 4  # uploads received at once; one more is refused (503, Retry-After)
    body_timeout_s: float = 300.0  # an upload must be received whole within this (408)
    orphan_keep_s: int = 86_400  # an upload no feedback refers to is removed after this
    min_free_bytes: int = 1024 * 1024 * 1024  # uploads are refused (507) rather than fill the disk below this
    max_pending_bytes: int = 256 * 1024 * 1024  # a principal's uploads no feedback refers to yet; 0: no limit


@dataclass(frozen=True)
class Config:
    gateway: GatewayConfig
    control: ControlConfig
    http: HttpConfig
    store: StoreConfig
    auth: AuthConfig
    calls: CallsConfig
    sip: SipConfig
    broadcast: BroadcastConfig = field(default_factory=BroadcastConfig)
    sms: SmsConfig = field(default_factory=SmsConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    directory: tuple[Endpoint, ...] = ()
    terminals: TerminalsConfig = field(default_factory=TerminalsConfig)
    uploads: UploadsConfig = field(default_factory=UploadsConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    kpi: KpiConfig = field(default_factory=KpiConfig)
    source: str = DEFAULTS_LABEL  # the file it was loaded from

    @property
    def store_path(self) -> str:
        """The SQLite path: store.path under gateway.data_dir unless absolute or ":memory:"."""
        p = self.store.path
        if p == ":memory:" or Path(p).is_absolute():
            return p
        return str(Path(self.gateway.data_dir) / p)

    @property
    def uploads_dir(self) -> str:
        """Where uploads are stored: uploads.dir under gateway.data_dir unless absolute."""
        return str(Path(self.gateway.data_dir) / self.uploads.dir)

    @property
    def recordings_dir(self) -> str:
        """Video recordings: video.recordings_dir under gateway.data_dir unless absolute."""
        return str(Path(self.gateway.data_dir) / self.video.recordings_dir)


def _token_label(token: str) -> str:
    return f'"{token[:4]}…"' if len(token) > 4 else '"…"'


def _tokens_check(v: Any) -> Mapping[str, TokenInfo]:
    if not isinstance(v, dict):
        raise _Bad(f"must be a table of token = {{ principal, role }}, got {_show(v)}")
    out: dict[str, TokenInfo] = {}
    for token, info in v.items():
        sub = f"[{_token_label(token)}]"
        if len(token) < 8 or any(c.isspace() for c in token):
            raise _Bad("a token must be at least 8 characters with no spaces", sub)
        if not isinstance(info, dict):
            raise _Bad(f"must be a table {{ principal, role }}, got {_show(type(info).__name__)}", sub)
        unknown = sorted(set(info) - {"principal", "role"})
        if unknown:
            raise _Bad(f"unknown key (expected principal, role), got {_show(unknown[0])}",
                       f"{sub}.{unknown[0]}")
        principal, role = info.get("principal"), info.get("role")
        if not isinstance(principal, str) or not principal.strip():
            raise _Bad(f"must be a non-empty string, got {_show(principal)}", f"{sub}.principal")
        if role not in ROLES:
            raise _Bad(f"must be one of {', '.join(ROLES)}, got {_show(role)}", f"{sub}.role")
        out[token] = TokenInfo(principal=principal, role=role)
    return types.MappingProxyType(out)


_ENDPOINT_KEYS = ("name", "uri", "kind", "groups", "display_name", "profile", "phone")


def _endpoints_check(v: Any) -> tuple[Endpoint, ...]:
    if not isinstance(v, (list, tuple)):
        raise _Bad(f"must be an array of tables ([[directory.endpoint]]), got {_show(v)}")
    out: list[Endpoint] = []
    first_at: dict[str, int] = {}
    for i, ep in enumerate(v):
        sub = f"[{i}]"
        if not isinstance(ep, dict):
            raise _Bad(f"must be a table, got {_show(ep)}", sub)
        for k in ep:
            if k not in _ENDPOINT_KEYS:
                raise _Bad(_unknown_why(k, _ENDPOINT_KEYS), f"{sub}.{k}")
        name = ep.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise _Bad("must be a name of letters, digits, '_', '.', '-' (no ':' or spaces), "
                       f"got {_show(name)}", f"{sub}.name")
        if name in first_at:
            raise _Bad(f"duplicate endpoint name {_show(name)} "
                       f"(first at directory.endpoint[{first_at[name]}])", f"{sub}.name")
        first_at[name] = i
        kind = ep.get("kind", "phone")
        if kind not in KINDS:
            raise _Bad(f"must be one of {', '.join(KINDS)}, got {_show(kind)}", f"{sub}.kind")
        if "uri" not in ep and kind != TERMINAL:  # a terminal is reached over the control channel
            raise _Bad("is required", f"{sub}.uri")
        why = uri_problem(ep["uri"]) if "uri" in ep else None
        if why is not None:
            raise _Bad(why, f"{sub}.uri")
        phone = ep.get("phone")
        if phone is not None and not (isinstance(phone, str) and E164_RE.match(phone)):
            raise _Bad(f"must be an E.164 number like \"+8613800138000\", got {_show(phone)}", f"{sub}.phone")
        groups = ep.get("groups", [])
        if not isinstance(groups, list) or not all(
            isinstance(g, str) and NAME_RE.match(g) for g in groups
        ):
            raise _Bad(f"must be a list of group names, got {_show(groups)}", f"{sub}.groups")
        for k in ("display_name", "profile"):
            if k in ep and (not isinstance(ep[k], str) or not ep[k].strip()):
                raise _Bad(f"must be a non-empty string, got {_show(ep[k])}", f"{sub}.{k}")
        out.append(Endpoint(name=name, uri=ep.get("uri"), kind=kind,
                            groups=tuple(dict.fromkeys(groups)),
                            display_name=ep.get("display_name"), profile=ep.get("profile"),
                            phone=phone))
    return tuple(out)


def _zones_check(v: Any) -> tuple[Zone, ...]:
    if not isinstance(v, (list, tuple)):
        raise _Bad(f"must be an array of tables ([[broadcast.zone]]), got {_show(v)}")
    check = _dataclass_check(Zone, "name, group, port, codec, ttl, interface")
    return tuple(check(z, f"[{i}]") for i, z in enumerate(v))


def _profiles_check(v: Any) -> Mapping[str, SpeakerProfile]:
    if not isinstance(v, dict):
        raise _Bad(f"must be a table of profiles ([broadcast.profiles.NAME]), got {_show(v)}")
    check = _dataclass_check(SpeakerProfile, "headers = { Name = value }")
    return types.MappingProxyType({name: check({"name": name, **p} if isinstance(p, dict) else p, f".{name}")
                                   for name, p in v.items()})


_ID_RE = NAME_RE
_PATH_RE = re.compile(r"^/[^\s?#]*$")

# The schema: section -> key -> _Field, or a nested table (dict) of the same.
_IFACES_RE = re.compile(r"^[A-Za-z0-9_.:,\-]*$")


def _ifaces_check(v: Any) -> str:
    if not isinstance(v, str) or not _IFACES_RE.match(v):
        raise _Bad(f'must be interface names or addresses separated by commas ("" = all), got {_show(v)}')
    return v


def _ice_servers_check(v: Any) -> tuple[str, ...]:
    if not isinstance(v, (list, tuple)) or not all(
            isinstance(x, str) and x.startswith(ICE_SCHEMES) and len(x) < 256 and " " not in x for x in v):
        raise _Bad(f"must be a list of stun:, turn: or turns: URLs, got {_show(v)}")
    return tuple(v)


def _remote_check(v: Any) -> tuple[RemoteJanus, ...]:
    if not isinstance(v, (list, tuple)):
        raise _Bad(f"must be an array of tables {{url, api_secret}}, got {_show(v)}")
    out = []
    for i, item in enumerate(v):
        if not isinstance(item, Mapping) or set(item) != {"url", "api_secret"} or not all(
                isinstance(x, str) for x in item.values()):
            raise _Bad("must be a table with exactly url and api_secret (strings)", f"[{i}]")
        try:
            out.append(RemoteJanus(item["url"], item["api_secret"]))
        except ValueError as e:
            raise _Bad(str(e), f"[{i}]") from None
    return tuple(out)


SCHEMA: dict[str, dict[str, Any]] = {
    "gateway": {
        "id": _str("gw1", pattern=_ID_RE, what="a name of letters, digits, '_', '.', '-'"),
        "data_dir": _str("data"),
        "log_format": _str("auto", choices=LOG_FORMATS),
        "log_level": _str("info", choices=LOG_LEVELS),
        "heap_trim_interval_s": _seconds(300),
    },
    "control": {
        "host": _host("127.0.0.1"),
        "port": _int(0, 65535, 8765),  # 0: chosen by the OS (tests)
        "path": _str("/v1/control", pattern=_PATH_RE, what='a URL path starting with "/"'),
        "ping_interval_s": _seconds(20),
        "ping_timeout_s": _seconds(20),
        "max_frame_bytes": _int(1024, 64 * 1024 * 1024, 1_048_576),
        "max_in_flight": _int(1, 100_000, 32),
        "send_queue": _int(1, 1_000_000, 1000),
        "media_queue": _int(1, 100_000, 100),
        "hello_timeout_s": _seconds(10),
        "overflow_close_s": _seconds(30),
        "max_connections": _int(1, 1_000_000, 1024),
        "max_connections_per_source": _int(1, 1_000_000, 64),
        "max_hello_failures": _int(1, 1000, 5),
        "hello_failures_burst": _int(1, 1_000_000, 20),
        "hello_failure_refill_s": _seconds(1),
        "request_budget": {role: _Field("table", _dataclass_check(RequestBudget, "rate, burst"), budget)
                           for role, budget in DEFAULT_REQUEST_BUDGETS.items()},
        "tls_cert": _str(None, what="a PEM certificate file path"),
        "tls_key": _str(None, what="a PEM private key file path"),
    },
    "http": {
        "host": _host("127.0.0.1"),
        "port": _int(0, 65535, 8080),
        "header_timeout_s": _seconds(10),
        "keepalive_s": _seconds(15),
        "max_connections": _int(1, 1_000_000, 1024),
        "max_connections_per_source": _int(1, 1_000_000, 1024),
        "health_reserve": _int(0, 10_000, 8),
        "tls_cert": _str(None, what="a PEM certificate file path"),
        "tls_key": _str(None, what="a PEM private key file path"),
        "terminal_page": _bool(True),
        "terminal_control_url": _str(None, pattern=CONTROL_URL_RE,
                                     what="a ws:// or wss:// URL (scheme, host[:port], path)"),
        "console": _bool(True),
        "console_control_url": _str(None, pattern=CONTROL_URL_RE,
                                    what="a ws:// or wss:// URL (scheme, host[:port], path)"),
        "console_map_tiles": _str(None, pattern=TILE_URL_RE,
                                  what="an https:// URL (or a path on this host) with {z}, {x} and {y}"),
    },
    "store": {
        "path": _str("gateway.db"),
        "events_keep_days": _int(0, 36_500, 400),
        "audit_keep_days": _int(0, 36_500, 400),
        "idempotency_keep_days": _int(0, 36_500, 30),
        "prune_interval_s": _seconds(3600),
    },
    "auth": {
        "tokens": _Field("table", _tokens_check, types.MappingProxyType({})),
        "dev_tokens": _bool(True),
    },
    "calls": {"ring_timeout_s": _seconds(30), "dial_timeout_s": _seconds(60),
              "conference_dial_in_prefix": _str("conf", pattern=re.compile(r"^[A-Za-z0-9_.+-]{1,32}$"),
                                                what="the user part of a SIP URI (letters, digits, _.+-)"),
              "conference_pin_attempts": _int(1, 20, 3), "conference_pin_timeout_s": _seconds(30)},
    "sip": {
        "host": _host("127.0.0.1"),
        "port": _int(1, 65535, 5060),
        "proxy": _str("auto", choices=SIP_PROXY_MODES),
        "worker_host": _host("127.0.0.1"),
        "worker_base_port": _int(1, 65535, 5070),
        "rtp_port_base": _int(1024, 65535, 20000),
        "rtp_ports_per_worker": _int(2, 64_000, 100),
        "max_workers": _int(1, 64, 4),
        "warm_workers": _int(0, 64, 1),
        "calls_per_worker": _int(0, 10_000, 0),
        "codecs": _codecs(("PCMU", "PCMA", "G722")),
        "user": _str("gateway"),
        "display_name": _str("Dispatch"),
        "kamailio_bin": _str("kamailio"),
        "log_level": _int(0, 6, 2),
        "log_dir": _str(None, what="a directory path"),
        "audio_queue_frames": _int(1, 10_000, 50),
        "heartbeat_interval_s": _seconds(1.0),
        "heartbeat_deadline_s": _seconds(6.0),
        "dispatch_reserve": _int(0, 10_000, 2),
        "max_ringing_per_source": _int(0, 10_000, 4),
        # each -1 (pjsua's default) or ms, at least a 20 ms frame; cross-checked by sip/config.py
        "jb_init_ms": _int(-1, 10_000, JB_DEFAULTS["jb_init_ms"]),
        "jb_min_prefetch_ms": _int(-1, 10_000, JB_DEFAULTS["jb_min_prefetch_ms"]),
        "jb_max_prefetch_ms": _int(-1, 10_000, JB_DEFAULTS["jb_max_prefetch_ms"]),
        "jb_max_ms": _int(-1, 10_000, JB_DEFAULTS["jb_max_ms"]),
        "media_trace_ms": _int(0, 60_000, 0),
        "registration": {
            "registrar": _sip_uri(None),
            "username": _str(""),
            "password": _str(""),
            "realm": _str("*"),
            "expires": _int(30, 86400, 300),
        },
    },
    "directory": {"endpoint": _Field("array", _endpoints_check, ())},
    "terminals": {
        "heartbeat_interval_s": _seconds(10),
        "missed_heartbeats": _int(1, 100, 3),
        "location_interval_s": _seconds(1),
        "track_max_points": _int(10, 100_000, 5000),
        "ack_timeout_s": _seconds(60),
        "redeliver_s": _seconds(10),
    },
    "uploads": {
        "dir": _str("uploads"),
        "max_bytes": _int(1024, 2**31, 20 * 1024 * 1024),
        "max_concurrent": _int(1, 1000, 4),
        "body_timeout_s": _seconds(300),
        "orphan_keep_s": _int(1, 10 * 365 * 86_400, 86_400),
        "min_free_bytes": _int(0, 2**62, 1024 * 1024 * 1024),
        "max_pending_bytes": _int(0, 2**62, 256 * 1024 * 1024),
    },
    "kpi": KPI_SCHEMA,
    "sms": {
        "provider": _str("none", choices=("none", "twilio", "smpp")),
        "sender": _str("+15005550006", pattern=E164_RE, what="an E.164 number like +8613800138000"),
        "senders": _e164_list(()),
        "max_segments": _int(1, 255, 10),
        "rate_per_s": _positive(1),
        "burst": _positive(1),
        "max_attempts": _int(1, 100, 5),
        "base_delay_s": _seconds(1),
        "max_delay_s": _seconds(60),
        "in_flight": _int(1, 1000, 20),
        "reconcile_after_s": _seconds(60),
        "give_up_after_s": _seconds(86400),
        "receipt_window_s": _seconds(120),
        "intake_limit": _int(1, 100000, 256),
        "intake_wait_s": _seconds(2),
        "intake_timeout_s": _seconds(10),
        "inbound_dedup_window_s": _seconds(600),
        "templates": _Field("table", _templates_check, types.MappingProxyType({})),
        "twilio": {
            "account_sid": _str("AC00000000000000000000000000000000"),
            "auth_token": _str("dev-auth-token"),
            "api_base": _str("https://api.twilio.com"),
            "public_url": _str("http://127.0.0.1:8080"),
            "timeout_s": _seconds(10),
            "api_worker": _bool(True),
            "api_worker_stall_s": _seconds(5),
        },
        "smpp": {
            "host": _host("127.0.0.1"),
            "port": _int(1, 65535, 2775),
            "system_id": _str("gateway"),
            "password": _str("secret"),
            "system_type": _str("dispatch"),
            "source_addr": _str("10690000"),
            "part_ttl_s": _seconds(86400),
            "response_timeout_s": _seconds(10),
        },
    },
    "broadcast": {
        "priorities": _names_list(("emergency", "normal", "routine")),
        "retries": _int(0, 20, 2),
        "retry_delay_s": _seconds(3),
        "answer_timeout_s": _seconds(5),
        "paging_direction": _str("sendonly", choices=("sendonly", "sendrecv")),
        "invite_pace_per_s": _positive(500),
        "recordings_dir": _str("recordings"),
        "media_dir": _str("media"),
        "tts_engine": _str("espeak-ng"),
        "chime": _bool(True),
        "preempted_policy": _str("resume", choices=("resume", "end")),
        "profiles": _Field("table", _profiles_check, types.MappingProxyType({})),
        "zone": _Field("array", _zones_check, ()),
    },
    "video": {
        "enabled": _bool(False),
        "instances": _int(0, 64, 1),
        "remote": _Field("array", _remote_check, ()),
        "janus_bin": _str("janus"),
        "pp_rec_bin": _str("janus-pp-rec"),
        "ffmpeg_bin": _str("ffmpeg"),
        "ws_host": _host("127.0.0.1"),
        "ws_base_port": _int(1, 65535, 8188),
        "rtp_port_min": _int(1024, 65535, 40000),
        "rtp_port_max": _int(1024, 65535, 49999),
        "ice_enforce_list": _Field("str", _ifaces_check, ""),
        "sip_ip": _host("127.0.0.1"),
        "ice_servers": _Field("list", _ice_servers_check, ()),
        "session_timeout_s": _int(10, 3600, 60),
        "publish_timeout_s": _seconds(30),
        "request_timeout_s": _seconds(10),
        "recordings_dir": _str("recordings/video"),
        "postprocess_timeout_s": _seconds(300),
    },
    **OPS_SCHEMA,
}

_REGISTRATION_REQUIRED = ("registrar", "username", "password")


def _unknown_why(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f'; did you mean "{close[0]}"?' if close else f" (known: {', '.join(known)})"
    return f"unknown key{hint}"
