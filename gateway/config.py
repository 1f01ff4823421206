"""Configuration: one TOML file, layered and validated once at start into frozen dataclasses.

Layers, later wins: embedded defaults < the TOML file < environment < command-line overrides.

- File: `load_config("config/gateway.toml", ...)`; unknown keys are errors (typo protection).
- Environment: `DISPATCH_GATEWAY__<SECTION>__<KEY>=value` (`__<SUB>__<KEY>` for nested tables,
  e.g. `DISPATCH_GATEWAY__SIP__REGISTRATION__PASSWORD`). The text is parsed by the target type:
  integers, numbers, booleans (true/false/1/0/yes/no/on/off), lists (`a,b` or a TOML array),
  tables (a TOML inline table). Errors name the variable.
- Command line: a list of `"section.key=value"` strings, parsed like the environment.

Every problem is a `ConfigError(file, key, why)`, e.g.
`config/gateway.toml: sip.port: must be an integer 1..65535, got "abc"`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import secrets
import tomllib
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.broadcast.config import BroadcastConfig, SpeakerProfile, Zone
from sip.config import SipConfig, SipRegistration
from sms.config import SmppSettings, SmsConfig, TwilioSettings
from gateway.directory import KINDS, NAME_RE, Endpoint, uri_problem
from gateway.config_fields import (
    _Bad,
    _bool,
    _codecs,
    _dataclass_check,
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
from gateway.errors import ConfigError

ENV_PREFIX = "DISPATCH_GATEWAY__"
DEFAULTS_LABEL = "<defaults>"
ENV_LABEL = "environment"
CLI_LABEL = "command line"

ROLES = ("dispatcher", "observer", "terminal", "admin")
DEV_PRINCIPALS = ("dispatcher", "observer", "terminal")
LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
SIP_PROXY_MODES = ("auto", "none", "external")


# --------------------------------------------------------------------------------------------
# Result


@dataclass(frozen=True)
class GatewayConfig:
    id: str = "gw1"
    data_dir: str = "data"
    log_format: str = "auto"  # auto: console on a tty, JSON lines otherwise
    log_level: str = "info"


@dataclass(frozen=True)
class ControlConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    path: str = "/v1/control"
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    max_frame_bytes: int = 1_048_576
    max_in_flight: int = 256
    send_queue: int = 1000
    media_queue: int = 100


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8080


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
    directory: tuple[Endpoint, ...] = ()
    source: str = DEFAULTS_LABEL  # the file it was loaded from

    @property
    def store_path(self) -> str:
        """The SQLite path: store.path under gateway.data_dir unless absolute or ":memory:"."""
        p = self.store.path
        if p == ":memory:" or Path(p).is_absolute():
            return p
        return str(Path(self.gateway.data_dir) / p)


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


_ENDPOINT_KEYS = ("name", "uri", "kind", "groups", "display_name", "profile")


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
        if "uri" not in ep:
            raise _Bad("is required", f"{sub}.uri")
        why = uri_problem(ep["uri"])
        if why is not None:
            raise _Bad(why, f"{sub}.uri")
        kind = ep.get("kind", "phone")
        if kind not in KINDS:
            raise _Bad(f"must be one of {', '.join(KINDS)}, got {_show(kind)}", f"{sub}.kind")
        groups = ep.get("groups", [])
        if not isinstance(groups, list) or not all(
            isinstance(g, str) and NAME_RE.match(g) for g in groups
        ):
            raise _Bad(f"must be a list of group names, got {_show(groups)}", f"{sub}.groups")
        for k in ("display_name", "profile"):
            if k in ep and (not isinstance(ep[k], str) or not ep[k].strip()):
                raise _Bad(f"must be a non-empty string, got {_show(ep[k])}", f"{sub}.{k}")
        out.append(Endpoint(name=name, uri=ep["uri"], kind=kind,
                            groups=tuple(dict.fromkeys(groups)),
                            display_name=ep.get("display_name"), profile=ep.get("profile")))
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
SCHEMA: dict[str, dict[str, Any]] = {
    "gateway": {
        "id": _str("gw1", pattern=_ID_RE, what="a name of letters, digits, '_', '.', '-'"),
        "data_dir": _str("data"),
        "log_format": _str("auto", choices=LOG_FORMATS),
        "log_level": _str("info", choices=LOG_LEVELS),
    },
    "control": {
        "host": _host("127.0.0.1"),
        "port": _int(0, 65535, 8765),  # 0: chosen by the OS (tests)
        "path": _str("/v1/control", pattern=_PATH_RE, what='a URL path starting with "/"'),
        "ping_interval_s": _seconds(20),
        "ping_timeout_s": _seconds(20),
        "max_frame_bytes": _int(1024, 64 * 1024 * 1024, 1_048_576),
        "max_in_flight": _int(1, 100_000, 256),
        "send_queue": _int(1, 1_000_000, 1000),
        "media_queue": _int(1, 100_000, 100),
    },
    "http": {"host": _host("127.0.0.1"), "port": _int(0, 65535, 8080)},
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
    "calls": {"ring_timeout_s": _seconds(30), "dial_timeout_s": _seconds(60)},
    "sip": {
        "host": _host("127.0.0.1"),
        "port": _int(1, 65535, 5060),
        "proxy": _str("auto", choices=SIP_PROXY_MODES),
        "worker_host": _host("127.0.0.1"),
        "worker_base_port": _int(1, 65535, 5070),
        "rtp_port_base": _int(1024, 65535, 20000),
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
        "registration": {
            "registrar": _sip_uri(None),
            "username": _str(""),
            "password": _str(""),
            "realm": _str("*"),
            "expires": _int(30, 86400, 300),
        },
    },
    "directory": {"endpoint": _Field("array", _endpoints_check, ())},
    "sms": {
        "provider": _str("none", choices=("none", "twilio", "smpp")),
        "sender": _str("+15005550006", pattern=re.compile(r"^\+[1-9][0-9]{7,14}$"),
                       what="an E.164 number like +8613800138000"),
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
        "intake_timeout_s": _seconds(10),
        "inbound_dedup_window_s": _seconds(600),
        "templates": _Field("table", _templates_check, types.MappingProxyType({})),
        "twilio": {
            "account_sid": _str("AC00000000000000000000000000000000"),
            "auth_token": _str("dev-auth-token"),
            "api_base": _str("https://api.twilio.com"),
            "public_url": _str("http://127.0.0.1:8080"),
            "timeout_s": _seconds(10),
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
        "invite_pace_per_s": _positive(50),
        "recordings_dir": _str("recordings"),
        "media_dir": _str("media"),
        "tts_engine": _str("espeak-ng"),
        "chime": _bool(True),
        "preempted_policy": _str("resume", choices=("resume", "end")),
        "profiles": _Field("table", _profiles_check, types.MappingProxyType({})),
        "zone": _Field("array", _zones_check, ()),
    },
}

_REGISTRATION_REQUIRED = ("registrar", "username", "password")


def _unknown_why(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f'; did you mean "{close[0]}"?' if close else f" (known: {', '.join(known)})"
    return f"unknown key{hint}"


def _defaults(schema: dict[str, Any] = SCHEMA, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, spec in schema.items():
        if isinstance(spec, dict):
            if prefix + k != "sip.registration":  # optional table: no defaults unless given
                out.update(_defaults(spec, f"{prefix}{k}."))
        else:
            out[prefix + k] = spec.default
    return out


# --------------------------------------------------------------------------------------------
# Layers


class _Layers:
    """Parsed values by dotted key, with where each came from: (file label, key as written)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = _defaults()
        self.sources: dict[str, tuple[str, str]] = {k: (DEFAULTS_LABEL, k) for k in self.values}

    def set(self, dotted: str, spec: _Field, raw: Any, src: tuple[str, str]) -> None:
        try:
            self.values[dotted] = spec.check(raw)
        except _Bad as bad:
            raise ConfigError(src[0], src[1] + bad.key_suffix, bad.why) from None
        self.sources[dotted] = src

    def error(self, dotted: str, why: str) -> ConfigError:
        file, key = self.sources.get(dotted, (DEFAULTS_LABEL, dotted))
        return ConfigError(file, key, why)


