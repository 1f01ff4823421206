"""Incident sessions: create, list, get, close. A session groups the calls made for it."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
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

    async def get(self, session_id: str) -> dict:
        row = await self._row(session_id)
        calls = await self._store.list_calls(session_id=session_id)
        return {**_public(row), "calls": calls}

    async def list(self, state: str | None = None) -> list[dict]:
        return [_public(r) for r in await self._store.list_sessions(state=state)]

    async def close(self, session_id: str, *, closed_by: str) -> dict:
        row = await self._row(session_id)
        try:
            nxt = SESSION_MACHINE.next(SessionState(row["state"]), SessionInput.CLOSE)
        except Conflict:
            raise Conflict("session is already closed", details={"session_id": session_id}) from None
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
