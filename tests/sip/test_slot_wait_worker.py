"""A dial that waits for a pjsua call slot does not stop the worker's main loop (sip/worker/
slot_waits.py), through the supervisor and a real worker process, against SIPp.

pjsua keeps the slot of a call hung up before its target answered until that INVITE's
transaction ends (32 s when nobody ever answers): calls dialled to a UDP socket that never
answers, then hung up, hold slots the worker no longer counts. A dial then finds no slot.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator

import pytest

from sip import NoCapacity, SipEvent, SipSupervisor
from tests.peers.sipp import sipp_uas

from .conftest import Recorder

pytestmark = pytest.mark.peers


@pytest.fixture
def hole() -> Iterator[str]:
    """A SIP URI whose socket takes INVITEs and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"sip:hole@127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


async def _hold_slots_with_hung_up_calls(sup: SipSupervisor, recorder: Recorder, uri: str, n: int) -> None:
    """`n` calls to `uri` (never answered), hung up: the worker forgets them, pjsua keeps their slots."""
    ids = [uuid.uuid4().hex for _ in range(n)]
    for c in ids:
        await sup.dial(c, uri)
        await recorder.wait_state(c, "calling")
    for c in ids:
        await sup.hangup(c)
        await recorder.wait_state(c, "disconnected")


async def _reply_of_the_dial_sent(sup: SipSupervisor) -> asyncio.Future:
    """Once the supervisor has written the one command in flight (a dial) to worker 0: the
    future its reply will settle (set by the reader the moment the reply arrives)."""
    w = sup._workers[0]
    async with asyncio.timeout(10):
        while not w.pending:
            await asyncio.sleep(0.01)
    (reply,) = w.pending.values()
    return reply


async def test_a_dial_waiting_for_a_slot_lets_the_hangup_that_frees_one_through(
    start_supervisor, recorder: Recorder, hole: str
) -> None:
    """Two slots held by hung-up calls, the third by a live call C: a dial D finds no slot. The
    hangup of C, sent after D, must run while D waits (C's `disconnected` comes before D's reply),
    and its answered BYE frees the slot D then takes. Before the fix the worker sat in D's dial
    for 2 s with the hangup queued behind it: D was refused `no-capacity` first, and only then
    was C hung up."""
    sup = await start_supervisor(max_workers=1, calls_per_worker=3)
    async with sipp_uas("answer", calls=2) as uas:
        await _hold_slots_with_hung_up_calls(sup, recorder, hole, 2)
        c, d = uuid.uuid4().hex, uuid.uuid4().hex
        await sup.dial(c, uas.uri)
        await recorder.wait_state(c, "confirmed")
        dial = asyncio.create_task(sup.dial(d, uas.uri))
        d_reply = await _reply_of_the_dial_sent(sup)
        d_answered: list[bool] = []  # when C's hangup ran: had D been answered?
        inner = sup.on_event

        def on_event(ev: SipEvent) -> None:
            if ev.call_id == c and ev.state == "disconnected":
                d_answered.append(d_reply.done())
            inner(ev)

        sup.on_event = on_event  # type: ignore[method-assign]
        await asyncio.wait_for(sup.hangup(c), 15)
        assert d_answered == [False], "the dial was answered before the hangup sent after it ran"
        await asyncio.wait_for(dial, 15)  # placed, in the slot C's answered BYE freed
        assert (await recorder.wait_state(c, "disconnected")).cause == "local-hangup"
        await recorder.wait_state(d, "confirmed")
        await sup.hangup(d)
        await recorder.wait_state(d, "disconnected")
        assert (await uas.wait(15)).successful == 2


async def test_dials_waiting_for_slots_keep_the_worker_answering_then_fail_no_capacity(
    start_supervisor, recorder: Recorder, hole: str
) -> None:
    """Every slot held by hung-up calls whose INVITEs nobody answers (for 32 s): four dials wait
    and are refused `no-capacity` with a message naming the held slots, while the worker keeps
    answering the gateway's pings. Before the fix each dial held the main loop 2 s, the worker said
    nothing for longer than the liveness deadline and was killed as stalled (the control fuzz's
    failure in CI)."""
    sup = await start_supervisor(max_workers=1, calls_per_worker=4,
                                 heartbeat_interval_s=0.5, heartbeat_deadline_s=1.5)
    await _hold_slots_with_hung_up_calls(sup, recorder, hole, 4)
    pid = sup.worker_pid(0)
    dials = [sup.dial(uuid.uuid4().hex, hole, worker=0) for _ in range(4)]  # pinned: the worker's own answer
    results = await asyncio.wait_for(asyncio.gather(*dials, return_exceptions=True), 30)
    assert all(isinstance(r, NoCapacity) for r in results), results
    assert all("no call slot freed within 2 s (4 call slots still held" in str(r) for r in results), results
    assert sup.worker_pid(0) == pid and sup.stats()["workers"][0]["restarts"] == 0