def _apply_table(layers: _Layers, label: str, table: dict, schema: dict, prefix: str) -> None:
    for k, raw in table.items():
        dotted = prefix + k
        if k not in schema:
            raise ConfigError(label, dotted, _unknown_why(k, list(schema)))
        spec = schema[k]
        if isinstance(spec, dict):
            if not isinstance(raw, dict):
                raise ConfigError(label, dotted, f"must be a table, got {_show(raw)}")
            _apply_table(layers, label, raw, spec, dotted + ".")
        else:
            layers.set(dotted, spec, raw, (label, dotted))


def _read_file(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(path, "(file)", "not found") from None
    except IsADirectoryError:
        raise ConfigError(path, "(file)", "is a directory, not a TOML file") from None
    except OSError as e:
        raise ConfigError(path, "(file)", f"cannot be read: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, "(toml)", f"invalid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "(toml)", "invalid TOML: not UTF-8") from None


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _toml_value(text: str) -> Any:
    return tomllib.loads(f"v = {text}")["v"]


def _from_text(text: str, shape: str) -> Any:
    """Read an environment / command-line string as the target shape; leave it a string when it
    does not parse, so the validator reports `got "..."`."""
    s = text.strip()
    if shape == "str":
        return text
    if shape == "int":
        try:
            return int(s, 10)
        except ValueError:
            return text
    if shape == "float":
        try:
            return text if s.lower().lstrip("+-") in ("nan", "inf", "infinity") else float(s)
        except ValueError:
            return text
    if shape == "bool":
        low = s.lower()
        return True if low in _TRUE else False if low in _FALSE else text
    if shape == "list":
        if s.startswith("["):
            try:
                return _toml_value(s)
            except tomllib.TOMLDecodeError:
                return text
        return [p.strip() for p in s.split(",") if p.strip()]
    if shape in ("table", "array"):
        try:
            return _toml_value(s)
        except tomllib.TOMLDecodeError as e:
            what = "inline table { ... }" if shape == "table" else "array [ ... ]"
            raise _Bad(f"must be a TOML {what}: {e}") from None
    raise AssertionError(shape)


def _lookup(parts: list[str]) -> tuple[str, _Field] | str:
    """(dotted, field) for a key path, or why it is not a setting."""
    node: Any = SCHEMA
    for i, p in enumerate(parts):
        if not isinstance(node, dict) or p not in node:
            where = ".".join(parts[:i]) or "top level"
            known = list(node) if isinstance(node, dict) else []
            return f"{'.'.join(parts)} is not a setting ({where}: {_unknown_why(p, known)})"
        node = node[p]
    if isinstance(node, dict):
        return f"{'.'.join(parts)} is a table; set one of its keys ({', '.join(node)})"
    return ".".join(parts), node


def _apply_text(layers: _Layers, label: str, key: str, parts: list[str], text: str) -> None:
    found = _lookup(parts)
    if isinstance(found, str):
        raise ConfigError(label, key, found)
    dotted, spec = found
    try:
        raw = _from_text(text, spec.shape)
    except _Bad as bad:
        raise ConfigError(label, key, bad.why) from None
    try:
        layers.values[dotted] = spec.check(raw)
    except _Bad as bad:
        if label == ENV_LABEL and bad.key_suffix:
            raise ConfigError(label, key, f"{bad.why} (at {dotted}{bad.key_suffix})") from None
        raise ConfigError(label, key + bad.key_suffix, bad.why) from None
    layers.sources[dotted] = (label, key)


def _apply_env(layers: _Layers, env: Mapping[str, str]) -> None:
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in var[len(ENV_PREFIX):].split("__")]
        if not all(parts):
            raise ConfigError(ENV_LABEL, var, "expected DISPATCH_GATEWAY__SECTION__KEY")
        _apply_text(layers, ENV_LABEL, var, parts, env[var])


