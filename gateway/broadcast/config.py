"""Broadcast configuration: frozen, validated dataclasses (no I/O).

`gateway/config.py` reads the TOML (`[broadcast]`, `[speaker_profiles.*]`, `[[broadcast.zone]]`) and
builds these; every constructor validates and raises `ValueError` with a precise message.

Speaker profiles are extra headers for the paging INVITE, so that a phone or speaker answers by
itself. None are sent unless an endpoint names a profile. Header values may use the placeholders
`{uri}` (the target URI), `{user}` and `{host}` (its user and host parts); `render_headers()` fills
them in. The well-known header sets and the vendor names that map to them are plain data below.
"""

from __future__ import annotations

import ipaddress
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

# RFC 3261 `token` characters, as allowed in a header name.
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_PLACEHOLDERS = frozenset({"host", "uri", "user"})
MAX_HEADER_VALUE = 1024

# Headers the SIP stack owns: a profile setting them would break the dialog.
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards", "Content-Length",
        "Content-Type", "Route", "Record-Route", "Authorization", "Proxy-Authorization",
        "v", "f", "t", "i", "m", "l", "c",  # compact forms
    )
)

# Well-known auto-answer header sets (data, not code).
WELL_KNOWN_HEADERS: dict[str, dict[str, str]] = {
    # RFC 5373: the caller asks for automatic answer.
    "rfc5373": {"Answer-Mode": "Auto"},
    # Call-Info answer-after (Yealink, Cisco SPA/MPP, Snom, Grandstream, many SIP speakers).
    "call-info": {"Call-Info": "<{uri}>;answer-after=0"},
    # Alert-Info variants (BroadSoft / Yealink / Grandstream style, and Polycom's default match).
    "alert-info-autoanswer": {"Alert-Info": "info=alert-autoanswer"},
    "alert-info-auto-answer": {"Alert-Info": "Auto Answer"},
    # Intercom (Snom, Grandstream, Fanvil: answer at once, no delay).
    "intercom": {"Alert-Info": "<http://127.0.0.1>;info=alert-autoanswer;delay=0"},
}

# Vendor name -> well-known set, as far as their documentation is known here. Endpoints that
# auto-answer a paging extension anyway (Algo, Axis) are given Call-Info, which they honour.
VENDOR_PROFILES: dict[str, str] = {
    "yealink": "call-info",
    "snom": "intercom",
    "polycom": "alert-info-auto-answer",
    "algo": "call-info",
    "axis": "call-info",
    "cisco": "call-info",
}


def _check_header(name: object, value: object, where: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: header name must be a non-empty string, got {name!r}")
    if not _TOKEN_RE.fullmatch(name):
        bad = next(c for c in name if not _TOKEN_RE.fullmatch(c))
        raise ValueError(f"{where}: header name {name!r} has a character not allowed in a SIP token: {bad!r}")
    if name.lower() in RESERVED_HEADERS:
        raise ValueError(f"{where}: header {name!r} is set by the SIP stack and cannot be overridden")
    if not isinstance(value, str):
        raise ValueError(f"{where}: value of header {name!r} must be a string, got {type(value).__name__}")
    for ch, label in (("\r", "CR"), ("\n", "LF"), ("\x00", "NUL")):
        if ch in value:
            raise ValueError(f"{where}: value of header {name!r} contains {label} at index {value.index(ch)}")
    if len(value) > MAX_HEADER_VALUE:
        raise ValueError(f"{where}: value of header {name!r} is longer than {MAX_HEADER_VALUE} characters")
    try:
        specs = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(value) if f is not None]
    except ValueError as e:
        raise ValueError(f"{where}: value of header {name!r} has a malformed placeholder: {e}") from None
    for f, spec, conv in specs:
        if f not in _PLACEHOLDERS:
            raise ValueError(
                f"{where}: value of header {name!r} uses unknown placeholder {{{f}}}"
                f" (allowed: {{host}}, {{uri}}, {{user}}; write {{{{ and }}}} for literal braces)"
            )
        if spec or conv:
            raise ValueError(f"{where}: placeholder {{{f}}} in header {name!r} takes no format or conversion")


