"""SipSupervisor with a stopped (SIGSTOP) worker: every failure is a SipError, found within the
liveness deadline, and a dial placed on it lands on the restarted worker instead."""

from __future__ import annotations

import asyncio
import signal
import uuid

import pytest

from sip import SipError, SipUnavailable
from tests.peers.sipp import sipp_uas

from .conftest import Recorder, stopped

pytestmark = pytest.mark.peers

INTERVAL_S, DEADLINE_S = 0.5, 2.0



async def test_dial_to_a_stopped_worker_lands_on_it_once_restarted(start_supervisor, recorder: Recorder) -> None:
    sup = await start_supervisor(max_workers=1, heartbeat_interval_s=INTERVAL_S, heartbeat_deadline_s=DEADLINE_S)
    async with sipp_uas("answer", calls=2) as uas:
        first = uuid.uuid4().hex
        await sup.dial(first, uas.uri)
        await recorder.wait_state(first, "confirmed")
        loop = asyncio.get_running_loop()
        with stopped(sup._workers[0].proc) as (proc,):
            t0 = loop.time()
            with pytest.raises(SipUnavailable) as err:  # a command to it: a typed error in time
                await sup.hold(first)
            assert loop.time() - t0 < INTERVAL_S + DEADLINE_S + 2.5
            assert "stopped answering" in str(err.value)
            crashed = await recorder.wait_state(first, "disconnected")
            assert crashed.cause == "worker-crashed"
            assert proc.returncode == -signal.SIGKILL
        async with asyncio.timeout(15):  # restarted
            while sup.worker_pid(0) in (None, proc.pid):
                await asyncio.sleep(0.05)
        with stopped(sup._workers[0].proc):  # the restarted one stops too, with no call on it
            again = uuid.uuid4().hex
            t0 = loop.time()
            try:
                await sup.dial(again, uas.uri)  # waits for the kill and the restart, then dials
            except SipError:
                pytest.fail("a dial onto a stalled worker with a restart coming must not fail")
            assert loop.time() - t0 < INTERVAL_S + DEADLINE_S + 10
        assert (await recorder.wait_state(again, "confirmed")).worker == 0
        assert sup.stats()["workers"][0]["restarts"] == 2
        await sup.hangup(again)
        assert (await recorder.wait_state(again, "disconnected")).cause == "local-hangup"
