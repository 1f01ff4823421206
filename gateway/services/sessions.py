"""Incident sessions: create, list, get, close. A session groups the calls made for it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog

from gateway.audit.request import RequestAudit
from gateway.errors import Conflict, NotFound
from gateway.events import EventBus
from gateway.protocol.codec import EncodedResult, encode_json
from gateway.state import SESSION_MACHINE, SessionInput, SessionState
from gateway.store import SESSION_COLUMNS, Store
from gateway.timeutil import now_iso

log = structlog.get_logger(__name__)


class SessionService:
    def __init__(self, store: Store, bus: EventBus) -> None:
        self._store = store
        self._bus = bus
        # Called with a session id when it closes, so its live calls can be ended.
        self.on_close: list[Callable[[str], Awaitable[None]]] = []
        # Per session: a close holds its lock from the state check to the stored `closed`; work
        # attaching to the session (hold_open) takes it only to check and count itself in, and a
        # close waits until no holder is left before ending what they attached.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._holders: dict[str, int] = {}
        self._idle: dict[str, asyncio.Event] = {}
        self._lists: dict[str | None, tuple[int, EncodedResult]] = {}  # state -> (sessions_version, list)
        self._encoded_rows: dict[tuple, tuple[dict, str]] = {}  # the last list's rows: (dict, JSON)

    async def create(self, *, title: str | None, created_by: str, origin: str = "dispatcher",
                     audit: RequestAudit | None = None) -> dict:
        """A new open session, stored with its `session.state` event (and the request's ok audit
        row, `audit`) in one commit."""
        session_id = uuid.uuid4().hex
        row = {
            "session_id": session_id,
            "title": title or "Incident",
            "state": SessionState.OPEN.value,
            "created_at": now_iso(),
            "closed_at": None,
            "created_by": created_by,
            "extra": {"origin": origin},
        }
        await self._store.put_session(row, event=("session.state", _public(row)), audit=audit)  # one commit
        # returned with no await since its version step: the lists kept at the version before it
        # lack exactly this session
        self._listed_after_create(self._store.sessions_version - 1, _public(row))
        log.info("session.created", session_id=session_id, created_by=created_by)
        return _public(row)

    def _listed_after_create(self, before: int, public: dict) -> None:
        """The lists kept at `before` (the version just before this create returned: they lack
        only it; writes still in progress are not in them and step the version when they
        return) made current without a read: the new session is appended to the lists of its
        state when it sorts last (created_at, session_id: the store's order) and they have room;
        the other states' lists are unchanged. Otherwise the next list reads the store."""
        now = self._store.sessions_version
        row = tuple(public[c] for c in SESSION_COLUMNS)  # as the store returns it
        for state, (version, result) in list(self._lists.items()):
            if version != before:
                continue
            if state is not None and state != public["state"]:
                self._lists[state] = (now, result)
                continue
            sessions = result["sessions"]
            last = sessions[-1] if sessions else None
            if len(sessions) >= _LIST_LIMIT or (
                    last is not None and (last["created_at"], last["session_id"]) >= (public["created_at"], public["session_id"])):
                continue  # a clock step back, or a full list: read again
            entry = self._encoded_rows.get(row) or _encode_row(row)
            self._encoded_rows[row] = entry  # the next read reuses it
            self._lists[state] = (now, EncodedResult(
                {"sessions": [*sessions, entry[0]]}, result.text[:-2] + ("," if sessions else "") + entry[1] + "]}"))

    async def require_open(self, session_id: str) -> dict:
        row = await self._row(session_id)
        SESSION_MACHINE.next(SessionState(row["state"]), SessionInput.ATTACH)
        return row

    @contextlib.asynccontextmanager
    async def hold_open(self, session_id: str) -> AsyncIterator[dict]:
        """Attach work to an open session (a call being placed, a broadcast being started): a
        `close` arriving meanwhile waits until the block is left, then ends what it attached
        (on_close hooks); a session closed or closing is refused (`invalid-state`)."""
        async with self._lock(session_id):
            row = await self.require_open(session_id)
            self._holders[session_id] = self._holders.get(session_id, 0) + 1
        try:
            yield row
        finally:
            left = self._holders.pop(session_id) - 1
            if left:
                self._holders[session_id] = left
            elif (idle := self._idle.pop(session_id, None)) is not None:
                idle.set()

    def _lock(self, session_id: str) -> asyncio.Lock:
        lock = self._locks.get(session_id)
        if lock is None:
            lock = self._locks[session_id] = asyncio.Lock()
        return lock

    async def get(self, session_id: str) -> dict:
        row = await self._row(session_id)
        calls = await self._store.list_calls(session_id=session_id)
        return {**_public(row), "calls": calls}

    async def list(self, state: str | None = None) -> list[dict]:
        """The sessions (of one state), as stored; read-only (shared, see `list_result`)."""
        return (await self.list_result(state))["sessions"]

    async def list_result(self, state: str | None = None) -> EncodedResult:
        """`{"sessions": [...]}`, kept per state until the next session write returns
        (`Store.sessions_version`): a list between two writes reads, builds and encodes nothing
        (its JSON text is made once, `EncodedResult`). After a write, the list is read again,
        but only sessions whose row changed get a new dict and JSON text. Shared: read-only."""
        version, quiet = self._store.sessions_version, not self._store.sessions_writing
        cached = self._lists.get(state)
        if cached is not None and cached[0] == version:
            return cached[1]
        rows = await self._store.list_session_rows(state=state, limit=_LIST_LIMIT)
        known, fresh = self._encoded_rows, {}
        for row in rows:
            fresh[row] = known.get(row) or _encode_row(row)
        if state is None or state in _STATES:
            self._encoded_rows = fresh  # bounded by one list: rows gone or changed are dropped
        parts = [fresh[row] for row in rows]
        result = EncodedResult({"sessions": [d for d, _ in parts]},
                               '{"sessions":[' + ",".join(t for _, t in parts) + "]}")
        if (quiet and not self._store.sessions_writing and self._store.sessions_version == version
                and (state is None or state in _STATES)):
            # no write in progress at either end, none returned between; a state no session
            # has is not kept
            self._lists[state] = (version, result)
        return result

    async def close(self, session_id: str, *, closed_by: str, audit: RequestAudit | None = None) -> dict:
        """Close once: a second close (even a concurrent one) is `invalid-state`. Work attached
        with `hold_open` finishes attaching first; then the hooks end it (live calls get a BYE)."""
        async with self._lock(session_id):
            row = await self._row(session_id)
            try:
                nxt = SESSION_MACHINE.next(SessionState(row["state"]), SessionInput.CLOSE)
            except Conflict:
                raise Conflict("session is already closed", details={"session_id": session_id}) from None
            if self._holders.get(session_id):
                idle = self._idle.setdefault(session_id, asyncio.Event())
                await idle.wait()  # nobody new gets in: attaching needs this lock
            for hook in self.on_close:
                await hook(session_id)
            row = {**row, "state": nxt.value, "closed_at": now_iso()}
            row["extra"] = {**(row.get("extra") or {}), "closed_by": closed_by}
            await self._store.put_session(row, event=("session.state", _public(row)), audit=audit)
        log.info("session.closed", session_id=session_id, closed_by=closed_by)
        return _public(row)

    async def _row(self, session_id: str) -> dict:
        row = await self._store.get_session(session_id)
        if row is None:
            raise NotFound("no such session", reason="no-such-session", details={"session_id": session_id})
        return row


_STATES = frozenset(s.value for s in SessionState)
_LIST_LIMIT = 1000  # session.list: the oldest 1000 (the store's order)


def _encode_row(row: tuple) -> tuple[dict, str]:
    """A stored session's public dict (`Store.list_session_rows` order) and its JSON text."""
    public = dict(zip(SESSION_COLUMNS, row))
    return public, encode_json(public)


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in ("session_id", "title", "state", "created_at", "closed_at", "created_by")}
