"""The KPI probe of the SMS provider (gateway/kpi/checks.py, `sms_check`) against the real peers:
Twilio's API as the gateway reaches it in tests (the stub behind Prism, a separate process) and
the SMSC simulator. After N probes nothing the probe opened is left alive: no socket object, no
transport, no descriptor, counted with automatic garbage collection off and no `gc.collect()`
(before the fix, every Twilio probe left a closed socket and its transport in reference cycles:
docs/benchmarks.md, "Where the growth was")."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.kpi.checks import sms_check
from sms.smpp import SmppProvider
from sms.twilio import TwilioProvider
from tests.peers.ports import free_tcp_port
from tests.peers.prism import ensure_prism, prism_proxy, repo_root, twilio_spec_for_prism
from tests.peers.smpp_sim import SmppSim
from tests.peers.twilio_stub import twilio_stub

pytestmark = [pytest.mark.peers, pytest.mark.timeout(180)]

SID = "AC" + "0f1e2d3c4b5a6978" * 2
TOKEN = "kpi-probe-test-token-41"
PROBES = 100


@dataclass(frozen=True)
class Live:
    sockets: int  # socket.socket objects still alive (open or closed)
    transports: int  # asyncio transports still alive
    fds: int  # descriptors of this process that are sockets

    def grew(self, since: Live) -> dict[str, int]:
        """What there is more of than at `since` (one object freed meanwhile by someone else is no
        reason to fail; one left by the probe is)."""
        return {k: v - getattr(since, k) for k, v in vars(self).items() if v > getattr(since, k)}

    @classmethod
    def now(cls) -> Live:
        objects = gc.get_objects()  # lists what is alive; collects nothing
        fds = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                fds += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
            except OSError:
                continue  # the listing's own descriptor
        return cls(sum(isinstance(o, socket.socket) for o in objects),
                   sum(isinstance(o, asyncio.BaseTransport) for o in objects), fds)


async def probe_many(check: Callable[[], Awaitable[tuple[bool, str]]]) -> tuple[Live, Live, set[tuple[bool, str]]]:
    """What is alive before and after PROBES probes, with the collector off throughout, and the
    answers seen. The loop runs a few rounds after the last probe, so callbacks a close scheduled
    have run: what is still alive then waits for the collector."""
    await check()  # first use: the resolver's thread and the like, made once
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        before = Live.now()
        answers = {await check() for _ in range(PROBES)}
        for _ in range(3):
            await asyncio.sleep(0)
        after = Live.now()
    finally:
        if was_enabled:
            gc.enable()
    return before, after, answers


@pytest.fixture
async def twilio_api(tmp_path: Path) -> AsyncIterator[str]:
    """The URL the gateway is given as Twilio's API in tests: Prism (its own process) in front of
    the stub. The probe's peer is out of this process, so what is counted here is the probe's."""
    async with twilio_stub(SID, TOKEN) as stub:
        spec, _ = twilio_spec_for_prism(tmp_path)
        binary = await ensure_prism(repo_root() / ".cache" / "prism")
        async with prism_proxy(binary, spec, stub.url, log=tmp_path / "prism.log") as prism:
            yield prism.url


async def test_twilio_probe_leaves_nothing_for_the_collector(twilio_api: str) -> None:
    provider = TwilioProvider(SID, TOKEN, from_number="+15005550006", api_base=twilio_api,
                              public_url="http://127.0.0.1:9")
    try:
        before, after, answers = await probe_many(sms_check(provider, twilio_api, 2.0))
    finally:
        await provider.stop()
    assert answers == {(True, "")}
    assert after.grew(before) == {}, f"after {PROBES} probes: {after}, before: {before}"


async def test_twilio_probe_of_a_closed_port_leaves_nothing_either() -> None:
    api = f"http://127.0.0.1:{free_tcp_port()}"  # nothing listens: refused at once
    provider = TwilioProvider(SID, TOKEN, from_number="+15005550006", api_base=api,
                              public_url="http://127.0.0.1:9")
    before, after, answers = await probe_many(sms_check(provider, api, 2.0))
    [(up, cause)] = answers
    assert not up and "unreachable: ConnectionRefusedError" in cause
    assert after.grew(before) == {}, f"after {PROBES} probes: {after}, before: {before}"


async def test_smpp_probe_opens_nothing_besides_the_bound_session() -> None:
    sim = SmppSim()
    await sim.start()
    provider = SmppProvider("127.0.0.1", sim.port, "gw", "secret", reconnect_s=0.2, enquire_link_s=30)
    try:
        await provider.start(lambda r: None, lambda m: None)
        assert provider.bound
        before, after, answers = await probe_many(sms_check(provider, None, 2.0))
        assert answers == {(True, "")}
        assert after.grew(before) == {}, f"after {PROBES} probes: {after}, before: {before}"
        assert len(sim.of("bind_transceiver")) == 1  # the SMSC saw no other session
    finally:
        await provider.stop()
        await sim.stop()
