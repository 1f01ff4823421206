"""Dials waiting for a pjsua call slot, inside a worker (pure: no pjsua2, the caller's clock).

pjsua keeps the slot of a call the worker hung up until its BYE or CANCEL is answered (for an
INVITE nobody answered yet: until its transaction times out, 32 s), while the gateway has already
seen it `disconnected`. A dial in that window finds every slot taken (PJ_ETOOMANY) although
fewer than `max_calls` calls are live. Such a dial waits here, first come first served, while the
worker's main loop goes on (events, other commands, pings); the loop tries the first again after
each poll (sip/worker/commands.py `retry_slot_waits`). A dial is refused `no-capacity`:
- at once when no ended call holds a slot (nothing will free one: every slot is a live call's);
- when it has waited `wait_s`.
Commands naming a waiting call (a hangup that came before its reply) wait behind its dial, so a
call's commands keep their order; commands for other calls do not wait.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

SLOT_WAIT_S = 2.0  # how long a dial waits for an ended call's slot before `no-capacity`


@dataclass
class WaitingDial:
    call_id: str
    rid: Any  # the dial command's id: its reply comes once it is placed or refused
    deadline: float
    placement: Any  # what the worker needs to place it (commands.py `Placement`), opaque here
    held: list[dict[str, Any]] = field(default_factory=list)  # its call's later commands, in order


def no_slot_message(lingering: int, waited_s: float | None = None) -> str:
    """Why a dial found no slot: `lingering` slots are held by calls that ended for us."""
    if lingering <= 0:
        return "every pjsua call slot is held by a live call"
    held = f"{lingering} call slot{'s' if lingering != 1 else ''} still held by calls hung up before their BYE or CANCEL was answered"
    return held if waited_s is None else f"no call slot freed within {waited_s:g} s ({held})"


class SlotWaits:
    """The dials waiting for a slot, oldest first (main thread only)."""

    def __init__(self, wait_s: float = SLOT_WAIT_S) -> None:
        self.wait_s = wait_s
        self._dials: collections.OrderedDict[str, WaitingDial] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._dials)

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._dials

    def park(self, call_id: str, rid: Any, placement: Any, now: float) -> WaitingDial:
        if call_id in self._dials:
            raise ValueError(f"dial {call_id!r} already waits")
        dial = self._dials[call_id] = WaitingDial(call_id, rid, now + self.wait_s, placement)
        return dial

    def hold_back(self, cmd: dict[str, Any]) -> bool:
        """Keep a command naming a waiting call (not a dial) until that dial is settled."""
        dial = self._dials.get(cmd.get("call_id"))  # type: ignore[arg-type]
        if dial is None or cmd.get("cmd") == "dial":
            return False
        dial.held.append(cmd)
        return True

    def first(self) -> WaitingDial | None:
        return next(iter(self._dials.values()), None)

    def settle(self, dial: WaitingDial) -> list[dict[str, Any]]:
        """`dial` is placed or refused: it waits no more; its call's held commands, to run now."""
        self._dials.pop(dial.call_id, None)
        return dial.held

    def give_up(self, now: float, lingering: int) -> list[tuple[WaitingDial, str]]:
        """The dials to refuse now, with the reason's message, after the first found no slot and
        `lingering` slots are held by ended calls: every one when none is (nothing will free a
        slot), else those that have waited `wait_s`."""
        if lingering <= 0:
            return [(d, no_slot_message(0)) for d in self._dials.values()]
        return [(d, no_slot_message(lingering, self.wait_s)) for d in self._dials.values() if now >= d.deadline]

    def all(self) -> list[WaitingDial]:
        return list(self._dials.values())
