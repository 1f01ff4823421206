"""Field terminals: presence, positions and the roster, around the sans-I/O cores of
gateway/terminals/ (`PresenceTable`, `LocationGate`).

A terminal is a directory endpoint of kind `terminal`; a `terminal` token whose principal is that
endpoint's name acts for it, and only for it. This service owns one timer task: it marks
terminals that missed their heartbeats offline (and closes their connections) and publishes the
trailing, coalesced `terminal.location` of each terminal whose reports came faster than
`terminals.location_interval_s`. Every position reported is stored (`terminal_track`) whether or
not it is published live. `terminal.presence` events say online/offline with the reason and the
last sign of life.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog

from gateway.config_schema import TerminalsConfig
from gateway.directory import Directory, TERMINAL
from gateway.errors import Forbidden, InvalidParams, NotFound
from gateway.events import EventBus
from gateway.protocol import RequestContext
from gateway.store import Store, Tx
from gateway.store.terminals import presences, put_presences
from gateway.tasks import OwnedTasks
from gateway.terminals import LocationGate, Offer, PresenceChange, PresenceTable, Reason
from gateway.timeutil import epoch_to_iso, iso_to_epoch

if TYPE_CHECKING:  # pragma: no cover
    from gateway.connection import Connection

log = structlog.get_logger(__name__)


@dataclass
class RosterEntry:
    """What the roster shows of a terminal besides presence."""

    position: dict[str, Any] | None = None  # the newest fix (by its time)
    battery: float | None = None
    status: str | None = None
    session_id: str | None = None  # the incident it currently works on


class TerminalService:
    def __init__(self, store: Store, bus: EventBus, directory: Directory, config: TerminalsConfig) -> None:
        self._store, self._bus, self._directory, self.config = store, bus, directory, config
        self.ids = [ep.name for ep in directory if ep.kind == TERMINAL]
        self._index = {tid: i for i, tid in enumerate(self.ids)}  # terminal.list's `after`
        self.presence = PresenceTable(self.ids, interval_s=config.heartbeat_interval_s,
                                      missed=config.missed_heartbeats)
        self.gate = LocationGate(config.location_interval_s)
        self.roster = {tid: RosterEntry() for tid in self.ids}
        self._conns: dict[str, Connection] = {}  # conn.id -> connection, for terminals online
        self._wake = asyncio.Event()
        self._stopping = False
        self._sleep_until: float | None = None  # what the timer waits for (monotonic); None: nothing
        self._tasks = OwnedTasks()
        self._timer: asyncio.Task[None] | None = None
        # Called with (terminal_id, connection) on each hello of a terminal (instructions to push).
        self.on_connected: list[Callable[[str, Connection], Awaitable[None]]] = []

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        for tid, point in (await self._store.last_track_points(self.ids)).items():
            entry = self.roster[tid]
            entry.position = _fix_of(point)
            entry.battery, entry.status = point.get("battery"), point.get("status")
        restored = []  # the gateway went down (kill -9) with these online
        for tid, kept in (await presences(self._store)).items():
            if tid in self.presence:
                last_seen = iso_to_epoch(kept["last_seen"]) if kept["last_seen"] else None
                change = self.presence.restore(tid, last_seen, kept["state"] == "online")
                if change is not None:
                    restored.append(change)
        await self._publish_presence(*restored)
        self._timer = self._own(self._run_timer(), "terminals.timer")

    def quiesce(self) -> None:
        """The gateway is stopping: connections closing from now on go offline `gateway-stopped`."""
        self._stopping = True

    async def stop(self) -> None:
        """After the control channel stopped: the newest positions published, anyone still
        online marked offline (`gateway-stopped`), the timer and close tasks ended."""
        if self._timer is not None:
            self._timer.cancel()
        for key, item, n in self.gate.flush():
            await self._publish_location(key, item, n)
        await self._publish_presence(*self.presence.stop_all())
        await self._tasks.cancel_all()

    def _own(self, coro: Any, name: str) -> asyncio.Task[Any]:
        return self._tasks.spawn(coro, name)

    # control-channel hooks ----------------------------------------------------------------
    def terminal_of(self, conn: Connection) -> str | None:
        """The terminal a connection speaks for (a `terminal` principal of the directory)."""
        p = conn.principal
        if p is None or p.role != TERMINAL or p.name not in self.presence:
            return None
        return p.name

    async def on_authenticated(self, conn: Connection) -> None:
        tid = self.terminal_of(conn)
        if tid is None:
            if conn.principal is not None and conn.principal.role == TERMINAL:
                conn.log.warning("terminal.unknown", principal=conn.principal.name)
            return
        self._conns[conn.id] = conn
        now = time.monotonic()
        change = self.presence.connected(tid, conn.id, now, time.time())
        self._poke(now + self.presence.window_s)
        if change is not None:
            await self._publish_presence(change)
        for callback in self.on_connected:
            await callback(tid, conn)

    async def on_closed(self, conn: Connection) -> None:
        tid = self.terminal_of(conn)
        self._conns.pop(conn.id, None)
        if tid is None:
            return
        change = self.presence.disconnected(tid, conn.id, Reason.GATEWAY_STOPPED if self._stopping
                                            else Reason.CONNECTION_CLOSED)
        if change is not None:
            await self._publish_presence(change)

    def on_ping(self, conn: Connection) -> None:
        tid = self.terminal_of(conn)
        if tid is not None:
            self.presence.beat(tid, conn.id, time.monotonic(), time.time())

    # methods -------------------------------------------------------------------------------
    def acting_for(self, ctx: RequestContext, named: str | None) -> str:
        """The terminal a request acts for: a terminal itself (naming another is forbidden);
        an admin must name one."""
        if ctx.role == TERMINAL:
            me = ctx.principal.name
            if me not in self.presence:
                raise Forbidden(f"principal {me!r} is not a terminal of the directory",
                                details={"principal": me})
            if named is not None and named != me:
                raise Forbidden("a terminal may act only for itself",
                                details={"terminal_id": named, "principal": me})
            return me
        if named is None:
            raise InvalidParams("terminal_id is required", details={"errors": [
                {"loc": "terminal_id", "msg": "required when not sent by the terminal itself",
                 "type": "missing"}]})
        self.require(named)
        return named

    def require(self, terminal_id: str) -> None:
        if terminal_id not in self.presence:
            raise NotFound(f"no terminal named {terminal_id!r}", reason="no-such-terminal",
                           details={"terminal_id": terminal_id})

    async def report(self, ctx: RequestContext, terminal_id: str | None, fix: dict[str, Any]) -> dict:
        tid = self.acting_for(ctx, terminal_id)
        if ctx.role == TERMINAL:  # a report is a heartbeat too
            self.presence.beat(tid, ctx.connection.id, time.monotonic(), time.time())
        await self._store.add_track_point(tid, fix)
        entry = self.roster[tid]
        fix_epoch = iso_to_epoch(fix["time"])
        if entry.position is None or fix_epoch >= iso_to_epoch(entry.position["time"]):
            entry.position = {k: v for k, v in fix.items() if k not in ("battery", "status")}
            if "battery" in fix:
                entry.battery = fix["battery"]
            if "status" in fix:
                entry.status = fix["status"]
        offer = self.gate.offer(tid, fix_epoch, fix, time.monotonic())
        if offer is Offer.PUBLISH:
            await self._publish_location(tid, fix, 0)
        elif offer is Offer.DEFERRED:
            self._poke(self.gate.next_due())
        return {"terminal_id": tid, "stored": True, "live": offer.value}

    def list(self, group: str | None = None, limit: int | None = None, after: str | None = None) -> dict:
        """The roster in directory order; with `limit`, one page (`next_after`: the cursor of
        the next, None on the last). A fleet's whole roster can outgrow a frame: page it."""
        members = {ep.name for ep in self._directory.list(kind=TERMINAL, group=group)}
        start = 0
        if after is not None:
            if after not in self._index:
                raise InvalidParams(f"after: no terminal {after!r}", reason="invalid-params",
                                    details={"loc": ["after"], "terminal_id": after})
            start = self._index[after] + 1
        page: list[dict] = []
        for tid in self.ids[start:]:
            if tid not in members:
                continue
            if limit is not None and len(page) == limit:
                return {"terminals": page, "next_after": page[-1]["terminal_id"]}
            page.append(self._entry(tid))
        return {"terminals": page, "next_after": None}

    async def track(self, ctx: RequestContext, terminal_id: str, since: str | None, until: str | None,
                    limit: int) -> dict:
        if ctx.role == TERMINAL:
            self.acting_for(ctx, terminal_id)
        self.require(terminal_id)
        limit = min(limit, self.config.track_max_points)
        points = await self._store.track(terminal_id, since, until, limit + 1)
        truncated = len(points) > limit
        points = points[:limit]
        return {"terminal_id": terminal_id, "points": points, "truncated": truncated,
                "next_since": points[-1]["time"] if truncated else None}

    def set_incident(self, terminal_id: str, session_id: str | None) -> None:
        """The incident a terminal now works on (shown by terminal.list; tags its events)."""
        self.roster[terminal_id].session_id = session_id

    def online(self, terminal_id: str) -> bool:
        return self.presence.online(terminal_id)

    def connections(self, terminal_id: str) -> list[Connection]:
        """The live connections of a terminal (newest last)."""
        found = (self._conns.get(cid) for cid in self.presence.get(terminal_id).connections)
        return [c for c in found if c is not None and not c.closed]

    def connection(self, conn_id: str) -> Connection | None:
        """A live connection of a terminal, by its id."""
        conn = self._conns.get(conn_id)
        return conn if conn is not None and not conn.closed else None

    # internals -----------------------------------------------------------------------------
    def _entry(self, tid: str) -> dict[str, Any]:
        ep, p, r = self._directory.get(tid), self.presence.get(tid), self.roster[tid]
        return {"terminal_id": tid, "display_name": ep.display_name, "groups": list(ep.groups),
                "presence": p.state.value,
                "last_seen": epoch_to_iso(p.last_seen) if p.last_seen is not None else None,
                "position": r.position, "battery": r.battery, "status": r.status,
                "session_id": r.session_id}

    def _poke(self, at: float | None) -> None:
        """Something is due at `at`: wake the timer if it sleeps towards a later time."""
        if at is not None and (self._sleep_until is None or at < self._sleep_until):
            self._wake.set()

    async def _run_timer(self) -> None:
        while True:
            self._wake.clear()
            deadlines = [d for d in (self.presence.next_deadline(), self.gate.next_due()) if d is not None]
            self._sleep_until = min(deadlines) if deadlines else None
            timeout = max(0.0, self._sleep_until - time.monotonic()) if self._sleep_until is not None else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            try:
                now = time.monotonic()
                expired = self.presence.expire(now)
                for change in expired:
                    for cid in change.connections:
                        conn = self._conns.pop(cid, None)
                        if conn is not None:
                            self._own(self._close(conn), f"terminals.close-{cid}")
                await self._publish_presence(*expired)  # a whole cell going silent: one unit
                for tid, fix, coalesced in self.gate.due(now):
                    await self._publish_location(tid, fix, coalesced)
            except Exception:  # the store refused (shutting down): the next round tries again
                log.exception("terminals.timer.failed")

    async def _close(self, conn: Connection) -> None:
        conn.log.info("terminal.heartbeat-missed")
        with contextlib.suppress(Exception):
            await conn.close(4008, "heartbeats missed")

    async def _publish_presence(self, *changes: PresenceChange) -> None:
        """The changes' events and the presence kept for the next start, together, in one unit
        of work however many terminals changed at once."""
        if not changes:
            return
        by_session: dict[str | None, list[dict[str, Any]]] = {}
        for change in changes:
            log.info("terminal.presence", terminal_id=change.terminal_id, state=change.state.value,
                     reason=change.reason.value)
            data = change.data(epoch_to_iso(change.last_seen) if change.last_seen is not None else None)
            by_session.setdefault(self.roster[change.terminal_id].session_id, []).append(data)

        async def work(tx: Tx) -> None:
            await put_presences(tx, [d for datas in by_session.values() for d in datas])
            for session_id, datas in by_session.items():
                await tx.emit_many("terminal.presence", session_id, datas)

        await self._store.atomic(work)

    async def _publish_location(self, tid: str, fix: dict[str, Any], coalesced: int) -> None:
        data = {"terminal_id": tid, **fix}
        if coalesced:
            data["coalesced"] = coalesced
        await self._bus.publish("terminal.location", data, self.roster[tid].session_id)


def _fix_of(point: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in point.items()
            if k not in ("id", "terminal_id", "received_at", "battery", "status")}
