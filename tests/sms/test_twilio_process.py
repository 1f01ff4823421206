"""TwilioProcessProvider: Twilio's API calls in sms.api_worker, a process of their own, against
Twilio's own OpenAPI description (provider -> its worker -> Prism -> the stateful Messages stub),
the stub's signed callbacks reaching the provider's webhook routes in this process.

What crosses the pipe is what the in-process provider returns or raises (each error compared
field by field with `TwilioProvider`'s for the same injected failure); the worker killed (-9) or
stopped (SIGSTOP) mid-send fails the requests in flight as maybe-sent and is started again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from structlog.testing import capture_logs

from gateway.kpi.checks import sms_check
from sms.provider import Inbound, ProviderError, Receipt
from sms.twilio import TwilioProvider
from sms.twilio_process import STOP_TIMEOUT, TwilioProcessProvider
from tests.gateway.test_stop_signals import alive
from tests.peers.ports import free_tcp_port
from tests.peers.prism import PrismProxy
from tests.peers.twilio_stub import TwilioStub
from tests.sms.test_twilio import GOOD, SENDER, SID, TOKEN, prism, serve_webhooks, stub  # noqa: F401  (the session's stub and Prism)

pytestmark = [pytest.mark.peers, pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(90)]


@dataclass
class Worked:
    provider: TwilioProcessProvider
    stub: TwilioStub
    prism: PrismProxy
    public_url: str
    receipts: list[Receipt] = field(default_factory=list)
    inbound: list[Inbound] = field(default_factory=list)

    def in_process(self, **overrides: object) -> TwilioProvider:
        options: dict = dict(from_number=SENDER, api_base=self.prism.url, public_url=self.public_url, timeout_s=5)
        return TwilioProvider(SID, TOKEN, **{**options, **overrides})

    async def worker(self, **overrides: object) -> TwilioProcessProvider:
        options: dict = dict(from_number=SENDER, api_base=self.prism.url, public_url=self.public_url, timeout_s=5)
        provider = TwilioProcessProvider(SID, TOKEN, **{**options, **overrides})
        await provider.start(self.receipts.append, self.inbound.append)
        return provider


@pytest_asyncio.fixture(loop_scope="session")
async def tw(stub: TwilioStub, prism: PrismProxy) -> AsyncIterator[Worked]:  # noqa: F811
    stub.reset()
    port = free_tcp_port()
    h = Worked(provider=None, stub=stub, prism=prism, public_url=f"http://127.0.0.1:{port}")  # type: ignore[arg-type]
    h.provider = await h.worker()
    runner = await serve_webhooks(h.provider, port)
    try:
        yield h
    finally:
        await h.provider.stop()
        await runner.cleanup()
        stub.reset()


async def until(pred, timeout: float, step: float = 0.01) -> None:  # /proc and the stub have no event to await
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(step)


async def test_send_through_the_worker_and_callbacks_to_the_gateway(tw: Worked) -> None:
    submitted = await tw.provider.send("m-1", SENDER, GOOD, "Evacuate zone B")
    assert submitted.provider_id in tw.stub.messages and submitted.status == "queued"
    await until(lambda: len([r for r in tw.receipts if r.provider_id == submitted.provider_id]) == 3, 10)
    assert [r.status for r in tw.receipts] == ["queued", "sent", "delivered"]
    assert tw.stub.creates == {GOOD: 1}
    assert tw.provider.pid != os.getpid() and alive(tw.provider.pid)  # type: ignore[arg-type]
    assert tw.prism.violations() == []


async def test_concurrent_sends_share_the_worker_s_pool(tw: Worked) -> None:
    provider = await tw.worker(api_base=tw.stub.url, max_connections=4)
    try:
        sent = await asyncio.gather(*(provider.send(f"m-{i}", SENDER, f"+1555123{i:04d}", "pool") for i in range(60)))
    finally:
        await provider.stop()
    assert len({s.provider_id for s in sent}) == 60 and sum(tw.stub.creates.values()) == 60
    assert 1 <= len(tw.stub.api_peers) <= 4, tw.stub.api_peers  # the worker's one pool of 4


@pytest.mark.parametrize("case", ["429-retry-after", "500", "503", "invalid-to", "timeout"])
async def test_errors_cross_the_boundary_typed(tw: Worked, case: str) -> None:
    """The same injected failure through the in-process provider and through the worker: the same
    ProviderError (message, status_code, retryable, maybe_sent, details)."""

    def inject() -> tuple[str, float]:
        if case == "429-retry-after":
            tw.stub.fail_next(1, 429, retry_after=7)
        elif case in ("500", "503"):
            tw.stub.fail_next(1, int(case))
        elif case == "timeout":
            tw.stub.delay_next(1, 3.0)
            return GOOD, 1
        return ("+1555" if case == "invalid-to" else GOOD), 5

    got = []
    for make in (lambda t: tw.in_process(timeout_s=t), lambda t: tw.worker(timeout_s=t)):
        to, timeout = inject()
        provider = make(timeout)
        provider = await provider if asyncio.iscoroutine(provider) else provider
        try:
            with pytest.raises(ProviderError) as info:
                await provider.send("m-e", SENDER, to, "hello")
        finally:
            await provider.stop()
        e = info.value
        got.append((type(e), e.reason, e.message, e.status_code, e.retryable, e.maybe_sent, e.details))
    assert got[0] == got[1], got
    if case == "timeout":
        assert got[1][4:6] == (True, True) and got[1][6]["error"] == "timeout"
    if case == "invalid-to":
        assert got[1][3:6] == (400, False, False) and got[1][6]["code"] == 21211
    if case == "429-retry-after":
        assert got[1][6]["retry_after_s"] == 7.0


async def test_find_sent_through_the_worker(tw: Worked) -> None:
    since = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    sent = [await tw.provider.send(f"m-{i}", SENDER, GOOD, f"msg {i}") for i in range(3)]
    found = await tw.provider.find_sent(GOOD, since.isoformat())
    assert {r.provider_id for r in found} == {s.provider_id for s in sent}
    assert {r.body for r in found} == {"msg 0", "msg 1", "msg 2"}
    assert await tw.provider.find_sent(GOOD, (datetime.now(UTC) + timedelta(minutes=5)).isoformat()) == []
    with pytest.raises(ValueError):
        await tw.provider.find_sent(GOOD, "yesterday")


async def test_worker_killed_mid_send_fails_in_flight_as_maybe_sent_and_restarts(tw: Worked) -> None:
    """kill -9 while 60 creates are out, some held at the stub (stored, unanswered): each send
    either got its answer or fails maybe_sent and retryable; the restarted worker finds the held
    ones (find_sent), so nothing needs sending twice."""
    since = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    tw.stub.delay_next(10, 4.0)
    old = tw.provider.pid
    assert old is not None
    with capture_logs() as logs:
        sends = [asyncio.ensure_future(tw.provider.send(f"m-{i}", SENDER, f"+1555200{i:04d}", "kill"))
                 for i in range(60)]
        await until(lambda: tw.stub.create_attempts >= 60, 20)
        os.kill(old, signal.SIGKILL)
        results = await asyncio.gather(*sends, return_exceptions=True)
        await until(lambda: tw.provider.pid is not None, 20)
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(lost) >= 10, "the held creates were in flight at the kill"
    assert all(isinstance(e, ProviderError) and e.maybe_sent and e.retryable and e.status_code is None
               for e in lost), lost
    assert tw.provider.pid != old and tw.provider.restarts == 1
    died = [e for e in logs if e["event"] == "sms.api_worker.died"]
    assert died and died[0]["rc"] == -signal.SIGKILL and died[0]["requests_lost"] == len(lost)
    # every lost one is at the stub (they had all reached it): found, not sent again
    for i, r in enumerate(results):
        if isinstance(r, BaseException):
            found = await tw.provider.find_sent(f"+1555200{i:04d}", since.isoformat())
            assert [m.body for m in found] == ["kill"]
    assert tw.stub.create_attempts == 60 and set(tw.stub.creates.values()) == {1}


async def test_a_stopped_worker_is_killed_at_its_deadline_and_restarted(tw: Worked) -> None:
    provider = await tw.worker(stall_s=2)
    try:
        old = provider.pid
        assert old is not None
        await provider.send("m-a", SENDER, GOOD, "before")
        with capture_logs() as logs:
            os.kill(old, signal.SIGSTOP)  # our own child: stopped, then killed by the provider
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(ProviderError) as info:
                await provider.send("m-b", SENDER, GOOD, "during")
            waited = loop.time() - t0
            assert (info.value.maybe_sent, info.value.retryable) == (True, True)
            assert 1.0 < waited < 6, waited
            sub = await provider.send("m-c", SENDER, GOOD, "after")  # waits for the new worker
        assert sub.provider_id in tw.stub.messages
        assert provider.pid not in (None, old) and not alive(old)
        stalled = [e for e in logs if e["event"] == "sms.api_worker.stalled"]
        assert stalled and stalled[0]["pid"] == old and "silent" in stalled[0]["why"]
        assert [m["body"] for m in tw.stub.messages.values()] == ["before", "after"]  # "during" never left
    finally:
        await provider.stop()


async def test_the_kpi_probe_says_when_the_worker_is_down(tw: Worked) -> None:
    provider = await tw.worker()
    check = sms_check(provider, tw.prism.url, 2)
    assert await check() == (True, "")
    pid = provider.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    async with asyncio.timeout(10):  # seen while the worker is started again (a process start)
        while (result := await check())[0]:
            await asyncio.sleep(0.005)
    assert result == (False, "sms api worker exited (rc -9)"), result
    await until(lambda: provider.pid is not None, 20)
    assert await check() == (True, "")
    await provider.stop()
    assert not alive(pid) and await check() == (False, "stopped")


async def test_stop_ends_the_worker_and_its_lines_are_logged_here(tw: Worked) -> None:
    with capture_logs() as logs:
        provider = await tw.worker()
        pid = provider.pid
        assert pid is not None
        await provider.stop()
    assert not alive(pid)
    mine = [e for e in logs if e.get("worker_pid") == pid]
    assert [e["event"] for e in mine] == ["sms.api_worker.ready", "sms.api_worker.stopped"], mine
    assert mine[1]["why"] == "shutdown"
    assert TOKEN not in repr(logs)
    with pytest.raises(ProviderError) as info:  # stopped: refused at once, never sent
        await provider.send("m-x", SENDER, GOOD, "late")
    assert info.value.maybe_sent is False


async def test_stop_kills_a_worker_that_does_not_read_its_shutdown(tw: Worked) -> None:
    """A worker that cannot end (stopped: it never reads the shutdown frame) is killed when stop's
    deadline passes; stop does not hang, and no worker is left."""
    provider = await tw.worker()
    pid = provider.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # our own child
    t0 = time.monotonic()
    async with asyncio.timeout(STOP_TIMEOUT + 10):
        await provider.stop()
    took = time.monotonic() - t0
    assert not alive(pid)
    assert STOP_TIMEOUT - 0.5 <= took, f"killed before its deadline ({took:.2f} s)"


async def test_more_than_the_bound_in_flight_is_refused_not_queued(tw: Worked) -> None:
    provider = await tw.worker(api_base=tw.stub.url, max_connections=50)  # at most 100 at the worker
    tw.stub.delay_next(provider.max_pending, 1.0)
    try:
        results = await asyncio.gather(*(provider.send(f"m-{i}", SENDER, f"+1555300{i:04d}", "bound")
                                         for i in range(provider.max_pending + 5)), return_exceptions=True)
    finally:
        await provider.stop()
    refused = [r for r in results if isinstance(r, ProviderError)]
    assert len(refused) == 5 and all((e.status_code, e.retryable, e.maybe_sent) == (429, True, False)
                                     for e in refused)
    assert sum(tw.stub.creates.values()) == provider.max_pending


async def test_a_worker_that_cannot_start_fails_start(tw: Worked) -> None:
    provider = TwilioProcessProvider(SID, TOKEN, from_number=SENDER, api_base=tw.stub.url,
                                     public_url=tw.public_url, python="/bin/false")
    with pytest.raises(ProviderError) as info:
        await provider.start(tw.receipts.append, tw.inbound.append)
    assert info.value.retryable and not info.value.maybe_sent
    await provider.stop()
