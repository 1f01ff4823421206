"""Conference trunks between workers (main thread): part of `Worker` (process.py).

A conference that spans workers (docs/design.md, "Conferences across workers") is a chain of
workers linked by trunks: a SIP call placed by pjsua from one worker to another's address,
`sip:conftrunk-<token>@host:port`, answered by the worker that was told the token
(`conf_trunk_accept`). On each side the trunk is one more member of the local conference
(conference.py): the bridge sends it every other local port, never itself, so what crosses a trunk
is that side's mix only and no member hears its own voice come back. A trunk is not a call of the
gateway: its call events are not emitted (`is_trunk`), it has no audio port to the gateway, and
`close_trunks` (from `conf_close`) hangs it up. The side that dialled it reports it instead as
`trunk` events, `up` (confirmed) and `down` (disconnected, for whatever reason: the other side
hung up, a worker restarted): the supervisor redials a trunk that went down (sip/conferences.py).
"""

from __future__ import annotations

from typing import Any

import pjsua2 as pj

from .commands import CommandError
from .pjcalls import WCall

TRUNK_USER = "conftrunk-"


class ConferenceTrunks:
    """Part of `Worker` (process.py): trunk call id -> conference id, tokens this worker answers."""

    calls: dict[str, WCall]
    _hangup: Any  # commands.py
    conf_trunks: dict[str, str]  # trunk call id -> conference id (until the call has ended)
    trunk_tokens: dict[str, str]  # token this worker answers trunks for -> conference id

    def cmd_conf_trunk_accept(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Answer a trunk call to `sip:conftrunk-<token>@` this worker into the conference."""
        conf_id, token = str(cmd.get("conference_id") or ""), str(cmd.get("token") or "")
        if not conf_id or len(token) < 16:
            raise CommandError("invalid-params", "conference_id and a token of 16 or more characters are required")
        self.trunk_tokens[token] = conf_id
        return {"accepting": True}

    def cmd_conf_trunk_dial(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Dial a trunk (call id `call_id`, to `uri`) and mix it into the local conference."""
        conf_id, call_id = str(cmd.get("conference_id") or ""), str(cmd.get("call_id") or "")
        if not conf_id or not call_id or not cmd.get("uri"):
            raise CommandError("invalid-params", "conference_id, call_id and uri are required")
        self.conf_trunks[call_id] = conf_id  # before the dial: none of its events is emitted
        try:
            self.cmd_dial({"call_id": call_id, "uri": cmd["uri"]}, may_wait=False)
        except Exception:
            self.conf_trunks.pop(call_id, None)
            raise
        return self.cmd_conf_join({"call_id": call_id, "conference_id": conf_id})

    def trunk_incoming(self, call: WCall) -> bool:
        """calls.py, for a new inbound call: a trunk with a token this worker was given is
        answered and mixed at once (outside the inbound admission share: the supervisor counted
        it); anything else is an ordinary call."""
        try:
            call.local_uri = call.getInfo().localUri
        except pj.Error:
            return False
        user = (call.local_uri or "").split("sip:", 1)[-1].split("@", 1)[0]
        conf_id = self.trunk_tokens.get(user.removeprefix(TRUNK_USER)) if user.startswith(TRUNK_USER) else None
        if conf_id is None:
            return False
        self.conf_trunks[call.call_id] = conf_id
        self.calls[call.call_id] = call  # referenced until DISCONNECTED
        prm = pj.CallOpParam(True)
        prm.statusCode = 200
        try:
            call.answer(prm)
        except pj.Error:
            return True  # it ends on its own; its events are not emitted
        self.cmd_conf_join({"call_id": call.call_id, "conference_id": conf_id})
        return True

    def is_trunk(self, msg: dict[str, Any]) -> bool:
        """An event of a trunk call: the gateway does not know these calls."""
        return msg.get("type") == "event" and msg.get("call_id") in self.conf_trunks

    def trunk_event(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        """What the supervisor hears of a trunk call's event (`is_trunk`): for a trunk this worker
        dialled, `up` when it is confirmed and `down` when it is disconnected; nothing else."""
        call = self.calls.get(str(msg.get("call_id")))
        if (msg.get("kind") != "state" or call is None or not call.outbound
                or msg.get("state") not in ("confirmed", "disconnected")):
            return None
        return {"type": "event", "call_id": call.call_id, "kind": "trunk",
                "state": "up" if msg["state"] == "confirmed" else "down",
                "sip_code": msg.get("sip_code"), "cause": msg.get("cause"),
                "extra": {"conference_id": self.conf_trunks[call.call_id]}}

    def cmd_conf_trunk_hangup(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Hang up the conference's trunk calls on this worker, both ways, and keep answering
        its token: the link drops as if the other side had gone, and is redialled (tests, and an
        operator resetting a bad link)."""
        conf_id = str(cmd.get("conference_id") or "")
        if not conf_id:
            raise CommandError("invalid-params", "conference_id is required")
        dropped = 0
        for call_id in [t for t, c in self.conf_trunks.items() if c == conf_id]:
            call = self.calls.get(call_id)
            if call is not None and not call.done and call.local_end is None:
                self._hangup(call, "hangup")
                dropped += 1
        return {"dropped": dropped}

    def close_trunks(self, conf_id: str) -> None:
        """The conference is over here: no more trunks are answered, its trunks are hung up."""
        for token in [t for t, c in self.trunk_tokens.items() if c == conf_id]:
            del self.trunk_tokens[token]
        for call_id in [t for t, c in self.conf_trunks.items() if c == conf_id]:
            call = self.calls.get(call_id)
            if call is not None and not call.done:
                self.cmd_conf_leave({"call_id": call_id})
                self._hangup(call, "hangup")

