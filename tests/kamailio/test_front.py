"""The Kamailio dispatcher front against real peers (Kamailio, SIPp)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sip.kamailio import KamailioFront
from sip.kamailio_config import KamailioError, render_config, render_dispatcher_list
from tests.kamailio.sipp_run import HOST, SippUas, run_sipp, successful_calls
from tests.peers.ports import free_udp_port

pytestmark = pytest.mark.peers


@pytest.mark.parametrize("ringing_limit", [0, 4])
def test_rendered_config_passes_kamailio_check(tmp_path: Path, ringing_limit: int) -> None:
    workers = [(HOST, 5070), (HOST, 5080), (HOST, 5090)]
    (tmp_path / "dispatcher.list").write_text(render_dispatcher_list(workers))
    cfg = tmp_path / "kamailio.cfg"
    cfg.write_text(render_config(HOST, free_udp_port(), workers, run_dir=tmp_path,
                                 max_ringing_per_source=ringing_limit))
    assert ("get_profile_size" in cfg.read_text()) == bool(ringing_limit)
    res = subprocess.run(["kamailio", "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "config file ok" in res.stdout + res.stderr


def test_render_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(KamailioError):
        render_config("not-an-ip", 5060, [], run_dir=tmp_path)
    with pytest.raises(KamailioError):
        render_dispatcher_list([(HOST, 70000)])
    with pytest.raises(KamailioError):
        render_config(HOST, 5060, [], run_dir="/" + "x" * 120)


async def wait_flags(front: KamailioFront, want: dict[str, str], timeout: float = 30.0) -> dict:
    """Wait until each destination's dispatcher flags start with the wanted letter (A / I)."""
    deadline = time.monotonic() + timeout
    while True:
        dsts = await front.destinations()
        if all(dsts.get(uri, "").startswith(flag) for uri, flag in want.items()):
            return dsts
        assert time.monotonic() < deadline, f"dispatcher state {dsts}, wanted {want}"
        await asyncio.sleep(0.2)


async def calls(work: Path, front_port: int, n: int) -> tuple[int, str]:
    return await run_sipp(
        "-sf", str(work / "uac.xml"), "-s", "gateway", "-i", HOST, "-p", "0",
        "-m", str(n), "-r", "20", "-l", "4", "-timeout", "40", "-timeout_error",
        "-trace_err", f"{HOST}:{front_port}", cwd=work,
    )


@contextlib.asynccontextmanager
async def front_with_workers(
    work: Path, run_dir: Path, *workers: tuple[str, str]
) -> AsyncIterator[tuple[KamailioFront, list[SippUas]]]:
    """SIPp workers (scenario file, name) on free ports, behind a started KamailioFront; all
    stopped on exit."""
    uas = [SippUas(work / xml, None, work, name) for xml, name in workers]  # ports chosen as they start
    front: KamailioFront | None = None
    try:
        for w in uas:
            await w.start()
        front = KamailioFront(HOST, free_udp_port(), [(HOST, w.port) for w in uas], ping_interval=1)
        await front.start(run_dir)
        yield front, uas
    finally:
        if front is not None:
            await front.stop()
        for w in uas:
            await w.kill()


async def test_front_spreads_calls_and_fails_over(work: Path, run_dir: Path) -> None:
    workers = ("uas.xml", "w1"), ("uas.xml", "w2")
    async with front_with_workers(work, run_dir, *workers) as (front, [w1, w2]):
        fport, p1, p2 = front.port, w1.port, w2.port
        assert front.pid
        u1, u2 = f"sip:{HOST}:{p1}", f"sip:{HOST}:{p2}"
        await wait_flags(front, {u1: "A", u2: "A"})

        rc, out = await calls(work, fport, 10)
        assert rc == 0, out[-3000:] + "\n".join(front.log[-40:])
        assert successful_calls(out) == 10
        # round robin: both workers got calls, and every call reached exactly one worker
        assert w1.invites() + w2.invites() == 10
        assert w1.invites() >= 3 and w2.invites() >= 3, (w1.invites(), w2.invites())
        # in-dialog requests followed the Record-Route to the worker
        assert w1.received().count("\nACK sip:") + w2.received().count("\nACK sip:") >= 10
        assert "Record-Route: <sip:127.0.0.1:%d;lr=on" % fport in w1.received()

        # a worker dies: calls still succeed on the other one (timeout failover, then probing)
        before1, before2 = w1.invites(), w2.invites()
        await w2.kill()
        rc, out = await calls(work, fport, 6)
        assert rc == 0, out[-3000:] + "\n".join(front.log[-40:])
        assert successful_calls(out) == 6
        assert w1.invites() - before1 == 6
        assert w2.invites() == before2
        await wait_flags(front, {u1: "A", u2: "I"})

        # the supervisor replaces the worker set at run time
        await front.update_workers([(HOST, p1)])
        assert set(await front.destinations()) == {u1}
        rc, out = await calls(work, fport, 2)
        assert rc == 0, out[-3000:]
        assert w1.invites() - before1 == 8
    assert front.pid is None


