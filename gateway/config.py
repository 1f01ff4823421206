"""Configuration: one TOML file, layered and validated once at start into frozen dataclasses.

Layers, later wins: embedded defaults < the TOML file < environment < command-line overrides.

- File: `load_config("config/gateway.toml", ...)`; unknown keys are errors (typo protection).
- Environment: `DISPATCH_GATEWAY__<SECTION>__<KEY>=value` (`__<SUB>__<KEY>` for nested tables,
  e.g. `DISPATCH_GATEWAY__SIP__REGISTRATION__PASSWORD`). The text is parsed by the target type:
  integers, numbers, booleans (true/false/1/0/yes/no/on/off), lists (`a,b` or a TOML array),
  tables (a TOML inline table). Errors name the variable.
- Command line: a list of `"section.key=value"` strings, parsed like the environment.

What the configuration holds (the dataclasses, SCHEMA) is gateway/config_schema.py.
Every problem is a `ConfigError(file, key, why)`, e.g.
`config/gateway.toml: sip.port: must be an integer 1..65535, got "abc"`.
"""

from __future__ import annotations

import dataclasses
import secrets
import tomllib
import types
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.broadcast.config import BroadcastConfig
from gateway.config_ops import SECRET_KEYS, AuditConfig, MetricsConfig
from gateway.config_fields import _Bad, _Field, _show
from gateway.config_schema import (  # the dataclasses are also importable from here
    DEFAULTS_LABEL,
    DEV_PRINCIPALS,
    SCHEMA,
    AuthConfig,
    CallsConfig,
    Config,
    ControlConfig,
    GatewayConfig,
    HttpConfig,
    StoreConfig,
    TerminalsConfig,
    KpiConfig,
    TokenInfo,
    UploadsConfig,
    _REGISTRATION_REQUIRED,
    _unknown_why,
)
from gateway.errors import ConfigError
from gateway.tls import pair_problem
from sip.config import SipConfig, SipRegistration
from sms.config import SmppSettings, SmsConfig, TwilioSettings
from video.config import VideoConfig

ENV_PREFIX = "DISPATCH_GATEWAY__"
ENV_LABEL = "environment"
CLI_LABEL = "command line"


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
        if key in SECRET_KEYS:
            raise ConfigError(CLI_LABEL, key, "is a secret: set it in the config file or the environment, "
                                              "not on the command line (visible in ps)")
        _apply_text(layers, CLI_LABEL, key, parts, text)


# --------------------------------------------------------------------------------------------
# Cross-field checks and building


def _check_whole(layers: _Layers) -> None:
    v = layers.values
    if v["sip.warm_workers"] > v["sip.max_workers"]:
        raise layers.error("sip.warm_workers", f"must be <= sip.max_workers "
                           f"({v['sip.max_workers']}), got {v['sip.warm_workers']}")
    span = v["sip.rtp_ports_per_worker"]  # RTP ports per worker (sip/config.py)
    if v["sip.rtp_port_base"] + span * v["sip.max_workers"] - 1 > 65535:
        raise layers.error("sip.rtp_port_base", (
            f"{v['sip.rtp_port_base']} + {span} RTP ports x {v['sip.max_workers']} workers (sip.max_workers) "
            f"ends at port {v['sip.rtp_port_base'] + span * v['sip.max_workers'] - 1}, past 65535; "
            f"use at most {65536 - span * v['sip.max_workers']} or fewer sip.rtp_ports_per_worker"))
    if v["sip.heartbeat_deadline_s"] <= v["sip.heartbeat_interval_s"]:
        raise layers.error("sip.heartbeat_deadline_s", f"must be greater than sip.heartbeat_interval_s "
                           f"({v['sip.heartbeat_interval_s']}), got {v['sip.heartbeat_deadline_s']}")
    if v["http.port"] == v["control.port"] != 0 and v["http.host"] == v["control.host"]:
        raise layers.error("http.port", f"must differ from control.port, both are {v['http.port']}")
    for section in ("control", "http"):  # the files are read now: serve stops before binding
        found = pair_problem(section, v[f"{section}.tls_cert"], v[f"{section}.tls_key"])
        if found is not None:
            key, why = found
            if v[key] is not None:
                raise layers.error(key, why)
            other = f"{section}.tls_key" if key.endswith("_cert") else f"{section}.tls_cert"
            raise ConfigError(layers.sources[other][0], key, why)
    reg = [k for k in v if k.startswith("sip.registration.")]
    if reg:
        for name in _REGISTRATION_REQUIRED:
            k = f"sip.registration.{name}"
            if not v.get(k):
                file = layers.sources[reg[0]][0]
                raise ConfigError(file, k, "is required when [sip.registration] is given")


def _section(cls: type, values: dict[str, Any], section: str) -> Any:
    """`cls` from the section's keys; a field that is a table of keys (`control.request_budget`)
    gets a read-only mapping of them."""
    names = {f.name for f in dataclasses.fields(cls)}
    kw = {k: values[f"{section}.{k}"] for k in names if f"{section}.{k}" in values}
    for k in names - set(kw):
        prefix = f"{section}.{k}."
        table = {key[len(prefix):]: v for key, v in values.items() if key.startswith(prefix)}
        if table:
            kw[k] = types.MappingProxyType(table)
    return cls(**kw)


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


def _build_video(layers: _Layers) -> VideoConfig:
    kw = {k[len("video."):]: val for k, val in layers.values.items() if k.startswith("video.")}
    try:
        return VideoConfig(**kw)
    except ValueError as e:
        raise layers.error("video", str(e)) from None


def _with_dev_tokens(auth: AuthConfig, directory: Sequence[Any] = ()) -> AuthConfig:
    if not auth.dev_tokens or auth.tokens:
        return auth
    tokens = {f"dev-{p}-{secrets.token_urlsafe(16)}": TokenInfo(principal=p, role=p)
              for p in DEV_PRINCIPALS}
    # One per terminal of the directory: a terminal's token is bound to its id (the principal).
    tokens.update({f"dev-terminal-{secrets.token_urlsafe(16)}": TokenInfo(principal=ep.name, role="terminal")
                   for ep in directory if ep.kind == "terminal"})
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
    auth = _with_dev_tokens(AuthConfig(tokens=v["auth.tokens"], dev_tokens=v["auth.dev_tokens"]),
                            v["directory.endpoint"])
    return Config(
        gateway=_section(GatewayConfig, v, "gateway"),
        control=_section(ControlConfig, v, "control"),
        http=_section(HttpConfig, v, "http"),
        store=_section(StoreConfig, v, "store"),
        auth=auth,
        calls=_section(CallsConfig, v, "calls"),
        sip=_build_sip(layers),
        directory=v["directory.endpoint"],
        terminals=_section(TerminalsConfig, v, "terminals"),
        uploads=_section(UploadsConfig, v, "uploads"),
        audit=_section(AuditConfig, v, "audit"),
        metrics=_section(MetricsConfig, v, "metrics"),
        kpi=_section(KpiConfig, v, "kpi"),
        broadcast=_build_broadcast(layers),
        sms=_build_sms(layers),
        video=_build_video(layers),
        source=label,
    )
