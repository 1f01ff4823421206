"""A worker's SIP port under hostile INVITEs (issue 8 s. 3): pjsua opens sockets for an offer
before we hear of the call, and an exhausted I/O queue aborted the process. Admission
(sip/worker/io_budget.py) refuses what does not fit; the worker lives and still places calls."""

from __future__ import annotations

import asyncio
import collections
import uuid

import pytest

from tests.peers.sipp import sipp_uas
from tests.sipfuzz import SipFuzzer, call_index, parse_status

from .conftest import Recorder

pytestmark = pytest.mark.peers


class _Answers(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.codes: collections.Counter[int] = collections.Counter()
        self.cases: dict[int, set[int]] = collections.defaultdict(set)
        self.lines: dict[int, set[str]] = collections.defaultdict(set)  # status lines, by case
        self.changed = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        code, index = parse_status(data), call_index(data, 8)
        if code is not None:
            self.codes[code] += 1
            if index is not None:
                self.cases[index].add(code)
                self.lines[index].add(data.split(b"\r\n", 1)[0].decode(errors="replace"))
        self.changed.set()


async def _hostile_source(target: tuple[str, int]):
    loop = asyncio.get_running_loop()
    transport, answers = await loop.create_datagram_endpoint(_Answers, local_addr=("127.0.0.1", 0))
    return transport, answers, SipFuzzer(8, target, transport.get_extra_info("sockname")[:2])


async def _until_answered(answers: _Answers, n: int) -> dict[int, set[int]]:
    """Wait until cases 0..n-1 each have a final failure answer (a CANCEL's 200 is not one);
    their codes >= 300."""
    def finals() -> dict[int, set[int]]:
        return {i: {c for c in answers.cases.get(i, ()) if c >= 300} for i in range(n)}

    async with asyncio.timeout(20):
        while not all(finals().values()):
            answers.changed.clear()
            await answers.changed.wait()
    return finals()


async def _dial_connects(sup, recorder: Recorder) -> None:
    async with sipp_uas("answer") as uas:
        c = uuid.uuid4().hex
        await sup.dial(c, uas.uri)
        await recorder.wait_state(c, "confirmed", timeout=15)
        await sup.hangup(c)
        await recorder.wait_state(c, "disconnected")
        res = await uas.wait(10)
    assert (res.returncode, res.successful) == (0, 1), res.errors


async def test_invite_cancel_churn_is_refused_not_fatal(start_supervisor, recorder: Recorder) -> None:
    """40 INVITE+CANCEL pairs at once: each call's sockets close on CANCEL, their I/O queue keys
    come back only 500 ms later, and the 33rd pair aborted the worker (pjlib assertion)."""
    sup = await start_supervisor(proxy="none", max_workers=1)
    pid, target = sup.worker_pid(0), sup.worker_addresses[0]
    transport, answers, fuzz = await _hostile_source(target)
    try:
        for i in range(40):
            msg = fuzz.request(fuzz.rng(i), "INVITE")
            transport.sendto(msg.encode(), target)
            msg.start = msg.start.replace("INVITE", "CANCEL", 1)
            msg.set("CSeq", dict(msg.headers)["CSeq"].replace("INVITE", "CANCEL"))
            msg.set("Content-Type", None)
            msg.body = ""
            transport.sendto(msg.encode(), target)
        finals = await _until_answered(answers, 40)
    finally:
        transport.close()
    assert sup.worker_pid(0) == pid, "the worker died"
    # cancelled (a refused call not answered yet is cancelled too), or refused
    assert all(codes <= {487, 503} for codes in finals.values()), finals
    await _dial_connects(sup, recorder)
    assert sup.worker_pid(0) == pid


async def test_offers_with_many_media_lines_are_refused(start_supervisor, recorder: Recorder) -> None:
    """pjsua opens two sockets per offered audio m-line (up to 16): two INVITEs offering 1,000
    m-lines took the 64 keys of the worker's I/O queue."""
    sup = await start_supervisor(proxy="none", max_workers=1)
    pid, target = sup.worker_pid(0), sup.worker_addresses[0]
    transport, answers, fuzz = await _hostile_source(target)
    offered = [17, 1000, 17, 1000, 5, 1000, 17, 1000]
    try:
        for i, m_lines in enumerate(offered):
            rng = fuzz.rng(i)
            msg = fuzz.request(rng, "INVITE")
            msg.body = fuzz.sdp(rng, m_lines=m_lines)
            transport.sendto(msg.encode(), target)
        finals = await _until_answered(answers, len(offered))
    finally:
        transport.close()
    assert sup.worker_pid(0) == pid, "the worker died"

    def refused(i: int) -> bool:
        """Refused for its media (488), or busy while the refused calls held every pjsua call
        slot (486). A 1,000-line offer (~26 kB) is cut at the 4,000 bytes pjsip reads of a
        datagram (PJSIP_MAX_PKT_LEN), where its headers' length (ports, tags) puts the cut: mid-line,
        the SDP does not parse and pjsua refuses it 400 "Bad SDP" itself, before any socket."""
        allowed = {488, 486} | ({400} if offered[i] == 1000 else set())
        bad_sdp = all("Bad SDP" in line for line in answers.lines[i] if line.split()[1:2] == ["400"])
        return finals[i] <= allowed and bad_sdp

    assert all(map(refused, range(len(offered)))), (finals, answers.lines)
    assert sum(488 in codes for codes in finals.values()) >= 4, finals
    assert not [e for e in recorder.events if e.kind == "incoming"]  # never announced
    await _dial_connects(sup, recorder)
