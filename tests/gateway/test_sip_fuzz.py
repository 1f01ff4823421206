"""SIP fuzzing against the real gateway: hostile datagrams to the Kamailio front and to a worker.

10,000 malformed datagrams (tests/sipfuzz.py, seeded) go to the front's address and 10,000 straight
to worker 0's SIP port, paced, at the same time; then one source floods each with well-formed
requests (OPTIONS, REGISTER with garbage credentials, INVITEs that cannot become calls) as fast as
it can. After it: every worker has the PID it had before (a worker that died names the cases sent
just before), Kamailio still runs, no call is left ringing, and a normal call from the gateway to
SIPp connects. The counts are in docs/reliability.md (## SIP fuzzing); the test prints them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from dataclasses import dataclass, field

import pytest
from structlog.testing import capture_logs

from tests.peers.sipp import sipp_uas
from tests.sipfuzz import Case, SipFuzzer, call_index, parse_status

pytestmark = pytest.mark.peers

SEED = 8
CASES = 10_000  # per target
FLOOD = 3_000  # per target, from one source
PROBE_INDEX = 10**9  # the index of the OPTIONS that ends each source's run
RATE = 1_000  # datagrams per second per target while fuzzing (the flood is not paced)


@dataclass
class Blast:
    """One UDP source: what it sent, what came back (by status code and by case)."""

    name: str
    seed: int
    sent: int = 0
    failed: int = 0  # sendto refused (e.g. EMSGSIZE)
    codes: collections.Counter[int] = field(default_factory=collections.Counter)
    answered: dict[int, set[int]] = field(default_factory=lambda: collections.defaultdict(set))
    other: int = 0  # datagrams back that are not responses
    received: asyncio.Event = field(default_factory=asyncio.Event)


class _Source(asyncio.DatagramProtocol):
    def __init__(self, blast: Blast) -> None:
        self.blast = blast

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        code = parse_status(data)
        if code is None:
            self.blast.other += 1
        else:
            self.blast.codes[code] += 1
            index = call_index(data, self.blast.seed)
            if index is not None:
                self.blast.answered[index].add(code)
        self.blast.received.set()

    def error_received(self, exc: Exception) -> None:
        self.blast.failed += 1


async def _source(blast: Blast) -> tuple[asyncio.DatagramTransport, tuple[str, int]]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Source(blast), local_addr=("127.0.0.1", 0))
    return transport, transport.get_extra_info("sockname")[:2]


async def _send(transport: asyncio.DatagramTransport, blast: Blast, cases, target: tuple[str, int],
                rate: float | None, on_batch) -> None:
    """Send `cases` to `target`, `rate` per second (None: as fast as the socket takes them);
    `on_batch(last_index)` after each batch of 50 (the crash check)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for n, case in enumerate(cases, 1):
        try:
            transport.sendto(case.data, target)
            blast.sent += 1
        except OSError:
            blast.failed += 1
        if n % 50 == 0:
            on_batch(case)
            if rate is not None:
                ahead = start + n / rate - loop.time()
                await asyncio.sleep(max(0.0, ahead))  # the pace of the sender itself
            else:
                await asyncio.sleep(0)


async def _probe(transport: asyncio.DatagramTransport, blast: Blast, fuzz: SipFuzzer,
                 target: tuple[str, int], limit: float = 30.0) -> None:
    """Send a well-formed OPTIONS until it is answered: the target has read what came before."""
    probe = fuzz.probe(PROBE_INDEX)
    async with asyncio.timeout(limit):
        while PROBE_INDEX not in blast.answered:
            transport.sendto(probe.data, target)
            blast.received.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(blast.received.wait(), 1.0)


