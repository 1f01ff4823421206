"""A control connection's states (gateway/connection.py), as a table: `NEXT[state][event]` is
the state after `event`; an event with no entry is a bug of ours (`Connection._transition` raises)."""

from __future__ import annotations

import enum


class ConnState(enum.IntEnum):
    OPEN = 1  # handshake done, waiting for hello
    AUTHENTICATED = 2
    CLOSING = 3
    CLOSED = 4


NEXT: dict[ConnState, dict[str, ConnState]] = {
    ConnState.OPEN: {"hello-ok": ConnState.AUTHENTICATED, "close": ConnState.CLOSING},
    ConnState.AUTHENTICATED: {"close": ConnState.CLOSING},
    ConnState.CLOSING: {"closed": ConnState.CLOSED},
    ConnState.CLOSED: {},
}
