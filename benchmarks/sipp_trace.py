"""What a SIPp UAS saw of each call, from its message trace (-trace_msg; `--sipp-trace` of
benchmarks.broadcast): when each INVITE copy, our 100 and 200, and the caller's ACK went, and
which calls SIPp aborted (its error log).

    python -m benchmarks.sipp_trace /tmp/bench-sipp-xxxx/messages.log [--errors errors.log]

Prints one JSON object: calls, calls whose INVITE came more than once, when those copies came
(ms after the first INVITE, and after our 200), the ACK's delay after the 200, and the aborted
calls among them.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

_HEAD = re.compile(r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)$", re.M)
_ABORTED = re.compile(r"Aborting call on unexpected message for Call-Id '([^']+)'")


@dataclass
class Message:
    t: float  # seconds (the trace's wall clock)
    sent: bool  # by SIPp
    first_line: str
    call_id: str


@dataclass
class CallView:
    invites: list[float] = field(default_factory=list)
    trying: float | None = None
    ok: float | None = None  # our first 200 to the INVITE
    acks: list[float] = field(default_factory=list)


def parse(text: str) -> list[Message]:
    """Every message of a SIPp -trace_msg file, in order."""
    out: list[Message] = []
    heads = list(_HEAD.finditer(text))
    for i, h in enumerate(heads):
        body = text[h.end():heads[i + 1].start() if i + 1 < len(heads) else len(text)].strip("\n")
        lines = body.splitlines()
        if not lines or not lines[0].startswith("UDP message"):
            continue
        sip = [ln for ln in lines[1:] if ln.strip()]
        if not sip:
            continue
        call_id = next((ln.split(":", 1)[1].strip() for ln in sip if ln.lower().startswith(("call-id:", "i:"))), "")
        t = datetime.strptime(h.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        out.append(Message(t, lines[0].startswith("UDP message sent"), sip[0].strip(), call_id))
    return out


def calls(messages: list[Message]) -> dict[str, CallView]:
    views: dict[str, CallView] = {}
    for m in messages:
        v = views.setdefault(m.call_id, CallView())
        if not m.sent and m.first_line.startswith("INVITE "):
            v.invites.append(m.t)
        elif not m.sent and m.first_line.startswith("ACK "):
            v.acks.append(m.t)
        elif m.sent and m.first_line.startswith("SIP/2.0 100") and v.trying is None:
            v.trying = m.t
        elif m.sent and m.first_line.startswith("SIP/2.0 200") and v.ok is None and not v.acks:
            v.ok = m.t
    return views


def _ms(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": round(min(values) * 1000, 1), "p50": round(statistics.median(values) * 1000, 1),
            "max": round(max(values) * 1000, 1)}


def summary(messages: list[Message], errors: str = "") -> dict[str, Any]:
    views = calls(messages)
    aborted = set(_ABORTED.findall(errors))
    copies = {cid: v for cid, v in views.items() if len(v.invites) > 1}
    return {
        "calls": len(views),
        "invite_copies": len(copies),
        "aborted": len(aborted),
        "aborted_with_copy": len(aborted & copies.keys()),
        "copy_after_first_ms": _ms([v.invites[1] - v.invites[0] for v in copies.values()]),
        "copy_after_200_ms": _ms([v.invites[1] - v.ok for v in copies.values() if v.ok is not None]),
        "copies_before_200": sum(1 for v in copies.values() if v.ok is not None and v.invites[1] < v.ok),
        "trying_after_invite_ms": _ms([v.trying - v.invites[0] for v in views.values() if v.trying and v.invites]),
        "ack_after_200_ms": _ms([v.acks[0] - v.ok for v in views.values() if v.acks and v.ok is not None]),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.sipp_trace", description=__doc__.splitlines()[0])
    ap.add_argument("messages", type=Path)
    ap.add_argument("--errors", type=Path, default=None, help="SIPp's error log (default: errors.log beside it)")
    a = ap.parse_args(argv)
    errors = a.errors or a.messages.with_name("errors.log")
    text = errors.read_text(errors="replace") if errors.exists() else ""
    print(json.dumps(summary(parse(a.messages.read_text(errors="replace")), text)))


if __name__ == "__main__":
    main()
