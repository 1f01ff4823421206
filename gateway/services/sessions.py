"""Incident sessions: create, list, get, close. A session groups the calls made for it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog

from gateway.errors import Conflict, NotFound
from gateway.events import EventBus
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

    async def create(self, *, title: str | None, created_by: str, origin: str = "dispatcher") -> dict:
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
        await self._store.put_session(row)
        await self._bus.publish("session.state", _public(row), session_id=session_id)
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
        return [_public(r) for r in await self._store.list_sessions(state=state)]

    async def close(self, session_id: str, *, closed_by: str) -> dict:
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
            await self._store.put_session(row)
            await self._bus.publish("session.state", _public(row), session_id=session_id)
        log.info("session.closed", session_id=session_id, closed_by=closed_by)
        return _public(row)

    async def _row(self, session_id: str) -> dict:
        row = await self._store.get_session(session_id)
        if row is None:
            raise NotFound("no such session", reason="no-such-session", details={"session_id": session_id})
        return row


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in ("session_id", "title", "state", "created_at", "closed_at", "created_by")}
