"""The endpoints directory: named phones, speakers, trunks and field terminals, grouped, from
`[[directory.endpoint]]`.

A call target is resolved here: an endpoint name (`desk-1`), a group (`group:yard`) or a SIP/tel
URI passed through. The directory is immutable once built; gateway/config.py validates the table
and builds the `Endpoint` values, so a bad directory is a `ConfigError` at start, never a surprise
during a call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from gateway.errors import NotFound, TargetError
from gateway.protocol import uri as uri_syntax

KINDS = ("phone", "speaker", "trunk", "terminal")
TERMINAL = "terminal"  # a field terminal: speaks the control channel; `uri` optional, `phone` for SMS
GROUP_PREFIX = "group:"

# Names and group names: no colon (so names, "group:X" and URIs never collide), no spaces.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")

URI_SCHEMES = ("sip:", "sips:", "tel:")


def looks_like_uri(target: str) -> bool:
    """True when `target` names a URI scheme the gateway dials (whether valid or not)."""
    return target[:5].lower().startswith(URI_SCHEMES)


def uri_problem(uri: object) -> str | None:
    """Why `uri` is not a dialable sip:/sips:/tel: URI, or None when it is."""
    if not isinstance(uri, str):
        return f"must be a string, got {type(uri).__name__}"
    shown = '"' + uri + '"'
    if not looks_like_uri(uri):
        return f"must be a sip:, sips: or tel: URI, got {shown}"
    if uri[:4].lower() == "tel:":
        return None if uri_syntax.is_tel_uri(uri) else f"is not a valid tel: URI, got {shown}"
    if not uri_syntax.is_sip_uri(uri):
        return f"is not a valid SIP URI (sip:user@host[:port], port 1..65535), got {shown}"
    return None


def validate_uri(uri: str) -> str:
    """Return `uri` unchanged if dialable, else raise TargetError(reason="invalid-uri")."""
    why = uri_problem(uri)
    if why is not None:
        raise TargetError(f"target {why}", reason="invalid-uri", details={"uri": uri})
    return uri


@dataclass(frozen=True)
class Endpoint:
    """One entry of the directory. `profile` names how a speaker is driven (auto-answer, later).
    `phone` (E.164) is where SMS to this endpoint go (a terminal's SMS fallback); a terminal needs
    no `uri` (it is reached over the control channel), every other kind does."""

    name: str
    uri: str | None = None
    kind: str = "phone"
    groups: tuple[str, ...] = ()
    display_name: str | None = None
    profile: str | None = None
    phone: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.uri is not None or self.kind != TERMINAL:
            why = uri_problem(self.uri)
            if why is not None:
                raise ValueError(f"uri {why}")
        if not isinstance(self.groups, tuple):
            object.__setattr__(self, "groups", tuple(self.groups))

    def public(self) -> dict:
        """What a console sees (`directory.list`): every field; an endpoint holds no secret."""
        return self.to_dict()

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "uri": self.uri,
            "kind": self.kind,
            "groups": list(self.groups),
            "display_name": self.display_name,
            "profile": self.profile,
            "phone": self.phone,
        }


class Directory:
    """Immutable lookup of endpoints by name, group and kind, in configuration order."""

    def __init__(self, endpoints: Iterable[Endpoint] = ()) -> None:
        self._by_name: dict[str, Endpoint] = {}
        self._groups: dict[str, list[Endpoint]] = {}
        for ep in endpoints:
            if ep.name in self._by_name:
                raise ValueError(f"duplicate endpoint name {ep.name!r}")
            self._by_name[ep.name] = ep
            for g in ep.groups:
                self._groups.setdefault(g, []).append(ep)

    @classmethod
    def from_config(cls, config) -> Directory:  # config: gateway.config.Config
        return cls(config.directory)

    def __len__(self) -> int:
        return len(self._by_name)

    def __iter__(self) -> Iterator[Endpoint]:
        return iter(self._by_name.values())

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def get(self, name: str) -> Endpoint:
        try:
            return self._by_name[name]
        except KeyError:
            raise NotFound(
                f"no endpoint named {name!r}", reason="no-such-endpoint", details={"target": name}
            ) from None

    def groups(self) -> list[str]:
        return sorted(self._groups)

    def list(self, kind: str | None = None, group: str | None = None) -> list[Endpoint]:
        """Endpoints in configuration order, filtered by kind and/or group (unknown group: [])."""
        if group is not None and group.startswith(GROUP_PREFIX):
            group = group[len(GROUP_PREFIX):]
        pool = self._groups.get(group, []) if group is not None else self._by_name.values()
        return [ep for ep in pool if kind is None or ep.kind == kind]

    def terminal(self, name: str) -> Endpoint | None:
        """The terminal endpoint named `name`, or None."""
        ep = self._by_name.get(name)
        return ep if ep is not None and ep.kind == TERMINAL else None

    def resolve(self, target: str, *, dialable: bool = True) -> list[Endpoint]:
        """Endpoints a call to `target` rings (`dialable=False`: also those without a SIP/tel uri,
        i.e. terminals reached over the control channel only; SMS uses their `phone`).

        - `"NAME"`: that endpoint;
        - `"group:NAME"`: every member of the group, in configuration order;
        - a sip:/sips:/tel: URI: the directory entry with that URI if any, else an ad-hoc
          endpoint (name = uri, kind phone). An invalid URI raises TargetError("invalid-uri").

        Unknown names and groups raise NotFound(reason="no-such-endpoint"); a name with no uri
        when `dialable` raises TargetError(reason="not-dialable"); a group keeps its members
        with a uri.
        """
        if not isinstance(target, str) or not target:
            raise NotFound("empty target", reason="no-such-endpoint", details={"target": target})
        if target.startswith(GROUP_PREFIX):
            members = self._groups.get(target[len(GROUP_PREFIX):])
            if not members:
                raise NotFound(
                    f"no group named {target[len(GROUP_PREFIX):]!r}",
                    reason="no-such-endpoint",
                    details={"target": target},
                )
            return [ep for ep in members if ep.uri is not None or not dialable]
        if looks_like_uri(target):
            validate_uri(target)
            for ep in self._by_name.values():
                if ep.uri == target:
                    return [ep]
            return [Endpoint(name=target, uri=target)]
        ep = self.get(target)
        if dialable and ep.uri is None:
            raise TargetError(f"{target!r} is a terminal with no SIP uri", reason="not-dialable",
                              details={"target": target})
        return [ep]
