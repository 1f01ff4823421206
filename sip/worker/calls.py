"""The call lifecycle inside a worker (main thread): per-call audio ports, inbound calls, the end
of a call, unanswered-call deadlines, and the graveyard.

Part of `Worker` (process.py). The order of operations here fixes real crashes (docs/design.md,
"Audio port teardown" and "Call object teardown"): a port leaves the bridge only through
`release()`, on the main loop outside pjsua2 callbacks, while still referenced; an ended call's
`WCall` outlives its DISCONNECTED callback and is released from the graveyard, or disowned if a
live call already holds its pjsua slot.
"""

from __future__ import annotations

import collections
import sys
import time
import uuid
from typing import Any

import pjsua2 as pj

from ..admission import Refusal, RefusalBudget, admit_inbound, source_host
from .io_budget import REFUSAL_REASONS, REFUSE_FAILED, IoBudget, admit_invite
from .pjcalls import CLOCK_RATE, FRAME_MS, CallPort, PlayoutPort, RefusedCall, WAccount, WCall
from .writer import Writer

PENDING = "pending-invite"  # IoBudget owner of the INVITE being admitted, until it is a call


class CallLifecycle:
    """Part of `Worker` (process.py): calls from start to graveyard, on the main thread."""

    cfg: dict[str, Any]
    writer: Writer
    calls: dict[str, WCall]
    ports: dict[str, CallPort]
    graveyard: list[Any]
    inbound_refused: dict[str, int]
    refusal_budget: RefusalBudget
    held_refusals: collections.deque[tuple[WCall, Refusal]]
    acc: WAccount | None
    refusal_acc: WAccount | None  # loopback media: INVITEs refused by admission (endpoint.py)
    budget: IoBudget
    refusing: int | None  # the code for the INVITE select_account just sent to refusal_acc
    refused: dict[int, RefusedCall]  # pjsua call id -> refused call, until it is disconnected
    to_refuse: list[tuple[WCall | RefusedCall, Refusal]]  # refused calls not answered yet

    def ensure_port(self, call: WCall) -> CallPort:
        if call.port is None:
            call.port = self.new_port(call.call_id, "call")
        return call.port

    def bridge_port(self, call: WCall, am: Any) -> None:
        """The call's own port to and from its audio media `am` (main thread)."""
        port = self.ensure_port(call)
        if call.media_dir != "sendonly":  # a one-way call has nothing to hear
            am.startTransmit(port)
        port.startTransmit(am)

    def new_port(self, key: str, kind: str) -> CallPort:
        """A port in the bridge whose audio goes to and comes from the gateway as that of `key`
        (a call id, or a conference's console port id), registered in `ports`."""
        port = CallPort(key, self.writer, int(self.cfg.get("audio_queue_frames", 50)))
        fmt = pj.MediaFormatAudio()
        fmt.init(pj.PJMEDIA_FORMAT_PCM, CLOCK_RATE, 1, FRAME_MS * 1000, 16)
        port.createPort(f"{kind}-{key[:16]}", fmt)
        self.ports[key] = port
        return port

    # ---- I/O keys (sip/worker/io_budget.py): decided before pjsua opens any socket for an INVITE

    def select_account(self, prm: Any) -> None:
        """Endpoint.onSelectAccount, for each new incoming request: an INVITE that does not fit
        the I/O key budget goes to the refusal account (no sockets) and is refused there."""
        try:
            rdata = prm.rdata
            if not str(rdata.info).startswith("Request msg INVITE/"):
                return
            self.settle_admission()
            code = admit_invite(self.budget, PENDING, str(rdata.wholeMsg), time.monotonic())
        except Exception as e:  # noqa: BLE001 -- never let a hostile message reach the sockets
            print(f"worker: admission failed: {e!r}", file=sys.stderr, flush=True)
            code = REFUSE_FAILED
        assert self.acc is not None and self.refusal_acc is not None
        self.refusing = code
        if code is not None:
            prm.accountIndex = self.refusal_acc.getId()
            reason = REFUSAL_REASONS[code]
            self.inbound_refused[reason] = self.inbound_refused.get(reason, 0) + 1
        elif prm.accountIndex == self.refusal_acc.getId():
            prm.accountIndex = self.acc.getId()

    def settle_admission(self) -> None:
        """An admitted INVITE that did not become a call (pjsua refused it after creating its
        media): its sockets are closed, its keys come back later."""
        self.budget.release(PENDING, time.monotonic())

    def refuse(self, acc: WAccount, pj_call_id: int) -> None:
        """onIncomingCall on the refusal account; answered from the main loop (`answer_refusals`)."""
        call = RefusedCall(self, acc, pj_call_id, self.refusing or REFUSE_FAILED)
        self.refused[pj_call_id] = call
        self.to_refuse.append((call, Refusal(call.code, REFUSAL_REASONS[call.code])))

    def answer_refusals(self) -> None:
        """Main loop: answer the calls refused for I/O keys (they opened no socket: no budget)."""
        todo, self.to_refuse = self.to_refuse, []
        for call, refusal in todo:
            self._answer_refusal(call, refusal)

    def refused_ended(self, call: RefusedCall) -> None:
        if self.refused.get(call.getId()) is call:
            del self.refused[call.getId()]
        self.graveyard.append(call)  # released outside the callback, like any ended call

    def incoming(self, acc: WAccount, pj_call_id: int, src_address: str = "") -> None:
        if acc is self.refusal_acc:
            self.refuse(acc, pj_call_id)
            return
        call_id = uuid.uuid4().hex
        self.budget.rename(PENDING, call_id)
        call = WCall(self, acc, call_id, outbound=False, pj_call_id=pj_call_id)
        call.source = source_host(src_address)
        if self.trunk_tokens and self.trunk_incoming(call):  # trunks.py: counted by the supervisor
            return
        refusal = self._admit(call.source)
        self.calls[call_id] = call  # referenced until DISCONNECTED, refused or not
        if refusal is not None:
            self._refuse(call, refusal)
            return
        try:
            ci = call.getInfo()
            call.remote_uri, call.local_uri = ci.remoteUri, ci.localUri
        except pj.Error:
            pass
        self.emit({"type": "event", "call_id": call_id, "kind": "incoming", "state": "incoming",
                   "remote_uri": call.remote_uri, "local_uri": call.local_uri,
                   "extra": {"direction": "inbound"}})
        prm = pj.CallOpParam(True)
        prm.statusCode = 180
        try:
            call.answer(prm)
        except pj.Error:
            pass

    def _admit(self, source: str) -> Refusal | None:
        """Whether this worker takes a new inbound call from `source` (sip/admission.py): within
        its inbound share (the rest of its slots are kept for dials) and, without a front, the
        ringing limit per source."""
        inbound = [c for c in self.calls.values() if not c.outbound and not c.refused and not c.done]
        return admit_inbound(
            inbound=len(inbound),
            share=int(self.cfg.get("inbound_share", self.cfg.get("max_calls") or 4)),
            ringing_from_source=sum(1 for c in inbound if not c.confirmed and c.source == source),
            max_ringing_per_source=int(self.cfg.get("max_ringing_per_source") or 0),
        )

    def _refuse(self, call: WCall, refusal: Refusal) -> None:
        """Refuse a new inbound call; the gateway never hears of it (it is counted in the worker's
        stats). Answered from the main loop as the refusal budget allows, held till then
        (sip/admission.py)."""
        call.refused = True
        call.local_end = "refused"
        self.inbound_refused[refusal.reason] = self.inbound_refused.get(refusal.reason, 0) + 1
        self.held_refusals.append((call, refusal))

    def _answer_held_refusals(self, *, for_dial: bool = False) -> None:
        """Main loop: answer held refusals as the budget allows; `for_dial`: one now, on credit if
        need be (a dial needs its slot)."""
        while self.held_refusals:
            if not self.refusal_budget.take(time.monotonic(), borrow=for_dial):
                return
            call, refusal = self.held_refusals.popleft()
            if not call.done:  # not cancelled meanwhile
                self._answer_refusal(call, refusal)
                if for_dial:
                    return

    def _answer_refusal(self, call: WCall | RefusedCall, refusal: Refusal) -> None:
        """Main loop, outside any pjsua2 callback. Answered inside onIncomingCall, a refused call
        sometimes ended there, and pjsua2 then freed the INVITE's copy twice
        (pjsip_rx_data_free_cloned: Assertion `rdata' failed): the worker aborted under SIP fuzzing."""
        prm = pj.CallOpParam(True)
        prm.statusCode = refusal.code
        prm.reason = refusal.reason
        if refusal.retry_after is not None:
            h = pj.SipHeader()
            h.hName, h.hValue = "Retry-After", str(refusal.retry_after)
            prm.txOption.headers.append(h)
        try:
            call.answer(prm)
        except pj.Error:
            pass

    def stop_media(self, call: WCall) -> None:
        """Main thread, while the call still exists (before hangup): unbridge the call's audio
        port from its stream and drop queued frames. Safe to call more than once."""
        self._leave_streams(call, unbridge=True)
        port = call.port
        if port is None:
            return
        port.close()
        am, call.audio_media = call.audio_media, None
        if am is not None and not call.done:
            for src, dst in ((port, am), (am, port)):
                try:
                    src.stopTransmit(dst)
                except pj.Error:
                    pass

    def _release_graveyard(self) -> None:
        """Main loop, outside any pjsua2 callback: delete the native ports of dropped ports while
        they are still referenced, then let go of them and of ended calls (docs/design.md,
        "Audio port teardown", "Call object teardown")."""
        dead, self.graveyard = self.graveyard, []
        if not dead:
            return  # every dial calls this: no pass over the live calls for nothing (500 dials: 125,000 getId)
        taken: set[int] | None = None  # slots of live calls, once an ended call needs them
        for obj in dead:
            if isinstance(obj, PlayoutPort):
                obj.release()
            elif isinstance(obj, (WCall, RefusedCall)) and obj.getId() >= 0:
                if taken is None:
                    taken = {i for c in self.calls.values() if (i := c.getId()) >= 0}
                    taken.update(self.refused)
                if obj.getId() not in taken:
                    continue
                # A new call already took this ended call's slot (both in one libHandleEvents):
                # pjsua2's ~Call would unlink that call from its Call object and hang it up.
                # Keep the small native object instead (rare; logged).
                obj.thisown = False
                print(f"worker: ended call {getattr(obj, 'call_id', '(refused)')}: its pjsua slot {obj.getId()} holds a new call; "
                      "its native Call object is kept", file=sys.stderr, flush=True)
        dead.clear()

    def call_ended(self, call: WCall) -> None:
        # DISCONNECTED: the stream is gone or going; only our own port is touched from now on.
        call.done = True
        call.audio_media = None
        self._leave_streams(call, unbridge=False)
        self.leave_conference(call)  # its stream is gone: the bridge dropped its connections
        if call.port is not None:
            call.port.close()
        self.calls.pop(call.call_id, None)
        self.budget.release(call.call_id, time.monotonic())  # pjsua closes its sockets now
        port = self.ports.pop(call.call_id, None)
        # Release outside the callback: the Call object must outlive onCallState.
        self.graveyard.append(call)
        if port is not None:
            self.graveyard.append(port)
        call.port = None
        self.conf_trunks.pop(call.call_id, None)  # conference.py: its last event was filtered

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for call in list(self.calls.values()):
            if call.deadline is not None and now >= call.deadline and not call.confirmed and not call.done:
                call.deadline = None
                try:
                    self._hangup(call, "timeout")
                except pj.Error:
                    pass
