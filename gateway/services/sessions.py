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
from gateway.protocol.codec import EncodedResult
from gateway.services.session_lists import SessionLists
from gateway.state import SESSION_MACHINE, SessionInput, SessionState
from gateway.store import Store
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
        self._lists = SessionLists(store)  # session.list, kept by id while every write is applied

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
        self._lists.written(_public(row))  # no await since the store's version step
        log.info("session.created", session_id=session_id, created_by=created_by)
        return _public(row)

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
        """`{"sessions": [...]}`, built from the sessions kept in memory while every session write
        is applied to them as it returns (gateway/services/session_lists.py): a list reads the
        store only after a write made elsewhere. Shared: read-only."""
        return await self._lists.result(state)

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
            self._lists.written(_public(row))
        log.info("session.closed", session_id=session_id, closed_by=closed_by)
        return _public(row)

    async def _row(self, session_id: str) -> dict:
        row = await self._store.get_session(session_id)
        if row is None:
            raise NotFound("no such session", reason="no-such-session", details={"session_id": session_id})
        return row


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in ("session_id", "title", "state", "created_at", "closed_at", "created_by")}