def _apply_overrides(layers: _Layers, overrides: Sequence[str]) -> None:
    for item in overrides:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ConfigError(CLI_LABEL, item, "expected section.key=value")
        parts = key.split(".")
        if not all(parts):
            raise ConfigError(CLI_LABEL, key, "expected section.key=value")
        _apply_text(layers, CLI_LABEL, key, parts, text)


# --------------------------------------------------------------------------------------------
# Cross-field checks and building


def _check_whole(layers: _Layers) -> None:
    v = layers.values
    if v["sip.warm_workers"] > v["sip.max_workers"]:
        raise layers.error("sip.warm_workers", f"must be <= sip.max_workers "
                           f"({v['sip.max_workers']}), got {v['sip.warm_workers']}")
    span = SipConfig.rtp_ports_per_worker  # RTP ports per worker (sip/config.py)
    if v["sip.rtp_port_base"] + span * v["sip.max_workers"] - 1 > 65535:
        raise layers.error("sip.rtp_port_base", (
            f"{v['sip.rtp_port_base']} + {span} RTP ports x {v['sip.max_workers']} workers (sip.max_workers) "
            f"ends at port {v['sip.rtp_port_base'] + span * v['sip.max_workers'] - 1}, past 65535; "
            f"use at most {65536 - span * v['sip.max_workers']}"))
    if v["sip.heartbeat_deadline_s"] <= v["sip.heartbeat_interval_s"]:
        raise layers.error("sip.heartbeat_deadline_s", f"must be greater than sip.heartbeat_interval_s "
                           f"({v['sip.heartbeat_interval_s']}), got {v['sip.heartbeat_deadline_s']}")
    if v["http.port"] == v["control.port"] != 0 and v["http.host"] == v["control.host"]:
        raise layers.error("http.port", f"must differ from control.port, both are {v['http.port']}")
    reg = [k for k in v if k.startswith("sip.registration.")]
    if reg:
        for name in _REGISTRATION_REQUIRED:
            k = f"sip.registration.{name}"
            if not v.get(k):
                file = layers.sources[reg[0]][0]
                raise ConfigError(file, k, "is required when [sip.registration] is given")


