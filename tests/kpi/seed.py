"""Dispatch facts as the services store them, for the indicators' tests on a real store."""

from __future__ import annotations

import json
import random
from typing import Any

from gateway.store import Store
from gateway.timeutil import epoch_to_iso

INSERT_CALL = ("INSERT INTO calls (call_id, direction, remote_uri, created_at, answered_at, ended_at, sip_code, cause)"
               " VALUES (?, 'outbound', ?, ?, ?, ?, ?, ?)")


async def seed_targets(store: Store, t0: float, span_s: float, n: int, rng: random.Random, prefix: str = "") -> None:
    """`n` targets started in [t0, t0 + span_s): calls (answered in time, late, hours late, busy),
    SMS (receipts in time, late, hours late, none), broadcast SIP targets (connected in time, late,
    never). Ids begin with `prefix` (one per call on a store)."""
    at = epoch_to_iso
    calls, sms, receipts, bcasts, events = [], [], [], [], []
    for i in range(n):
        s = t0 + rng.random() * span_s
        kind, fate = i % 3, rng.random()
        lag = 3 if fate < 0.7 else 50 if fate < 0.8 else 5000 if fate < 0.9 else None
        if kind == 0:
            calls.append((f"{prefix}c{i}", f"sip:d{i}@x", at(s), None if lag is None else at(s + lag), at(s + 90),
                          200 if lag else 486, "local-hangup" if lag else "busy"))
        elif kind == 1:
            sms.append((f"{prefix}m{i}", f"+86{i:09d}", "delivered" if lag else "sent", at(s),
                        at(s + (lag or 1))))
            if lag is not None:
                receipts.append((f"{prefix}SM{i}", f"{prefix}m{i}", at(s + lag)))
        else:
            bcasts.append((f"{prefix}b{i}", at(s), at(s + 60),
                           json.dumps({"targets": [{"target": "spk-1", "kind": "sip", "state": "ended"}]})))
            if lag is not None:
                events.append((at(s + lag / 5), json.dumps({"broadcast_id": f"{prefix}b{i}", "target": "spk-1",
                                                            "state": "connected"})))

    async def work(tx: Any) -> None:
        await tx.executemany(INSERT_CALL, calls)
        await tx.executemany("INSERT INTO sms (message_id, send_id, sender, recipient, body, state, created_at,"
                             " updated_at) VALUES (?, 's', '+1', ?, 'x', ?, ?, ?)", sms)
        await tx.executemany("INSERT INTO sms_receipts (provider, provider_id, status, message_id, received_at)"
                             " VALUES ('twilio', ?, 'delivered', ?, ?)", receipts)
        await tx.executemany("INSERT INTO broadcasts (broadcast_id, created_at, ended_at, extra) VALUES (?, ?, ?, ?)",
                             bcasts)
        await tx.executemany("INSERT INTO events (type, time, data) VALUES ('broadcast.target', ?, ?)", events)

    await store.atomic(work)