async def test_requests_from_a_worker_are_relayed_to_their_request_uri(
    work: Path, run_dir: Path
) -> None:
    worker_port, outside_port, fport = free_udp_port(), free_udp_port(), free_udp_port()
    outside = SippUas(work / "uas.xml", outside_port, work, "outside")
    front = KamailioFront(HOST, fport, [(HOST, worker_port)], ping_interval=1)
    try:
        await outside.start()
        await front.start(run_dir)
        # the "worker" uses the front as outbound proxy: sends to the front (-rsa), R-URI outside
        rc, out = await run_sipp(
            "-sf", str(work / "uac.xml"), "-s", "bob", "-i", HOST, "-p", str(worker_port),
            "-rsa", f"{HOST}:{fport}", "-m", "2", "-timeout", "20", "-timeout_error",
            f"{HOST}:{outside_port}", cwd=work,
        )
        assert rc == 0, out[-3000:] + "\n".join(front.log[-40:])
        assert outside.invites() == 2
        assert f"INVITE sip:bob@{HOST}:{outside_port}" in outside.received()
    finally:
        await front.stop()
        await outside.kill()


async def test_start_fails_cleanly_when_port_taken(run_dir: Path) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        front = KamailioFront(HOST, s.getsockname()[1], [(HOST, free_udp_port())])
        with pytest.raises(KamailioError):
            await front.start(run_dir, ready_timeout=5)
    assert front.process is None


async def test_worker_answering_503_is_skipped_for_the_next(work: Path, run_dir: Path) -> None:
    workers = ("uas_503.xml", "bad"), ("uas.xml", "good")
    async with front_with_workers(work, run_dir, *workers) as (front, [bad, good]):
        rc, out = await calls(work, front.port, 6)
        assert rc == 0, out[-3000:] + "\n".join(front.log[-40:])
        assert successful_calls(out) == 6
        assert good.invites() == 6
        assert bad.invites() >= 2  # round robin tried it, got 503, moved on
        # a 503 is not a dead worker: it stays active
        assert (await front.destinations())[f"sip:{HOST}:{bad.port}"].startswith("A")


def test_front_from_sip_config() -> None:
    from sip.config import SipConfig

    cfg = SipConfig(host=HOST, port=5099, worker_base_port=6000, max_workers=3)
    front = KamailioFront.from_config(cfg)
    assert (front.host, front.port) == (HOST, 5099)
    assert front._cfg_options["max_ringing_per_source"] == cfg.max_ringing_per_source
    assert front.workers == [(HOST, 6000), (HOST, 6010), (HOST, 6020)]


async def test_front_killed_is_started_again_with_its_workers(run_dir: Path) -> None:
    """The soak's kamailio drill (benchmarks/soak.py): after kill -9 of Kamailio's process group the
    front stayed down until the gateway restarted. Now it is started again, dispatching to the
    workers of the last update_workers."""
    import os
    import signal

    from sip.kamailio import sip_options_ping

    front = KamailioFront(HOST, free_udp_port(), [(HOST, free_udp_port())])
    await front.start(run_dir, ready_timeout=10)
    try:
        workers = [(HOST, free_udp_port()), (HOST, free_udp_port())]
        await front.update_workers(workers)
        first = front.pid
        assert first is not None
        os.killpg(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not (front.pid not in (None, first) and front.process and front.process.running
                   and await sip_options_ping(HOST, front.port, timeout=0.5)):
            assert time.monotonic() < deadline, "the front was not started again"
            await asyncio.sleep(0.1)
        assert set(await front.destinations()) == {f"sip:{h}:{p}" for h, p in workers}
    finally:
        await front.stop()
    assert front.process is None