@dataclass(frozen=True)
class SpeakerProfile:
    """Extra headers for the paging INVITE. `headers` is copied into a read-only mapping."""

    name: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise ValueError(
                f"speaker profile name {self.name!r} is not a valid name (letters, digits, _ . -)"
            )
        where = f"speaker profile {self.name!r}"
        if not isinstance(self.headers, Mapping):
            raise ValueError(f"{where}: headers must be a table of name = value")
        seen: dict[str, str] = {}
        for name, value in self.headers.items():
            _check_header(name, value, where)
            if name.lower() in seen:
                raise ValueError(f"{where}: header {name!r} given twice (also as {seen[name.lower()]!r})")
            seen[name.lower()] = name
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))


def builtin_profile(name: str) -> SpeakerProfile:
    """A well-known set (`rfc5373`, `call-info`, ...) or a vendor name (`yealink`, `snom`, ...)."""
    key = VENDOR_PROFILES.get(name, name)
    if key not in WELL_KNOWN_HEADERS:
        known = sorted({*WELL_KNOWN_HEADERS, *VENDOR_PROFILES})
        raise ValueError(f"unknown speaker profile {name!r} (built-in: {', '.join(known)})")
    return SpeakerProfile(name, WELL_KNOWN_HEADERS[key])


def _uri_parts(uri: str) -> dict[str, str]:
    """`{uri, user, host}` of a sip:/sips:/tel: URI (host without port or parameters)."""
    scheme, sep, rest = uri.partition(":")
    if not sep:
        return {"uri": uri, "user": uri, "host": ""}
    if scheme.lower() == "tel":
        return {"uri": uri, "user": rest.split(";", 1)[0], "host": ""}
    rest = re.split(r"[;?]", rest, maxsplit=1)[0]
    user, at, hostport = rest.rpartition("@")
    user = user.split(":", 1)[0] if at else ""
    if hostport.startswith("["):
        host = hostport[: hostport.find("]") + 1]
    else:
        host = hostport.split(":", 1)[0]
    return {"uri": uri, "user": user, "host": host}


def render_headers(profile: SpeakerProfile, uri: str) -> dict[str, str]:
    """The profile's headers with `{host}`, `{uri}`, `{user}` filled in from `uri`."""
    parts = _uri_parts(uri)
    out: dict[str, str] = {}
    for name, template in profile.headers.items():
        value = template.format_map(parts)
        for ch, label in (("\r", "CR"), ("\n", "LF"), ("\x00", "NUL")):
            if ch in value:
                raise ValueError(
                    f"speaker profile {profile.name!r}: header {name!r} rendered for {uri!r} contains {label}"
                )
        out[name] = value
    return out


CODECS = ("PCMU", "PCMA", "G722")
Codec = Literal["PCMU", "PCMA", "G722"]


@dataclass(frozen=True)
class Zone:
    """A multicast RTP paging zone."""

    name: str
    group: str
    port: int
    codec: Codec = "PCMU"
    ttl: int = 1
    interface: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise ValueError(f"zone name {self.name!r} is not a valid name (letters, digits, _ . -)")
        where = f"zone {self.name!r}"
        try:
            group = ipaddress.IPv4Address(self.group)
        except (ValueError, TypeError):
            raise ValueError(f"{where}: group {self.group!r} is not an IPv4 address") from None
        if not group.is_multicast:
            raise ValueError(f"{where}: group {self.group} is not multicast (224.0.0.0/4)")
        if not isinstance(self.port, int) or isinstance(self.port, bool) or not 1 <= self.port <= 65535:
            raise ValueError(f"{where}: port {self.port!r} is not in 1..65535")
        if self.codec not in CODECS:
            raise ValueError(f"{where}: codec {self.codec!r} is not one of {', '.join(CODECS)}")
        if not isinstance(self.ttl, int) or isinstance(self.ttl, bool) or not 0 <= self.ttl <= 255:
            raise ValueError(f"{where}: ttl {self.ttl!r} is not in 0..255")
        try:
            ipaddress.IPv4Address(self.interface)
        except (ValueError, TypeError):
            raise ValueError(f"{where}: interface {self.interface!r} is not an IPv4 address") from None


