"""The front under large hostile requests (issue 8 s. 3, SIP fuzzing): what no worker can read
is refused at the door, before Kamailio's transaction layer copies it into shared memory."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from sip.kamailio import KamailioFront, sip_options_ping
from sip.kamailio_config import MAX_REQUEST_BYTES
from tests.peers.ports import free_udp_port
from tests.sipfuzz import MAX_UDP_PAYLOAD, SipFuzzer, parse_status

pytestmark = pytest.mark.peers

HOST = "127.0.0.1"


class _Worker(asyncio.DatagramProtocol):
    """A worker as the front sees one that cannot read a datagram (pjsip reads 4,000 bytes of
    each and drops the rest): answers the front's OPTIONS probes, says nothing to anything else."""

    def __init__(self, changed: asyncio.Event, busy: bytes | None = None) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.requests = 0
        self.changed = changed
        self.busy = busy  # answer 486 to INVITEs with this Call-ID prefix (a worker that reads them)

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        keep = [h for h in head[1:] if h.split(b":", 1)[0].lower() in (b"via", b"from", b"to", b"call-id", b"cseq")]
        assert self.transport is not None
        if data.startswith(b"OPTIONS "):
            self.transport.sendto(b"\r\n".join([b"SIP/2.0 200 OK", *keep, b"Content-Length: 0", b"", b""]), addr)
        elif not data.startswith(b"SIP/2.0"):
            self.requests += 1
            self.changed.set()
            if self.busy is not None and data.startswith(b"INVITE ") and b"\r\nCall-ID: " + self.busy in data:
                reply = b"\r\n".join([b"SIP/2.0 486 Busy Here", *keep, b"Content-Length: 0", b"", b""])
                self.transport.sendto(reply, addr)


class _Caller(asyncio.DatagramProtocol):
    def __init__(self, changed: asyncio.Event) -> None:
        self.codes: collections.Counter[int] = collections.Counter()
        self.changed = changed

    def datagram_received(self, data: bytes, addr) -> None:
        code = parse_status(data)
        if code is not None:
            self.codes[code] += 1
            self.changed.set()


def big_invite(fuzz: SipFuzzer, i: int, size: int) -> bytes:
    rng = fuzz.rng(i)
    msg = fuzz.request(rng, "INVITE")
    msg.body = fuzz.sdp(rng) + "a=x-pad:" + "A" * (size - 900) + "\r\n"
    return msg.encode()


async def test_requests_too_large_for_a_worker_are_refused_at_the_front(run_dir: Path) -> None:
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()
    workers = [await loop.create_datagram_endpoint(lambda: _Worker(changed), local_addr=(HOST, 0))
               for _ in range(2)]
    front = KamailioFront(HOST, free_udp_port(HOST), [t.get_extra_info("sockname")[:2] for t, _ in workers])
    caller, answers = await loop.create_datagram_endpoint(lambda: _Caller(changed), local_addr=(HOST, 0))

    def forwarded() -> int:
        return workers[0][1].requests + workers[1][1].requests

    fuzz = SipFuzzer(8, (HOST, front.port), caller.get_extra_info("sockname")[:2])
    try:
        with capture_logs() as logs:
            await front.start(run_dir)
            # 1,500 INVITEs of ~60 KB: each was copied into shared memory and held while the
            # worker stayed silent (2 s, then the other worker, 2 s): 64 MB ran out in a second.
            for i in range(1500):
                caller.sendto(big_invite(fuzz, i, MAX_UDP_PAYLOAD - 2000), (HOST, front.port))
                if i % 50 == 49:
                    await asyncio.sleep(0.01)  # let the front's readers keep up (pace)
            # a well-formed request of the largest size a worker reads still goes through
            caller.sendto(big_invite(fuzz, 10**6, MAX_REQUEST_BYTES - 600), (HOST, front.port))
            async with asyncio.timeout(30):  # refused (UDP may drop some), that one forwarded
                while answers.codes[513] < 300 or forwarded() < 1:
                    changed.clear()
                    await changed.wait()
            assert await sip_options_ping(HOST, front.port, timeout=2.0) == "SIP/2.0 200 OK"
        assert front.process is not None and front.process.running
        starved = [e["line"] for e in logs if e["event"] == "kamailio.log" and "shared memory" in e["line"]]
        assert not starved, starved[:3]
        assert set(answers.codes) <= {100, 513}, answers.codes
        assert forwarded() < 20  # that one and its retransmissions: the big ones never left the front
    finally:
        caller.close()
        await front.stop()
        for t, _ in workers:
            t.close()


async def test_a_request_a_worker_ignores_does_not_take_it_out_of_dispatch(run_dir: Path) -> None:
    """pjsip drops what it cannot parse without a word; the front marked a worker that stayed
    silent on one INVITE inactive at once, so one such INVITE per worker every 2 s (the probe
    interval) left no worker for anyone: 503 No Worker Available."""
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()
    workers = [await loop.create_datagram_endpoint(lambda: _Worker(changed, busy=b"legit-"),
                                                   local_addr=(HOST, 0)) for _ in range(2)]
    front = KamailioFront(HOST, free_udp_port(HOST), [t.get_extra_info("sockname")[:2] for t, _ in workers],
                          worker_timeout_ms=500)
    caller, answers = await loop.create_datagram_endpoint(lambda: _Caller(changed), local_addr=(HOST, 0))
    fuzz = SipFuzzer(8, (HOST, front.port), caller.get_extra_info("sockname")[:2])
    try:
        await front.start(run_dir)
        async with asyncio.timeout(15):  # both workers active (probed)
            while list((await front.destinations()).values()).count("AP") < 2:
                await asyncio.sleep(0.2)
        ignored = fuzz.request(fuzz.rng(1), "INVITE")  # read by the front, never answered by a worker
        caller.sendto(ignored.encode(), (HOST, front.port))
        async with asyncio.timeout(15):  # timed out on one worker, then on the other: 503
            while answers.codes[503] < 1:
                changed.clear()
                await changed.wait()
        legit = fuzz.request(fuzz.rng(2), "INVITE")
        legit.set("Call-ID", "legit-1")
        caller.sendto(legit.encode(), (HOST, front.port))
        async with asyncio.timeout(15):
            while answers.codes[486] < 1 and answers.codes[503] < 2:
                changed.clear()
                await changed.wait()
        assert answers.codes[486] == 1 and answers.codes[503] == 1, answers.codes
    finally:
        caller.close()
        await front.stop()
        for t, _ in workers:
            t.close()
