"""The Twilio API worker (sms.api_worker, the default with sms.provider = "twilio") under a real
gateway process: gateway -> its API worker -> Prism (Twilio's spec) -> the stateful stub, the stub's
signed callbacks to the gateway's webhooks.

The worker killed (-9) or stopped (SIGSTOP) in the middle of a send of a few hundred messages,
while some creates are stored at the stub with their answers held back: the sends in flight fail
as maybe-sent, the worker is started again, the outbox looks those messages up (`find_sent`)
before sending again. Every message is created exactly once at the stub and ends delivered. And
the worker ends with the gateway, on SIGTERM and on kill -9.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.gateway.gateway_proc import GatewayProc, gateway_proc, wait_until
from tests.gateway.test_children_lifeline import command, descendants, gone
from tests.gateway.test_sms_crash import numbers, sms_gateway_overrides, sum_creates, wait_final
from tests.gateway.test_sms_kill import send_sms
from tests.gateway.test_sms_twilio import SID, TOKEN
from tests.peers.prism import PrismProxy, ensure_prism, prism_proxy, repo_root, twilio_spec_for_prism
from tests.peers.twilio_stub import TwilioStub, twilio_stub

pytestmark = [pytest.mark.peers, pytest.mark.timeout(240)]

N = 300
BREAK_AFTER = 100  # creates accepted before the worker is broken
HELD = 8  # creates stored at the stub whose answers are held back then


def api_workers(gw: GatewayProc) -> list[int]:
    assert gw.proc is not None
    return [p for p in descendants(gw.proc.pid) if "sms.api_worker" in command(p)]


async def api_worker(gw: GatewayProc, not_pid: int | None = None) -> int:
    """The gateway's API worker (another than `not_pid`), once it runs."""
    await wait_until(lambda: [p for p in api_workers(gw) if p != not_pid], 30, "the sms api worker")
    return next(p for p in api_workers(gw) if p != not_pid)


@asynccontextmanager
async def stub_behind_prism(tmp_path: Path) -> AsyncIterator[tuple[TwilioStub, PrismProxy]]:
    async with twilio_stub(SID, TOKEN) as stub:
        spec, _ = twilio_spec_for_prism(tmp_path)
        binary = await ensure_prism(repo_root() / ".cache" / "prism")
        async with prism_proxy(binary, spec, stub.url, log=tmp_path / "prism.log") as prism:
            yield stub, prism


async def _break_worker_mid_send(tmp_path: Path, sig: signal.Signals, **sets: object) -> tuple[GatewayProc, int]:
    """Send N, hold HELD creates' answers once BREAK_AFTER were accepted, send `sig` to the API
    worker; then check every message created exactly once and delivered. The gateway and the
    broken worker's pid."""
    to = numbers(N, base=8613600000000)
    async with stub_behind_prism(tmp_path) as (stub, prism):
        overrides = sms_gateway_overrides(tmp_path / "data", prism.url, rate_per_s=100, burst=20)
        overrides.update(sets)
        async with gateway_proc(overrides, tmp_path) as gw:
            await gw.start()
            first = await api_worker(gw)
            sent = await send_sms(gw.url, to, "Evacuate district 3: api worker test")
            await wait_until(lambda: sum_creates(stub.creates) >= BREAK_AFTER, 60, f"{BREAK_AFTER} creates")
            at_hold = sum_creates(stub.creates)
            stub.delay_next(HELD, 6.0)  # stored (callbacks too), answered after the worker broke
            await wait_until(lambda: sum_creates(stub.creates) >= at_hold + HELD, 20, "held creates")
            os.kill(first, sig)  # the gateway's child, which this test started
            await api_worker(gw, not_pid=first)  # started again
            counts = await wait_final(gw.url, sent["send_id"], N, timeout=90)
            assert counts == {"delivered": N}, counts
            assert set(stub.creates) == set(to), f"lost: {len(set(to) - set(stub.creates))}"
            dup = {k: v for k, v in stub.creates.items() if v != 1}
            assert not dup, f"created twice: {len(dup)} e.g. {list(dup.items())[:5]}"
            assert stub.create_attempts == N, stub.create_attempts  # none even tried twice
            assert prism.violations() == [], prism.violations()[:5]
            died = gw.log_events(1, "sms.api_worker.died")
            assert len(died) == 1 and died[0]["pid"] == first and died[0]["requests_lost"] >= HELD, died
            assert [e["worker_pid"] for e in gw.log_events(1, "sms.api_worker.ready")][0] == first
            return gw, first


async def test_api_worker_killed_mid_send_every_message_created_once(tmp_path: Path) -> None:
    gw, first = await _break_worker_mid_send(tmp_path, signal.SIGKILL)
    assert gw.log_events(1, "sms.api_worker.died")[0]["rc"] == -signal.SIGKILL


async def test_api_worker_stopped_mid_send_is_killed_at_its_deadline_and_nothing_sent_twice(tmp_path: Path) -> None:
    gw, first = await _break_worker_mid_send(tmp_path, signal.SIGSTOP, **{"sms.twilio.api_worker_stall_s": 3})
    stalled = gw.log_events(1, "sms.api_worker.stalled")
    assert len(stalled) == 1 and stalled[0]["pid"] == first, stalled
    assert await gone([first], 5) == []


async def test_api_worker_ends_with_the_gateway(tmp_path: Path) -> None:
    overrides = sms_gateway_overrides(tmp_path / "data", "http://127.0.0.1:9", rate_per_s=10, burst=1)
    gw = GatewayProc(overrides, tmp_path)
    try:
        await gw.start()
        worker = await api_worker(gw)
        await gw.stop()  # SIGTERM: stopped in order
        assert gw.proc is not None and gw.proc.returncode == 0
        assert await gone([worker]) == []
        assert gw.log_events(1, "sms.api_worker.stopped")[0]["why"] == "shutdown"
        await gw.start()
        worker = await api_worker(gw)
        await gw.kill9()  # the worker dies with it (PR_SET_PDEATHSIG)
        assert await gone([worker]) == [], command(worker)
    finally:
        await gw.stop()
