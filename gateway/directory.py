"""The endpoints directory: named phones, speakers and trunks, grouped, from `[[directory.endpoint]]`.

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

KINDS = ("phone", "speaker", "trunk")
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
    """One entry of the directory. `profile` names how a speaker is driven (auto-answer, later)."""

    name: str
    uri: str
    kind: str = "phone"
    groups: tuple[str, ...] = ()
    display_name: str | None = None
    profile: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
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

    def resolve(self, target: str) -> list[Endpoint]:
        """Endpoints a call to `target` rings.

        - `"NAME"`: that endpoint;
        - `"group:NAME"`: every member of the group, in configuration order;
        - a sip:/sips:/tel: URI: the directory entry with that URI if any, else an ad-hoc
          endpoint (name = uri, kind phone). An invalid URI raises TargetError("invalid-uri").

        Unknown names and groups raise NotFound(reason="no-such-endpoint").
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
            return list(members)
        if looks_like_uri(target):
            validate_uri(target)
            for ep in self._by_name.values():
                if ep.uri == target:
                    return [ep]
            return [Endpoint(name=target, uri=target)]
        return [self.get(target)]
