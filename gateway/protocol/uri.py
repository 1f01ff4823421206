"""Syntax checks for call targets: SIP/SIPS URIs (RFC 3261), tel URIs (RFC 3966), directory names.

Pure functions, no I/O. They check shape, not reachability.

A SIP URI's header part (`?Route=...&P-Asserted-Identity=...`) is refused, and so is `?` anywhere
in the URI: the SIP stack copies URI headers into the request, so a console could set headers the
gateway owns or forge an identity through the target (issue 8).
"""

from __future__ import annotations

import ipaddress
import re

_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_ESC = r"%[0-9A-Fa-f]{2}"
_USER = rf"(?:[{_UNRESERVED}&=+$,;/]|{_ESC})+"
_PASSWORD = rf"(?:[{_UNRESERVED}&=+$,]|{_ESC})*"
_HOSTNAME = r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.?"
_PARAM = rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESC})+"

_SIP_RE = re.compile(
    rf"(?P<scheme>sips?):(?:(?P<user>{_USER})(?::{_PASSWORD})?@)?"
    rf"(?P<host>{_HOSTNAME}|\[[0-9A-Fa-f:.]+\]|[0-9.]+)"
    rf"(?::(?P<port>[0-9]{{1,5}}))?"
    rf"(?P<params>(?:;{_PARAM}(?:={_PARAM})?)*)",
    re.IGNORECASE,
)
_TEL_RE = re.compile(r"tel:(?:\+[0-9\-.()]*[0-9][0-9\-.()]*|[0-9A-Fa-f*#\-.()]+)(?:;[A-Za-z0-9\-]+(?:=[A-Za-z0-9\-.+%!~*'()\[\]/:&$]+)?)*")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")

MAX_URI_LEN = 512


def is_sip_uri(value: str) -> bool:
    """True for a syntactically valid `sip:` / `sips:` URI."""
    if len(value) > MAX_URI_LEN:
        return False
    m = _SIP_RE.fullmatch(value)
    if m is None:
        return False
    host = m.group("host")
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
    elif re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
    port = m.group("port")
    return port is None or 0 < int(port) < 65536


def has_header_part(value: str) -> bool:
    """True for a sip:/sips: URI carrying a `?` (header part); such URIs are never valid here."""
    return value[:5].lower().startswith(("sip:", "sips:")) and "?" in value


def is_tel_uri(value: str) -> bool:
    return len(value) <= MAX_URI_LEN and _TEL_RE.fullmatch(value) is not None


def is_directory_name(value: str) -> bool:
    return _NAME_RE.fullmatch(value) is not None


def is_target(value: str) -> bool:
    """A call target: a SIP/SIPS/tel URI or a directory name (no colon)."""
    if ":" not in value:
        return is_directory_name(value)
    scheme = value.split(":", 1)[0].lower()
    if scheme in ("sip", "sips"):
        return is_sip_uri(value)
    if scheme == "tel":
        return is_tel_uri(value)
    return False