async def test_fuzzed_datagrams_to_front_and_worker(start_gateway, connect, watch) -> None:
    gw = await start_gateway(**{"sip.max_workers": 2, "sip.warm_workers": 2, "calls.ring_timeout_s": 3})
    assert gw.front is not None and gw.front.pid
    async with asyncio.timeout(15):  # the front's OPTIONS probes mark both workers active
        while list((await gw.front.destinations()).values()).count("AP") < 2:
            await asyncio.sleep(0.2)
    alice = await connect(gw)
    w = await watch(alice)
    front_pid = gw.front.pid
    pids = {i: gw.sip.worker_pid(i) for i in (0, 1)}
    assert all(pids.values()), pids
    cfg = gw.config.sip
    front = (cfg.host, cfg.port)
    worker = gw.sip.worker_addresses[0]  # worker 0's own SIP port (the supervisor knows it)
    assert worker != front

    deaths: list[str] = []
    last: dict[str, int] = {}  # source -> index of the last case of its last batch

    def check(name: str):
        def on_batch(case: Case) -> None:
            first = last.get(name)
            last[name] = case.index
            for i, pid in pids.items():
                now = gw.sip.worker_pid(i)
                if now != pid and not any(d.startswith(f"worker {i} ") for d in deaths):
                    deaths.append(f"worker {i} pid {pid} -> {now} while {name} sent cases {first}..{case.index} "
                                  f"(seed {SEED}; other sources at {last})")
        return on_batch

    blasts = {name: Blast(name, SEED) for name in ("front", "worker", "flood-front", "flood-worker")}
    socks = {name: await _source(b) for name, b in blasts.items()}
    fuzz = {name: SipFuzzer(SEED, target, socks[name][1])
            for name, target in (("front", front), ("worker", worker), ("flood-front", front),
                                 ("flood-worker", worker))}
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with capture_logs() as logs:
            await asyncio.gather(
                _send(socks["front"][0], blasts["front"], fuzz["front"].cases(CASES), front, RATE,
                      check("front")),
                _send(socks["worker"][0], blasts["worker"], fuzz["worker"].cases(CASES, start=CASES),
                      worker, RATE, check("worker")),
            )
            await asyncio.gather(
                _send(socks["flood-front"][0], blasts["flood-front"], fuzz["flood-front"].flood(FLOOD),
                      front, None, check("flood-front")),
                _send(socks["flood-worker"][0], blasts["flood-worker"],
                      fuzz["flood-worker"].flood(FLOOD, start=FLOOD), worker, None, check("flood-worker")),
            )
            await asyncio.gather(*(_probe(socks[name][0], b, fuzz[name], front if "front" in name else worker)
                                   for name, b in blasts.items()))
            check("end")(Case(-1, "end", b""))
    finally:
        for transport, _ in socks.values():
            transport.close()
    elapsed = loop.time() - started
    for b in blasts.values():
        b.answered.pop(PROBE_INDEX, None)
    report = {name: {"sent": b.sent, "send_failed": b.failed,
                     # cases answered (by the Call-ID echoed back), refused among them, silence
                     "answered": len(b.answered),
                     "rejected": sum(1 for codes in b.answered.values() if max(codes) >= 300),
                     "silent": b.sent - len(b.answered),
                     "responses": sum(b.codes.values()), "codes": dict(sorted(b.codes.items())),
                     "not_responses": b.other}
              for name, b in blasts.items()}
    ringing = [e["data"]["call_id"] for e in w.events
               if e["type"] == "call.state" and e["data"]["state"] == "ringing"]
    print("SIP fuzz", json.dumps({"elapsed_s": round(elapsed, 1), "calls_rung": len(ringing),
                                  "worker_deaths": len(deaths), **report}))
    errors = [e for e in logs if e.get("log_level") in ("error", "critical")]

    died = [e for e in logs if e["event"] in ("sip.worker.died", "sip.worker.stalled")]
    assert not deaths, (deaths, died)
    assert {i: gw.sip.worker_pid(i) for i in (0, 1)} == pids
    assert not died
    assert not errors, errors[:5]  # no traceback, no failed store write
    assert gw.front.pid == front_pid and gw.front.process is not None and gw.front.process.running
    assert blasts["front"].sent == CASES and blasts["worker"].sent == CASES
    # Both listeners answered something (the fuzz reached them) and the flood got its answers.
    assert blasts["front"].answered and blasts["worker"].answered
    assert blasts["flood-front"].codes and blasts["flood-worker"].codes

    # Every inbound call the fuzz started has ended (ring timeout), and a normal call connects.
    for call_id in ringing:
        await w.call_state(call_id, "ended", timeout=30)
    async with sipp_uas("answer") as uas:
        call_id = (await alice.call("call.dial", target=uas.uri))["call_id"]
        await w.call_state(call_id, "connected", timeout=20)
        await alice.call("call.hangup", call_id=call_id)
        await w.call_state(call_id, "ended")
        res = await uas.wait(15)
    assert (res.returncode, res.successful) == (0, 1), res.errors
