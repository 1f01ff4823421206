"""Calls taking pjsua call slots right after other calls ended, driven step by step through a
real `Worker` (endpoint, transport, account) in a process of its own:

    python -m tests.sip.slot_reuse MODE --port P --hole URI --busy URI --answer URI

outbound / inbound: the worker's slots are filled with calls to `--hole` (never answered), then
call A to `--busy` ends (its slot is free, its WCall waits in the graveyard). Then, as if both
happened in one loop turn, B is dialled to `--answer` (outbound) or arrives from the SIPp caller the
test starts on "A-ended" (inbound) and is answered; only then the graveyard is released.
redial: the worker is filled with answered calls to `--answer`, all are hung up, and B is dialled
at once, before any loop turn (pjsua still holds the slots until the BYEs are answered): it waits
for a slot while the loop turns.
B must be confirmed and end normally. Prints one JSON line: A's and B's slots, B's states, replies.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from sip.worker.process import Worker
from sip.worker.writer import Writer


def pump(worker: Worker, until: Any, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if until():
            return True
        worker.ep.libHandleEvents(10)
        if worker.slot_waits:
            worker.retry_slot_waits()  # a dial waiting for a slot (nothing else of the loop's turn)
    return bool(until())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.sip.slot_reuse")
    ap.add_argument("mode", choices=["outbound", "inbound", "redial"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--hole", required=True, help="a SIP URI that never answers")
    ap.add_argument("--busy", required=True, help="a SIP URI that answers 486")
    ap.add_argument("--answer", default="", help="a SIP URI that answers (outbound, redial)")
    ap.add_argument("--max-calls", type=int, default=4)
    args = ap.parse_args(argv)

    events: list[dict[str, Any]] = []
    writer = Writer(open(os.devnull, "wb", buffering=0))  # noqa: SIM115 - lives as long as the process
    worker = Worker({"host": "127.0.0.1", "port": args.port, "max_calls": args.max_calls, "log_level": 1}, writer)
    worker.emit = events.append  # type: ignore[method-assign]  # the test reads events here
    worker.start()
    if args.mode == "redial":
        # Fill the worker with answered calls, hang them all up, and dial at once (no loop turn in
        # between: the BYEs are not answered yet, pjsua still holds their slots).
        for i in range(args.max_calls):
            worker._handle({"cmd": "dial", "id": i, "call_id": f"old{i}", "uri": args.answer})
        pump(worker, lambda: sum(e.get("state") == "confirmed" for e in events) == args.max_calls, 10)
        for i in range(args.max_calls):
            worker._handle({"cmd": "hangup", "id": 20 + i, "call_id": f"old{i}"})
        a_slot, ended = None, not any(cid.startswith("old") for cid in worker.calls)
        worker._handle({"cmd": "dial", "id": 11, "call_id": "B", "uri": args.answer})
        # It waits for a slot (sip/worker/slot_waits.py) until a BYE is answered; then it is placed.
        pump(worker, lambda: "B" in worker.calls or any(e.get("id") == 11 for e in events), 10)
    else:
        for i in range(args.max_calls - 1):
            worker._handle({"cmd": "dial", "id": i, "call_id": f"hole{i}", "uri": args.hole})
        worker._handle({"cmd": "dial", "id": 10, "call_id": "A", "uri": args.busy})
        a_slot = worker.calls["A"].getId()  # no reference kept: the worker alone owns A
        ended = pump(worker, lambda: "A" not in worker.calls, 10)  # A got its 486: slot free, WCall dead
        print("A-ended", flush=True)  # the test starts its caller now (inbound)
        if args.mode == "outbound":
            worker._handle({"cmd": "dial", "id": 11, "call_id": "B", "uri": args.answer})
        else:
            pump(worker, lambda: any(not cid.startswith("hole") for cid in worker.calls), 10)
    b = next((c for cid, c in worker.calls.items() if not cid.startswith(("hole", "old"))), None)
    b_id = b.call_id if b is not None else None
    b_slot = b.getId() if b is not None else None
    if b is not None and args.mode == "inbound":
        worker._handle({"cmd": "answer", "id": 12, "call_id": b_id})
    del b
    worker._release_graveyard()  # the end of that loop turn

    def states() -> list[Any]:
        return [e.get("state") for e in events if e.get("call_id") == b_id and e.get("kind") == "state"]

    pump(worker, lambda: "confirmed" in states() or "disconnected" in states(), 10)
    if args.mode != "inbound" and b_id in worker.calls:
        worker._handle({"cmd": "hangup", "id": 13, "call_id": b_id})
    pump(worker, lambda: "disconnected" in states(), 10)  # the caller hangs up (inbound)
    replies = [e for e in events if e.get("type") == "reply" and e.get("id") in (11, 12, 13)]
    sys.stdout.write(json.dumps({"a_ended": ended, "a_slot": a_slot, "b_slot": b_slot, "b_states": states(),
                                 "replies": replies}) + "\n")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
