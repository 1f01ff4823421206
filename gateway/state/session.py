"""The incident session: open while its calls (later broadcasts, SMS, terminals) are live."""

from __future__ import annotations

import enum

from gateway.state.table import Machine


class SessionState(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class SessionInput(enum.StrEnum):
    ATTACH = "attach"  # a call (or other activity) joins the session
    CLOSE = "close"


SESSION_MACHINE: Machine[SessionState, SessionInput] = Machine(
    "session",
    {
        SessionState.OPEN: {
            SessionInput.ATTACH: SessionState.OPEN,
            SessionInput.CLOSE: SessionState.CLOSED,
        },
        SessionState.CLOSED: {},
    },
    final=frozenset({SessionState.CLOSED}),
)
