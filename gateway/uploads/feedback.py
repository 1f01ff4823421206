"""`terminal.feedback`: text, photos and audio clips from a terminal into an incident.

A terminal posts only as itself (`TerminalService.acting_for`); the incident is the one named,
else the one the terminal currently works on (`terminal.list`'s `session_id`), else none. Every
upload it refers to must be one this principal uploaded (`uploads` row): an unknown hash is
`no-such-upload`, somebody else's is `forbidden`. The check, the references (`upload_refs`,
which make the files readable by the incident's readers and keep them from orphan pruning) and
the `terminal.feedback` event are one unit of work: all stored, or (refused) nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog

from gateway.errors import Forbidden, NotFound
from gateway.protocol import RequestContext
from gateway.services.sessions import SessionService
from gateway.services.terminals import TerminalService
from gateway.store import Store
from gateway.store.units import Tx
from gateway.timeutil import now_iso
from gateway.uploads.service import upload_url

log = structlog.get_logger(__name__)


class FeedbackService:
    def __init__(self, store: Store, sessions: SessionService, terminals: TerminalService) -> None:
        self._store, self._sessions, self._terminals = store, sessions, terminals

    async def post(self, ctx: RequestContext, terminal_id: str | None, session_id: str | None,
                   text: str | None, uploads: list[str]) -> dict[str, Any]:
        tid = self._terminals.acting_for(ctx, terminal_id)
        sid = session_id if session_id is not None else self._terminals.roster[tid].session_id
        if sid is not None:
            await self._sessions.require_open(sid)  # no-such-session, or invalid-state when closed
        feedback_id = uuid.uuid4().hex
        principal = ctx.principal.name

        async def work(tx: Tx) -> tuple[dict[str, Any], int]:
            files = await _owned(tx, principal, uploads)
            now = now_iso()
            for sha in uploads:
                await tx.execute("INSERT INTO upload_refs (sha256, feedback_id, principal, session_id, created_at)"
                                 " VALUES (?, ?, ?, ?, ?)", (sha, feedback_id, principal, sid, now))
            data: dict[str, Any] = {"feedback_id": feedback_id, "terminal_id": tid, "session_id": sid}
            if text is not None:
                data["text"] = text
            data["uploads"] = [files[sha] for sha in uploads]
            return data, await tx.emit("terminal.feedback", sid, data)

        data, seq = await self._store.atomic(work)
        log.info("terminal.feedback", terminal_id=tid, session_id=sid, feedback_id=feedback_id,
                 uploads=len(uploads), seq=seq)
        return {**data, "seq": seq}


async def _owned(tx: Tx, principal: str, shas: list[str]) -> dict[str, dict[str, Any]]:
    """The public description of each hash, all uploaded by `principal`; else NotFound/Forbidden."""
    if not shas:
        return {}
    marks = ", ".join("?" * len(shas))
    rows = await tx.fetchall(f"SELECT sha256, principal, type, size FROM uploads WHERE sha256 IN ({marks})",
                             tuple(shas))
    mine = {r[0]: {"sha256": r[0], "type": r[2], "size": r[3], "url": upload_url(r[0])}
            for r in rows if r[1] == principal}
    known = {r[0] for r in rows}
    theirs = [s for s in shas if s in known and s not in mine]
    if theirs:
        raise Forbidden("uploads of another principal cannot be referred to", details={"uploads": theirs})
    unknown = [s for s in shas if s not in known]
    if unknown:
        raise NotFound("no such upload", reason="no-such-upload", details={"uploads": unknown})
    return mine