def _section(cls: type, values: dict[str, Any], section: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: values[f"{section}.{k}"] for k in names if f"{section}.{k}" in values})


def _build_sip(layers: _Layers) -> SipConfig:
    v = layers.values
    plain = {k[4:]: val for k, val in v.items()
             if k.startswith("sip.") and not k.startswith("sip.registration.")}
    reg = {k[len("sip.registration."):]: val for k, val in v.items()
           if k.startswith("sip.registration.")}
    try:
        return SipConfig(**plain, registration=SipRegistration(**reg) if reg else None)
    except (TypeError, ValueError) as e:
        raise ConfigError(layers.sources.get("sip.host", (DEFAULTS_LABEL, ""))[0], "sip",
                          str(e)) from None


def _build_sms(layers: _Layers) -> SmsConfig:
    v = layers.values

    def sub(prefix: str) -> dict[str, Any]:
        return {k[len(prefix):]: val for k, val in v.items() if k.startswith(prefix)}

    plain = {k: val for k, val in sub("sms.").items() if "." not in k}
    return SmsConfig(**plain, twilio=TwilioSettings(**sub("sms.twilio.")),
                     smpp=SmppSettings(**sub("sms.smpp.")))


def _build_broadcast(layers: _Layers) -> BroadcastConfig:
    v = layers.values
    kw = {k[len("broadcast."):]: val for k, val in v.items() if k.startswith("broadcast.")}
    kw["zones"] = kw.pop("zone")
    try:
        cfg = BroadcastConfig(**kw)
    except ValueError as e:
        raise layers.error("broadcast", str(e)) from None
    for i, ep in enumerate(v["directory.endpoint"]):
        if ep.profile is not None:
            try:
                cfg.profile(ep.profile)
            except ValueError as e:
                file, _ = layers.sources.get("directory.endpoint", (DEFAULTS_LABEL, ""))
                raise ConfigError(file, f"directory.endpoint[{i}].profile", str(e)) from None
    return cfg


def _with_dev_tokens(auth: AuthConfig) -> AuthConfig:
    if not auth.dev_tokens or auth.tokens:
        return auth
    tokens = {f"dev-{p}-{secrets.token_urlsafe(16)}": TokenInfo(principal=p, role=p)
              for p in DEV_PRINCIPALS}
    return dataclasses.replace(auth, tokens=types.MappingProxyType(tokens), generated=True)


def dev_token_banner(config: Config) -> str | None:
    """Lines to print at start when dev tokens were generated, else None."""
    if not config.auth.generated:
        return None
    lines = ["Development tokens (auth.dev_tokens = true and no [auth.tokens] configured):"]
    for token, info in config.auth.tokens.items():
        lines.append(f"  {info.role:<10} {info.principal:<10} {token}")
    return "\n".join(lines)


def load_config(path: str | None, env: Mapping[str, str] | None = None,
                overrides: Sequence[str] = ()) -> Config:
    """Load, layer and validate. Raises ConfigError(file, key, why) on the first problem."""
    layers = _Layers()
    label = DEFAULTS_LABEL
    if path is not None:
        label = str(path)
        data = _read_file(label)
        _apply_table(layers, label, data, SCHEMA, "")
    _apply_env(layers, env or {})
    _apply_overrides(layers, list(overrides))
    _check_whole(layers)
    v = layers.values
    auth = _with_dev_tokens(AuthConfig(tokens=v["auth.tokens"], dev_tokens=v["auth.dev_tokens"]))
    return Config(
        gateway=_section(GatewayConfig, v, "gateway"),
        control=_section(ControlConfig, v, "control"),
        http=_section(HttpConfig, v, "http"),
        store=_section(StoreConfig, v, "store"),
        auth=auth,
        calls=_section(CallsConfig, v, "calls"),
        sip=_build_sip(layers),
        directory=v["directory.endpoint"],
        broadcast=_build_broadcast(layers),
        sms=_build_sms(layers),
        source=label,
    )