@dataclass(frozen=True)
class BroadcastConfig:
    priorities: tuple[str, ...] = ("emergency", "normal", "routine")  # highest first
    retries: int = 2  # per failed SIP target, after the first attempt
    retry_delay_s: float = 3.0
    answer_timeout_s: float = 5.0  # a paging call not answered by then is cancelled (and retried)
    paging_direction: Literal["sendonly", "sendrecv"] = "sendonly"  # our side of a paging call
    invite_pace_per_s: float = 500.0  # INVITEs per second over every worker (config/gateway.toml: why)
    recordings_dir: str = "recordings"
    media_dir: str = "media"  # WAV files a dispatcher may broadcast by name (under data_dir)
    tts_engine: str = "espeak-ng"
    chime: bool = True
    preempted_policy: Literal["resume", "end"] = "resume"
    profiles: Mapping[str, SpeakerProfile] = field(default_factory=dict)
    zones: tuple[Zone, ...] = ()

    def __post_init__(self) -> None:
        prios = tuple(self.priorities)
        if not prios:
            raise ValueError("broadcast.priorities: at least one priority is needed")
        for p in prios:
            if not isinstance(p, str) or not _NAME_RE.fullmatch(p):
                raise ValueError(f"broadcast.priorities: {p!r} is not a valid name")
        if len(set(prios)) != len(prios):
            dup = next(p for p in prios if prios.count(p) > 1)
            raise ValueError(f"broadcast.priorities: {dup!r} is listed twice")
        object.__setattr__(self, "priorities", prios)
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or self.retries < 0:
            raise ValueError(f"broadcast.retries: {self.retries!r} must be an integer >= 0")
        if not isinstance(self.retry_delay_s, (int, float)) or self.retry_delay_s < 0:
            raise ValueError(f"broadcast.retry_delay_s: {self.retry_delay_s!r} must be >= 0")
        if not isinstance(self.invite_pace_per_s, (int, float)) or not self.invite_pace_per_s > 0:
            raise ValueError(f"broadcast.invite_pace_per_s: {self.invite_pace_per_s!r} must be > 0")
        if not isinstance(self.recordings_dir, str) or not self.recordings_dir:
            raise ValueError("broadcast.recordings_dir: must be a non-empty path")
        if not isinstance(self.tts_engine, str) or not self.tts_engine:
            raise ValueError("broadcast.tts_engine: must be a non-empty name")
        if self.preempted_policy not in ("resume", "end"):
            raise ValueError(
                f"broadcast.preempted_policy: {self.preempted_policy!r} is not 'resume' or 'end'"
            )
        for key, prof in self.profiles.items():
            if not isinstance(prof, SpeakerProfile):
                raise ValueError(f"speaker_profiles.{key}: not a SpeakerProfile")
            if prof.name != key:
                raise ValueError(f"speaker_profiles.{key}: profile is named {prof.name!r}")
        object.__setattr__(self, "profiles", MappingProxyType(dict(self.profiles)))
        zones = tuple(self.zones)
        names: set[str] = set()
        dests: dict[tuple[str, int], str] = {}
        for z in zones:
            if not isinstance(z, Zone):
                raise ValueError("broadcast.zone: not a Zone")
            if z.name in names:
                raise ValueError(f"broadcast.zone: name {z.name!r} is used twice")
            names.add(z.name)
            if (z.group, z.port) in dests:
                other = dests[z.group, z.port]
                raise ValueError(f"broadcast.zone {z.name!r}: {z.group}:{z.port} is also zone {other!r}")
            dests[z.group, z.port] = z.name
        object.__setattr__(self, "zones", zones)

    def rank(self, priority: str) -> int:
        """0 for the highest priority. ValueError for an unknown one."""
        try:
            return self.priorities.index(priority)
        except ValueError:
            raise ValueError(f"unknown priority {priority!r} (known: {', '.join(self.priorities)})") from None

    def profile(self, name: str) -> SpeakerProfile:
        """A configured profile, else a built-in one by well-known or vendor name."""
        if name in self.profiles:
            return self.profiles[name]
        return builtin_profile(name)

    def zone(self, name: str) -> Zone:
        for z in self.zones:
            if z.name == name:
                return z
        raise ValueError(f"unknown zone {name!r}")
