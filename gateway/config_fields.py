"""The building blocks of the config schema: a `_Field` says how to read a key's text and how
to check its value; checks raise `_Bad(why)` and gateway/config.py turns that into a
`ConfigError(file, key, why)`. No I/O."""

from __future__ import annotations

import ipaddress
import json
import re
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.directory import NAME_RE, uri_problem

class _Bad(Exception):
    def __init__(self, why: str, key_suffix: str = "") -> None:
        super().__init__(why)
        self.why, self.key_suffix = why, key_suffix


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, default=str)[:80]
    if isinstance(v, str):
        return json.dumps(v)
    return str(v)


@dataclass(frozen=True)
class _Field:
    shape: str  # str | int | float | bool | list | table | array
    check: Callable[[Any], Any]
    default: Any


def _int(lo: int, hi: int | None = None, default: int = 0) -> _Field:
    rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"

    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
            raise _Bad(f"must be an integer {rng}, got {_show(v)}")
        return v

    return _Field("int", check, default)


def _seconds(default: float) -> _Field:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 86400:
            raise _Bad(f"must be a number of seconds > 0 and <= 86400, got {_show(v)}")
        return float(v)

    return _Field("float", check, float(default))


def _bool(default: bool) -> _Field:
    def check(v: Any) -> bool:
        if not isinstance(v, bool):
            raise _Bad(f"must be true or false, got {_show(v)}")
        return v

    return _Field("bool", check, default)


def _str_check(v: Any, choices: Sequence[str] | None = None, pattern: re.Pattern | None = None,
               what: str = "a non-empty string") -> str:
    if choices is not None:
        if not isinstance(v, str) or v.lower() not in choices:
            raise _Bad(f"must be one of {', '.join(choices)}, got {_show(v)}")
        return v.lower()
    if not isinstance(v, str) or not v.strip():
        raise _Bad(f"must be {what}, got {_show(v)}")
    if pattern is not None and not pattern.match(v):
        raise _Bad(f"must be {what}, got {_show(v)}")
    return v


def _str(default: str, *, choices: Sequence[str] | None = None, pattern: re.Pattern | None = None,
         what: str = "a non-empty string") -> _Field:
    return _Field("str", lambda v: _str_check(v, choices, pattern, what), default)


_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def _host(default: str) -> _Field:
    def check(v: Any) -> str:
        if isinstance(v, str):
            try:
                ipaddress.ip_address(v)
                return v
            except ValueError:
                if _HOSTNAME_RE.match(v):
                    return v
        raise _Bad(f"must be an IP address or host name, got {_show(v)}")

    return _Field("str", check, default)


def _sip_uri(default: str | None) -> _Field:
    def check(v: Any) -> str:
        why = uri_problem(v)
        if why is not None:
            raise _Bad(why)
        return v

    return _Field("str", check, default)


def _codecs(default: tuple[str, ...]) -> _Field:
    def check(v: Any) -> tuple[str, ...]:
        if (not isinstance(v, (list, tuple)) or not v
                or not all(isinstance(c, str) and re.fullmatch(r"[A-Za-z0-9/_.\-]+", c) for c in v)):
            raise _Bad(f"must be a non-empty list of codec names, got {_show(v)}")
        return tuple(v)

    return _Field("list", check, default)


def _dataclass_check(build: Callable[..., Any], what: str) -> Callable[[Any], Any]:
    """Check one table by building its dataclass; the dataclass's ValueError is the why."""

    def check(v: Any, sub: str = "") -> Any:
        if not isinstance(v, dict):
            raise _Bad(f"must be a table ({what}), got {_show(v)}", sub)
        try:
            return build(**v)
        except TypeError as e:  # unknown or missing keys
            raise _Bad(str(e).split(".__init__() ")[-1], sub) from None
        except ValueError as e:
            raise _Bad(str(e), sub) from None

    return check


def _templates_check(v: Any) -> Mapping[str, str]:
    if not isinstance(v, dict) or not all(isinstance(k, str) and NAME_RE.match(k) and isinstance(t, str)
                                          and t.strip() for k, t in v.items()):
        raise _Bad(f"must be a table of name = \"template text\", got {_show(v)}")
    return types.MappingProxyType(dict(v))


def _names_list(default: tuple[str, ...]) -> _Field:
    def check(v: Any) -> tuple[str, ...]:
        if not isinstance(v, (list, tuple)) or not v or not all(isinstance(x, str) and NAME_RE.match(x)
                                                                 for x in v):
            raise _Bad(f"must be a non-empty list of names, got {_show(v)}")
        return tuple(v)

    return _Field("list", check, default)


def _positive(default: float) -> _Field:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 10_000:
            raise _Bad(f"must be a number > 0 and <= 10000, got {_show(v)}")
        return float(v)

    return _Field("float", check, float(default))




E164_RE = re.compile(r"^\+[1-9][0-9]{7,14}$")


def _e164_list(default: tuple[str, ...]) -> _Field:
    def check(v: Any) -> tuple[str, ...]:
        if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) and E164_RE.match(x) for x in v):
            raise _Bad(f"must be a list of E.164 numbers like \"+8613800138000\", got {_show(v)}")
        return tuple(v)

    return _Field("list", check, default)
