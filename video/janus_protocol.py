"""The Janus WebSocket API without I/O: requests out, replies matched to their transactions.

`JanusProtocol.request()` builds a message with a fresh transaction (and the API secret) and
remembers what kind of answer ends it; `receive()` reads one decoded message from Janus and
returns what it means, as frozen dataclasses:

- `Reply(transaction, message)`: the request is answered (`success`, or the `event` that ends
  an asynchronous plugin request);
- `Acked(transaction)`: an asynchronous request was accepted (`ack`), its `event` comes later;
- `Failed(transaction, code, reason)`: Janus answered `error` (or a plugin reported one);
- `HandleEvent(handle_id, message)`: something about a handle nobody asked for (`webrtcup`,
  `media`, `hangup`, `slowlink`, `detached`, a plugin `event` without a transaction);
- `SessionGone(session_id)`: Janus timed the session out;
- `Unmatched(message)`: anything else (logged by the caller, never raised).

Which requests are asynchronous: a plugin `message` may be answered by `success` (a synchronous
plugin request, e.g. VideoRoom `create`) or by `ack` then an `event` with the same transaction
(`join`, `configure`, `start`, ...). Every other request (`create`, `attach`, `keepalive`,
`trickle`, `detach`, `destroy`) ends with its first answer, `ack` included. No asyncio here:
tests/video/test_janus_protocol.py drives it with plain dicts.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from typing import Any

from video.errors import JanusProtocolError

# Janus messages that concern a handle and come without being asked for.
HANDLE_NOTICES = frozenset({"webrtcup", "media", "hangup", "slowlink", "detached", "event", "trickle"})


@dataclass(frozen=True)
class Reply:
    transaction: str
    message: dict[str, Any]

    @property
    def plugin_data(self) -> dict[str, Any]:
        """`plugindata.data` of a plugin answer ({} when there is none)."""
        pd = self.message.get("plugindata") or {}
        data = pd.get("data") if isinstance(pd, dict) else None
        return data if isinstance(data, dict) else {}

    @property
    def jsep(self) -> dict[str, Any] | None:
        jsep = self.message.get("jsep")
        return jsep if isinstance(jsep, dict) else None


@dataclass(frozen=True)
class Acked:
    transaction: str


@dataclass(frozen=True)
class Failed:
    transaction: str
    code: int | None
    reason: str


@dataclass(frozen=True)
class HandleEvent:
    handle_id: int
    message: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.message.get("janus"))


@dataclass(frozen=True)
class SessionGone:
    session_id: int


@dataclass(frozen=True)
class Unmatched:
    message: dict[str, Any]


Output = Reply | Acked | Failed | HandleEvent | SessionGone | Unmatched


@dataclass
class _Pending:
    janus: str
    acked: bool = False


@dataclass
class JanusProtocol:
    """Transaction bookkeeping for one WebSocket connection to one Janus."""

    api_secret: str | None = None
    _pending: dict[str, _Pending] = field(default_factory=dict)
    _prefix: str = field(default_factory=lambda: secrets.token_hex(4))
    _counter: itertools.count = field(default_factory=itertools.count)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def request(
        self, janus: str, *, session_id: int | None = None, handle_id: int | None = None,
        **fields: Any,
    ) -> tuple[str, dict[str, Any]]:
        """A message to send and its transaction; the answer will be matched by `receive`."""
        tid = f"{self._prefix}-{next(self._counter)}"
        msg: dict[str, Any] = {"janus": janus, "transaction": tid}
        if session_id is not None:
            msg["session_id"] = session_id
        if handle_id is not None:
            msg["handle_id"] = handle_id
        if self.api_secret:
            msg["apisecret"] = self.api_secret
        msg.update({k: v for k, v in fields.items() if v is not None})
        self._pending[tid] = _Pending(janus)
        return tid, msg

    def forget(self, transaction: str) -> None:
        """The caller stopped waiting (timeout, cancel): a late answer becomes Unmatched."""
        self._pending.pop(transaction, None)

    def fail_all(self) -> list[str]:
        """The connection is gone: every pending transaction, now abandoned."""
        tids = list(self._pending)
        self._pending.clear()
        return tids

    def receive(self, message: Any) -> Output:
        if not isinstance(message, dict) or not isinstance(message.get("janus"), str):
            raise JanusProtocolError(f"not a Janus message: {str(message)[:200]}")
        kind = message["janus"]
        tid = message.get("transaction")
        pending = self._pending.get(tid) if isinstance(tid, str) else None
        if pending is not None:
            return self._answer(tid, pending, kind, message)
        if kind == "timeout" and isinstance(message.get("session_id"), int):
            return SessionGone(message["session_id"])
        sender = message.get("sender")
        if kind in HANDLE_NOTICES and isinstance(sender, int):
            return HandleEvent(sender, message)
        return Unmatched(message)

    def _answer(self, tid: str, pending: _Pending, kind: str, message: dict[str, Any]) -> Output:
        if kind == "ack" and pending.janus == "message" and not pending.acked:
            pending.acked = True
            return Acked(tid)
        del self._pending[tid]
        if kind == "error":
            err = message.get("error") or {}
            return Failed(tid, err.get("code"), str(err.get("reason", "janus error")))
        reply = Reply(tid, message)
        data = reply.plugin_data
        if "error" in data or "error_code" in data:  # a plugin's refusal (VideoRoom, SIP)
            return Failed(tid, data.get("error_code"), str(data.get("error", "plugin error")))
        return reply
