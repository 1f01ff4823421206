"""The SMS ledger's cost in the store's database thread, per message, without the gateway around it.

    .venv/bin/python -m benchmarks.sms_ledger --messages 10000 --batch 50 [--count]

Run from the checkout to measure (its root comes first on sys.path; the checkout measured is
printed; to measure an older one, copy this file into its benchmarks/). A real store (SQLite in a temp dir) and
`SmsLedger` as `SmsService` drives it for SMPP: `queue` the messages (one send, `extra` as
`sms.send` stores it), then per batch of `--batch` (as the send window prepares them) `start_many`,
every answer (`accepted`, through its batcher) and every final receipt (`receipt`, naming its
message, as SMPP's do). Measured in the database thread, around each store round
(`write_with_units`): its CPU time (`time.thread_time`: SQLite's work and the ledger's Python), or
with `--count` the Python function calls it makes (`sys.setprofile`; C calls apart). The issue-13
figure this isolates: the ledger's units hold the interpreter lock against the event loop.
Prints one line per phase, per message.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import structlog

import gateway
from gateway.services.sms_ledger import SmsLedger
from gateway.store import Store, writer
from gateway.timeutil import now_iso
from sms.config import SmsConfig
from sms.provider import Receipt

PHASES = ("queue", "start", "accept", "receipt")


class Meter:
    """CPU seconds or Python calls in the database thread, around each store round."""

    def __init__(self, count: bool) -> None:
        self.count = count
        self.value = 0.0
        original = writer.write_with_units

        def profile(frame: Any, event: str, arg: Any) -> None:
            if event == "call":
                self.value += 1

        def measured(*a: Any, **k: Any) -> Any:
            t0 = time.thread_time()
            if count:
                sys.setprofile(profile)
            try:
                return original(*a, **k)
            finally:
                if count:
                    sys.setprofile(None)
                else:
                    self.value += time.thread_time() - t0

        writer.write_with_units = measured  # type: ignore[assignment]

    def take(self) -> float:
        value, self.value = self.value, 0.0
        return value


def _rows(n: int) -> list[dict[str, Any]]:
    send_id, now, created = uuid.uuid4().hex, time.time(), now_iso()
    return [{"message_id": f"m{i:06d}", "send_id": send_id, "session_id": "s1", "sender": "+15005550006",
             "recipient": f"+8613700{i:06d}", "body": "Flood warning district 3", "encoding": "GSM-7",
             "segments": 1, "state": "queued", "attempts": 0, "next_attempt_at": now, "provider": "smpp",
             "created_at": created, "updated_at": created, "extra": {"sent_by": "bench"}} for i in range(n)]


async def run(messages: int, batch: int, meter: Meter) -> dict[str, float]:
    out = dict.fromkeys(PHASES, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "gateway.db")
        await store.open()
        try:
            ledger = SmsLedger(store, "smpp", SmsConfig())
            rows = _rows(messages)
            meter.take()
            await ledger.queue(rows)
            out["queue"] += meter.take()
            for i in range(0, messages, batch):
                part = rows[i:i + batch]
                await ledger.start_many([r["message_id"] for r in part], hold=lambda row: False)
                out["start"] += meter.take()
                await asyncio.gather(*(ledger.accepted(r["message_id"], f"P{r['message_id']}") for r in part))
                out["accept"] += meter.take()
                results = await asyncio.gather(*(ledger.receipt(
                    Receipt(f"P{r['message_id']}", "delivered", message_id=r["message_id"], to=r["recipient"]),
                    can_list=False) for r in part))
                out["receipt"] += meter.take()
                assert set(results) == {"applied"}, results
        finally:
            await store.close()
    return {k: v / messages for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--count", action="store_true", help="Python calls instead of CPU time")
    a = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    per = asyncio.run(run(a.messages, a.batch, Meter(a.count)))
    steps = per["start"] + per["accept"] + per["receipt"]
    unit, scale = ("Python calls", 1.0) if a.count else ("us CPU", 1e6)
    print(f"checkout {Path(gateway.__file__).parents[1]}; {a.messages} messages, batches of {a.batch};"
          f" database thread, {unit} a message: " + ", ".join(f"{k} {v * scale:.1f}" for k, v in per.items())
          + f"; start + accept + receipt {steps * scale:.1f}")


if __name__ == "__main__":
    main()
