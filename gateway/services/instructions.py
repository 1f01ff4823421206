"""Instructions to field terminals: delivered at least once, acknowledged, and sent by SMS when the
field is silent.

`terminal.instruct` stores the instruction and one delivery row per terminal (state `queued`), with
their `terminal.instruction` events, in one unit of work; then pushes it to the terminals online.
A terminal's client confirms it holds an instruction (`terminal.received`, or `terminal.ack`
which implies it); until then the gateway pushes every undelivered instruction of a terminal, in
delivery order, on each of its hellos and again every `terminals.redeliver_s` (at least once; the
client dedupes by `instruction_id`, so the terminal sees each once). With `fallback: "sms"` a
delivery carries a deadline: now for a terminal offline, `ack_timeout_s` from now otherwise; at
the deadline, a delivery still not acknowledged (not delivered, when no ack is required) goes
`fallback-sms` and its text goes through the SMS outbox to the terminal's `phone`, under a
message id derived from the delivery so a restart never queues it twice; its `sms.status` events
carry `ref: {instruction_id, terminal_id}`. Rows, deadlines and pending SMS are read back at start:
nothing depends on memory surviving a restart. The state table is gateway/terminals/instruction.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
import uuid
from typing import TYPE_CHECKING, Any

import structlog

from gateway.directory import GROUP_PREFIX, Directory
from gateway.errors import GatewayError, InvalidParams, NotFound
from gateway.protocol.terminals import INSTRUCTION_NOTIFICATION
from gateway.services.sessions import SessionService
from gateway.services.sms import SmsService
from gateway.services.terminals import TerminalService
from gateway.store import Store, Tx
from gateway.store.terminals import (
    deliveries,
    get_instruction,
    get_instructions,
    insert_deliveries,
    insert_instruction,
    latest_incidents,
    update_delivery,
)
from gateway.tasks import OwnedTasks
from gateway.terminals import DELIVERY_MACHINE, DeliveryInput, DeliveryState, needs_fallback
from gateway.timeutil import now_iso

if TYPE_CHECKING:  # pragma: no cover
    from gateway.protocol import RequestContext
    from gateway.connection import Connection

log = structlog.get_logger(__name__)

PUSH_PAGE = 500  # undelivered instructions pushed to a terminal at once (the rest on the next round)
PUSH_CHUNK = 500  # terminals (deliveries) per read: a bounded number of SQL variables
SMS_AT_ONCE = 50  # fallback SMS queued at once (each a few store round trips; they share commits)
EVENT = "terminal.instruction"


class InstructionService:
    def __init__(self, store: Store, sessions: SessionService, sms: SmsService, terminals: TerminalService,
                 directory: Directory) -> None:
        self._store, self._sessions, self._sms = store, sessions, sms
        self._terminals, self._directory = terminals, directory
        self.config = terminals.config
        self._deadlines: list[tuple[float, int]] = []  # (epoch, delivery_id), a heap
        # delivery -> {conn: (mono, terminal)}: what was pushed where, and when
        self._pushed: dict[int, dict[str, tuple[float, str]]] = {}
        self._wake = asyncio.Event()
        self._tasks = OwnedTasks()
        terminals.on_connected.append(self._on_connected)

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        for tid, session_id in (await latest_incidents(self._store)).items():
            if tid in self._terminals.roster:
                self._terminals.set_incident(tid, session_id)
        for row in await deliveries(self._store, "deadline IS NOT NULL"):
            heapq.heappush(self._deadlines, (row["deadline"], row["delivery_id"]))
        # Gone fallback-sms before the SMS was queued (the gateway stopped in between): queue it.
        rows = await deliveries(self._store, "state = 'fallback-sms' AND sms_queued = 0"
                                " AND sms_message_id IS NOT NULL AND error IS NULL")
        if rows:
            texts = await get_instructions(self._store, [r["instruction_id"] for r in rows])
            self._tasks.spawn(self._send_sms([(r, texts[r["instruction_id"]]) for r in rows]), "instructions.sms")
        self._tasks.spawn(self._run_timer(), "instructions.timer")

    async def stop(self) -> None:
        await self._tasks.cancel_all()

    # methods -------------------------------------------------------------------------------
    async def instruct(self, principal: str, p: Any) -> dict:
        tids = self._resolve(p.targets)
        if p.session_id is not None:
            session_id = p.session_id
            await self._sessions.require_open(session_id)
        else:  # a session of its own (as sms.send does): its events, acks and SMS in one incident
            session_id = (await self._sessions.create(title="Instruction", created_by=principal,
                                                      origin="instruction"))["session_id"]
        ack_timeout = p.ack_timeout_s or self.config.ack_timeout_s
        now, created = time.time(), now_iso()
        ins = {"instruction_id": uuid.uuid4().hex, "session_id": session_id, "text": p.text,
               "require_ack": p.require_ack, "ack_timeout_s": ack_timeout, "fallback": p.fallback,
               "targets": list(p.targets), "created_by": principal, "created_at": created}

        def deadline(tid: str) -> float | None:
            if p.fallback == "none":
                return None
            return now + ack_timeout if self._terminals.online(tid) else now

        async def work(tx: Tx) -> list[dict]:
            await insert_instruction(tx, ins)
            await insert_deliveries(tx, ins["instruction_id"], {tid: deadline(tid) for tid in tids}, created)
            rows = await deliveries(tx, "instruction_id = ?", (ins["instruction_id"],))
            await tx.emit_many(EVENT, ins["session_id"], [_event(ins, row, "queued") for row in rows])
            return rows

        rows = await self._store.atomic(work)
        for row in rows:
            if row["deadline"] is not None:
                heapq.heappush(self._deadlines, (row["deadline"], row["delivery_id"]))
            self._terminals.set_incident(row["terminal_id"], session_id)
        self._wake.set()
        log.info("instruction.queued", instruction_id=ins["instruction_id"], terminals=len(rows),
                 fallback=p.fallback, session_id=session_id)
        # Pushed by the service: the reply does not wait for them.
        self._tasks.spawn(self._push([t for t in tids if self._terminals.online(t)]), "instructions.push")
        return {"instruction_id": ins["instruction_id"], "session_id": ins["session_id"],
                "terminals": [{"terminal_id": r["terminal_id"], "state": r["state"]} for r in rows]}

    async def received(self, ctx: RequestContext, instruction_id: str, terminal_id: str | None) -> dict:
        return await self._step(ctx, instruction_id, terminal_id, DeliveryInput.DELIVER)

    async def ack(self, ctx: RequestContext, instruction_id: str, terminal_id: str | None) -> dict:
        return await self._step(ctx, instruction_id, terminal_id, DeliveryInput.ACK)

    async def get(self, instruction_id: str) -> dict:
        ins = await get_instruction(self._store, instruction_id)
        if ins is None:
            raise NotFound("no such instruction", reason="no-such-instruction",
                           details={"instruction_id": instruction_id})
        out = []
        for row in await deliveries(self._store, "instruction_id = ?", (instruction_id,)):
            entry = _public(row)
            if row["sms_message_id"]:
                sms = await self._store.get_sms(row["sms_message_id"])
                entry["sms"] = {"message_id": row["sms_message_id"], "state": sms["state"] if sms else None,
                                "error": sms.get("error") if sms else None}
            out.append(entry)
        return {**ins, "terminals": out}

    async def of_terminal(self, ctx: RequestContext, terminal_id: str | None, state: str, limit: int,
                          after: str | None) -> dict:
        """terminal.instructions: a terminal's own instructions, in the order given (a reinstalled
        app gets back what it held; pushes resume only for those it never received)."""
        tid = self._terminals.acting_for(ctx, terminal_id)
        where, params = ["terminal_id = ?"], [tid]
        if state == "open":
            where.append("state != 'acknowledged'")
        elif state != "all":
            where.append("state = ?")
            params.append(state)
        if after is not None:
            where.append("delivery_id > coalesce((SELECT delivery_id FROM terminal_deliveries"
                         " WHERE instruction_id = ? AND terminal_id = ?), -1)")
            params += [after, tid]
        rows = await deliveries(self._store, " AND ".join(where), params, limit + 1)
        more, rows = len(rows) > limit, rows[:limit]
        texts = await get_instructions(self._store, [r["instruction_id"] for r in rows])
        items = [{**_payload(texts[r["instruction_id"]]), **_public(r)}
                 for r in rows if r["instruction_id"] in texts]
        return {"terminal_id": tid, "instructions": items,
                "next_after": rows[-1]["instruction_id"] if more else None}

    # internals -----------------------------------------------------------------------------
    def _resolve(self, targets: list[str]) -> list[str]:
        out: dict[str, None] = {}
        for t in targets:
            if t.startswith(GROUP_PREFIX):
                members = [ep.name for ep in self._directory.list(kind="terminal", group=t)]
                if not members:
                    raise NotFound(f"no terminals in {t}", reason="no-such-terminal", details={"target": t})
                out.update(dict.fromkeys(members))
            else:
                self._terminals.require(t)
                out[t] = None
        if not out:
            raise InvalidParams("no terminals", reason="invalid-params")
        return list(out)

    async def _step(self, ctx: RequestContext, instruction_id: str, terminal_id: str | None,
                    inp: DeliveryInput) -> dict:
        tid = self._terminals.acting_for(ctx, terminal_id)

        async def work(tx: Tx) -> dict:
            rows = await deliveries(tx, "instruction_id = ? AND terminal_id = ?", (instruction_id, tid))
            ins = await get_instruction(tx, instruction_id)
            if not rows or ins is None:
                raise NotFound("no such instruction for this terminal", reason="no-such-instruction",
                               details={"instruction_id": instruction_id, "terminal_id": tid})
            row, stamp = rows[0], now_iso()
            state = DeliveryState(row["state"])
            changes: dict[str, Any] = {}
            if row["delivered_at"] is None:
                changes["delivered_at"] = stamp
            if DELIVERY_MACHINE.allows(state, inp):
                new = DELIVERY_MACHINE.next(state, inp)
                if new is not state:
                    changes["state"] = new.value
                if new is DeliveryState.ACKNOWLEDGED:
                    changes.update(acknowledged_at=stamp, deadline=None)
                elif new is DeliveryState.DELIVERED and not ins["require_ack"]:
                    changes["deadline"] = None
            if changes:
                await update_delivery(tx, row["delivery_id"], changes)
                row.update(changes)
                step = "acknowledged" if "acknowledged_at" in changes else "delivered"
                await tx.emit(EVENT, ins["session_id"], _event(ins, row, step))
            return row

        row = await self._store.atomic(work)
        self._pushed.pop(row["delivery_id"], None)
        return {"instruction_id": instruction_id, "terminal_id": tid, "state": row["state"]}

    async def _on_connected(self, tid: str, conn: Connection) -> None:
        # A task of ours: the hello's reply goes out first, then the instructions it missed.
        self._tasks.spawn(self._push([tid]), f"instructions.push-{tid}")

    async def _push(self, tids: list[str]) -> None:
        """Push each terminal's undelivered instructions, in order, to its newest connection;
        one already pushed there is pushed again only after `redeliver_s`. The sending runs with
        no await in it, so two pushes for one terminal never interleave (the later one skips
        what the earlier sent), and order holds."""
        rows: list[dict] = []
        for i in range(0, len(tids), PUSH_CHUNK):  # a bounded number of SQL variables per read
            chunk = tids[i:i + PUSH_CHUNK]
            rows += await deliveries(self._store, f"terminal_id IN ({', '.join('?' * len(chunk))})"
                                     " AND delivered_at IS NULL", chunk, PUSH_PAGE * len(chunk))
        texts = await get_instructions(self._store, [r["instruction_id"] for r in rows])
        mono, full = time.monotonic(), set()
        for row in rows:
            tid = row["terminal_id"]
            conns = self._terminals.connections(tid)
            if not conns or tid in full:
                continue
            conn = conns[-1]
            pushed = self._pushed.get(row["delivery_id"], {}).get(conn.id)
            if pushed is not None and mono - pushed[0] < self.config.redeliver_s:
                continue
            # sent or not, the redelivery round comes back to it
            self._pushed.setdefault(row["delivery_id"], {})[conn.id] = (mono, tid)
            if not conn.send_notification(INSTRUCTION_NOTIFICATION, _payload(texts[row["instruction_id"]])):
                full.add(tid)  # its send queue is full: the rest waits for that round too
        if rows:
            self._wake.set()

    async def _run_timer(self) -> None:
        while True:
            self._wake.clear()
            waits = [self._deadlines[0][0] - time.time()] if self._deadlines else []
            if self._pushed:
                first = min(m for at in self._pushed.values() for m, _ in at.values())
                waits.append(first + self.config.redeliver_s - time.monotonic())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, min(waits)) if waits else None):
                    await self._wake.wait()
            try:
                due = []
                while self._deadlines and self._deadlines[0][0] <= time.time():
                    due.append(heapq.heappop(self._deadlines)[1])
                for i in range(0, len(due), PUSH_CHUNK):
                    await self._deadlines_due(due[i:i + PUSH_CHUNK])
                await self._redeliver()
            except Exception:  # the store refused (shutting down): the next round tries again
                log.exception("instructions.timer.failed")

    async def _redeliver(self) -> None:
        due: set[str] = set()
        for did, at in list(self._pushed.items()):
            for cid, (mono, tid) in list(at.items()):
                if self._terminals.connection(cid) is None:
                    del at[cid]  # that connection is gone: its next hello pushes again
                elif time.monotonic() - mono >= self.config.redeliver_s:
                    due.add(tid)
            if not at:
                del self._pushed[did]
        if due:
            await self._push(sorted(due))

    async def _deadlines_due(self, delivery_ids: list[int]) -> None:
        """Ack deadlines come due (all the offline terminals of an instruction at once): those
        that still need it go to SMS, in one unit of work, and their SMS are queued together."""

        async def work(tx: Tx) -> list[tuple[dict, dict]]:
            rows = await deliveries(tx, f"delivery_id IN ({', '.join('?' * len(delivery_ids))})"
                                    " AND deadline IS NOT NULL", delivery_ids)
            texts = await get_instructions(tx, [r["instruction_id"] for r in rows])
            fell: list[tuple[dict, dict]] = []
            for row in rows:
                ins, state = texts[row["instruction_id"]], DeliveryState(row["state"])
                if not needs_fallback(state, ins["require_ack"]):
                    await update_delivery(tx, row["delivery_id"], {"deadline": None})
                    continue
                phone = self._directory.get(row["terminal_id"]).phone
                changes: dict[str, Any] = {"state": DELIVERY_MACHINE.next(state, DeliveryInput.FALLBACK).value,
                                           "deadline": None, "fallback_at": now_iso()}
                if phone:
                    changes["sms_message_id"] = f"ins-{row['instruction_id']}-{row['delivery_id']}"
                else:
                    changes["error"] = "no-phone"
                await update_delivery(tx, row["delivery_id"], changes)
                row.update(changes)
                fell.append((row, ins))
            await _emit(tx, fell, "fallback-sms")
            return fell

        fell = await self._store.atomic(work)
        for row, ins in fell:
            log.info("instruction.fallback-sms", instruction_id=ins["instruction_id"],
                     terminal_id=row["terminal_id"], error=row["error"])
        await self._send_sms([(row, ins) for row, ins in fell if row["sms_message_id"]])

    async def _send_sms(self, rows: list[tuple[dict, dict]]) -> None:
        """Queue the fallback SMS of these deliveries (row, its instruction), `SMS_AT_ONCE` at a
        time; whether each was queued is recorded for all of them in one unit."""
        outcome: dict[int, dict[str, Any]] = {}
        texts = {row["delivery_id"]: ins for row, ins in rows}

        async def one(row: dict, ins: dict) -> None:
            try:
                await self._sms.send(principal=ins["created_by"] or "gateway",
                                     to=[self._directory.get(row["terminal_id"]).phone or ""],
                                     body=ins["text"], template=None, variables=None,
                                     session_id=ins["session_id"], sender=None,
                                     message_id=row["sms_message_id"],
                                     ref={"instruction_id": ins["instruction_id"], "terminal_id": row["terminal_id"]})
                outcome[row["delivery_id"]] = {"sms_queued": 1}
            except GatewayError as err:  # no provider, the session closed meanwhile ...: on record
                log.warning("instruction.sms-failed", instruction_id=ins["instruction_id"], reason=err.reason)
                outcome[row["delivery_id"]] = {"error": err.reason}

        failed: list[BaseException] = []
        for i in range(0, len(rows), SMS_AT_ONCE):
            done = await asyncio.gather(*(one(row, ins) for row, ins in rows[i:i + SMS_AT_ONCE]),
                                        return_exceptions=True)
            failed += [r for r in done if isinstance(r, BaseException)]

        async def work(tx: Tx) -> None:
            for delivery_id, changes in outcome.items():
                await update_delivery(tx, delivery_id, changes)
            failed_ids = [did for did, changes in outcome.items() if "error" in changes]
            if failed_ids:  # seen by the consoles: these terminals were not texted
                now = await deliveries(tx, f"delivery_id IN ({', '.join('?' * len(failed_ids))})", failed_ids)
                await _emit(tx, [(row, texts[row["delivery_id"]]) for row in now], "sms-failed")

        if outcome:
            await self._store.atomic(work)
        if failed:  # not the gateway's typed refusal: left for the next start to retry
            raise failed[0]


def _public(row: dict) -> dict[str, Any]:
    return {k: row[k] for k in ("terminal_id", "state", "queued_at", "delivered_at", "acknowledged_at",
                                "fallback_at", "sms_message_id", "error")}


def _event(ins: dict, row: dict, step: str) -> dict[str, Any]:
    return {"instruction_id": ins["instruction_id"], "step": step, **_public(row)}


async def _emit(tx: Tx, rows: list[tuple[dict, dict]], step: str) -> None:
    """One `step` event per (delivery row, its instruction), a statement per incident."""
    by_session: dict[str, list[dict[str, Any]]] = {}
    for row, ins in rows:
        by_session.setdefault(ins["session_id"], []).append(_event(ins, row, step))
    for session_id, datas in by_session.items():
        await tx.emit_many(EVENT, session_id, datas)


def _payload(ins: dict) -> dict[str, Any]:
    """What the terminal receives (`terminal.instruction` notification)."""
    return {k: ins[k] for k in ("instruction_id", "text", "session_id", "require_ack", "created_at",
                                "created_by")}
