"""A call's audio port is torn down without ever crashing its worker (docs/design.md, "Audio port
teardown"). Before the fix a worker died (SIGSEGV, heap corruption) when the last Python
reference to a port was dropped while the media clock thread had a frame callback pending for it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest

from sip import SipSupervisor
from tests.audio import frames, tone
from tests.peers.ports import free_udp_port
from tests.peers.sipp import UAS_SCENARIOS, Sipp

from .conftest import ROOT, Recorder, dial_listening, probed_calls_per_worker, pumping_audio


def test_released_ports_get_no_frame_callbacks() -> None:
    """The worker's own port lifecycle (ensure_port, call_ended, graveyard release) churned for
    4 s with the media clock calling every port (tests/sip/port_churn.py, its own process): no
    frame callback reaches a port whose refcount reached zero, and the process survives. Before
    the fix it died of SIGSEGV within 2 s in 9 runs out of 9."""
    proc = subprocess.run(
        [sys.executable, "-m", "tests.sip.port_churn", "--seconds", "4", "--port", str(free_udp_port())],
        cwd=ROOT, capture_output=True, timeout=60,
    )
    lines = [ln for ln in proc.stdout.decode(errors="replace").splitlines() if ln.startswith("{")]
    assert proc.returncode == 0 and lines, f"rc={proc.returncode}: {proc.stderr.decode(errors='replace')[-2000:]}"
    report = json.loads(lines[-1])
    assert report["rounds"] >= 20, report
    assert report["dying_callbacks"] == 0, report


WORKERS = 3
ROUNDS = 50
BUDGET_S = 40.0  # rounds stop early past this (a slow machine runs fewer, never times out)


async def _burst_round(sup: SipSupervisor, recorder: Recorder, uri: str, n: int, fr: list[bytes]) -> None:
    """Dial `n` calls, wait until SIPp's echo reaches each of them, hang all up at once while audio
    is pushed, and wait until each has ended."""
    ids = await dial_listening(sup, recorder, uri, n)
    async with pumping_audio(sup, ids, fr):
        async with asyncio.timeout(10):  # the echo is flowing on every call
            while not all(len(recorder.audio.get(c, [])) >= 5 for c in ids):
                await asyncio.sleep(0.02)
        await asyncio.gather(*(sup.hangup(c) for c in ids))
        ends = [await recorder.wait_state(c, "disconnected", timeout=15) for c in ids]
    assert [e.cause for e in ends] == ["local-hangup"] * n


@pytest.mark.peers
async def test_burst_hangups_with_audio_never_crash_a_worker(start_supervisor, recorder: Recorder) -> None:
    """Rounds of: fill three workers with calls to SIPp (RTP echoed), audio flowing both ways,
    then hang every call up at once. Each call ends `local-hangup`, no worker ever restarts.
    Before the fix a worker died (SIGSEGV) in 4 runs out of 5 (at rounds 6, 8, 22, 39)."""
    per = probed_calls_per_worker()
    n = WORKERS * per
    sup = await start_supervisor(max_workers=WORKERS, warm_workers=WORKERS)
    async with asyncio.timeout(20):
        while any(sup.worker_pid(i) is None for i in range(WORKERS)):
            await asyncio.sleep(0.05)
    pids = [sup.worker_pid(i) for i in range(WORKERS)]
    fr = frames(tone(700, 1.0))
    started = time.monotonic()
    rounds = 0
    async with Sipp(UAS_SCENARIOS["answer"], calls=ROUNDS * n, extra_args=["-rtp_echo"], timeout_s=120) as uas:
        while rounds < ROUNDS and (rounds < 3 or time.monotonic() - started < BUDGET_S):
            try:
                await _burst_round(sup, recorder, uas.uri, n, fr)
            except AssertionError as e:
                now = [sup.worker_pid(i) for i in range(WORKERS)]
                raise AssertionError(f"round {rounds + 1}: {e}; worker pids {pids} -> {now}") from None
            assert [sup.worker_pid(i) for i in range(WORKERS)] == pids, f"round {rounds + 1}: a worker restarted"
            rounds += 1
        res = await uas.wait(20) if rounds == ROUNDS else None
    assert not [e for e in recorder.events if e.cause == "worker-crashed"]
    if res is not None:
        assert res.returncode == 0, res.errors
        assert (res.successful, res.failed) == (ROUNDS * n, 0)
