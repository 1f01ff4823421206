"""A worker's log under hostile traffic (issue 8 s. 3): bounded however much pjsua has to say
about it, and a worker that dies is reported with the end of that log (a crash is a restart with
a log line naming what killed it: pjsua's last lines and a failed assertion)."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from sip.kamailio import sip_options_ping
from sip.worker.log_budget import BURST_BYTES, RATE_BYTES_S
from sip.worker_process import log_tail

ASSERTION = "python: ../src/pj/ioqueue_select.c:386: pj_ioqueue_register_sock2: Assertion `x' failed."


async def test_died_line_carries_the_tail_of_the_worker_log(start_supervisor) -> None:
    sup = await start_supervisor(max_workers=1)
    pid = sup.worker_pid(0)
    path = sup.log_dir / "worker-0.log"
    with path.open("a") as f:  # what an aborting worker writes last (it shares this file)
        f.write("00:00:00.000  sip_transport.c  Dropping 4000 bytes packet from UDP 127.0.0.1:5\n")
        f.write(ASSERTION + "\n")
    with capture_logs() as logs:
        sup.kill_worker(0)
        async with asyncio.timeout(15):
            while sup.worker_pid(0) in (None, pid):
                await asyncio.sleep(0.05)
    died = [e for e in logs if e["event"] == "sip.worker.died"]
    assert len(died) == 1 and died[0]["restarting"]
    assert died[0]["last_log"][-1] == ASSERTION
    assert "Dropping 4000 bytes" in died[0]["last_log"][-2]
    assert died[0]["log"] == str(path)


def test_log_tail_reads_only_the_end(tmp_path) -> None:
    path = tmp_path / "w.log"
    assert log_tail(path) == []  # no log (yet): nothing, no error
    path.write_text("x" * 10_000 + "\n" + "\n".join(f"line {i}" for i in range(20)) + "\n\n")
    assert log_tail(path, lines=3) == ["line 17", "line 18", "line 19"]
    assert log_tail(None) == []


async def test_a_flood_of_unparseable_datagrams_does_not_grow_the_log_without_bound(start_supervisor) -> None:
    """pjsua logs each datagram it cannot parse (level 2, the default): 20,000 of them wrote
    about 200 bytes each to the worker's log. Now the log takes a burst, then 32 KB/s."""
    sup = await start_supervisor(max_workers=1, log_level=2)
    pid, (host, port) = sup.worker_pid(0), sup.worker_addresses[0]
    path = sup.log_dir / "worker-0.log"
    before = path.stat().st_size
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=(host, 0))
    started = loop.time()
    try:
        for i in range(20_000):
            transport.sendto(f"INVITE sip:x SIP/2.0\r\nVia: {i} garbage\r\nCSeq: x\r\n\r\n".encode(), (host, port))
            if i % 100 == 99:
                await asyncio.sleep(0.02)  # the pace of the sender (about 4,000 a second)
    finally:
        transport.close()
    async with asyncio.timeout(20):  # answered: the worker has read the flood
        while await sip_options_ping(host, port, timeout=1.0) is None:
            pass
    elapsed = loop.time() - started
    text = path.read_text(errors="replace")
    assert sup.worker_pid(0) == pid
    grown = len(text.encode()) - before
    assert grown < BURST_BYTES + RATE_BYTES_S * elapsed + 8192, grown
    assert "Dropping" in text and "pjsua log lines dropped" in text
