"""Fixtures for sip tests: configs with free ports, a supervisor that records events and audio."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sip import SipConfig, SipError, SipEvent, SipSupervisor
from sip.config import RTP_PORTS_PER_WORKER
from tests.peers.sipp import free_port_block

ROOT = Path(__file__).resolve().parents[2]


# Calls per worker the tests fill workers to: the wheel's compiled limit. A source build of pjsua2
# holds hundreds (scripts/build_pjsua2.sh); tests that fill workers keep the fills small and set
# calls_per_worker to this, so they test placement and refusal the same way on either build.
TEST_CALLS_PER_WORKER = 4


@functools.lru_cache(maxsize=4)
def probe_count(limit: int = 64) -> int:
    """Run the worker's probe (synchronously, outside any loop): the calls one worker holds, up
    to `limit`; once per test session."""
    out = subprocess.run(
        [sys.executable, "-m", "sip.worker", "--probe", "--probe-limit", str(limit)], cwd=ROOT,
        capture_output=True, timeout=60,
    ).stdout.decode()
    counts = [json.loads(ln)["ok_calls"] for ln in out.splitlines() if ln.startswith('{"ok_calls"')]
    assert counts, f"probe printed nothing: {out!r}"
    return max(counts)


def probed_calls_per_worker() -> int:
    """The calls per worker tests fill workers to: the probe's count, at most TEST_CALLS_PER_WORKER."""
    return min(probe_count(), TEST_CALLS_PER_WORKER)


def make_config(**kw: object) -> SipConfig:
    workers = int(kw.get("max_workers", 1))  # type: ignore[arg-type]
    base = free_port_block(span=10 * (workers + 1))
    defaults: dict[str, object] = {
        "host": "127.0.0.1",
        "port": base,
        "worker_base_port": base + 10,
        # every worker's RTP range free now (not only the first ports)
        "rtp_port_base": free_port_block(
            span=RTP_PORTS_PER_WORKER * int(kw.get("max_workers", SipConfig.max_workers)), tcp=False),  # type: ignore[arg-type]
        "warm_workers": 1,
        "log_level": 3,
    }
    defaults.update(kw)
    if "calls_per_worker" not in kw:
        defaults["calls_per_worker"] = probed_calls_per_worker()
    cfg = SipConfig(**defaults)  # type: ignore[arg-type]
    return cfg


@dataclass
class Recorder:
    """Collects SipEvents and audio; lets a test wait for a condition without sleeping blindly."""

    events: list[SipEvent] = field(default_factory=list)
    audio: dict[str, list[bytes]] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_event(self, ev: SipEvent) -> None:
        self.events.append(ev)
        self._changed.set()

    def on_audio(self, call_id: str, pcm: bytes) -> None:
        self.audio.setdefault(call_id, []).append(pcm)

    def of(self, call_id: str) -> list[SipEvent]:
        return [e for e in self.events if e.call_id == call_id]

    def states(self, call_id: str) -> list[str | None]:
        return [e.state for e in self.of(call_id) if e.kind == "state"]

    async def wait_for(self, pred: Callable[[SipEvent], bool], timeout: float = 10, since: int = 0) -> SipEvent:
        """The first event from index `since` on that matches `pred` (waits for it)."""
        seen = since
        async with asyncio.timeout(timeout):
            while True:
                for ev in self.events[seen:]:
                    if pred(ev):
                        return ev
                seen = len(self.events)
                self._changed.clear()
                await self._changed.wait()

    async def wait_state(self, call_id: str, state: str, timeout: float = 10) -> SipEvent:
        try:
            return await self.wait_for(lambda e: e.call_id == call_id and e.kind == "state" and e.state == state, timeout)
        except TimeoutError:
            raise AssertionError(f"{call_id}: no {state!r} within {timeout}s; got {self.of(call_id)}") from None


async def dial_listening(sup: SipSupervisor, recorder: Recorder, uri: str, n: int) -> list[str]:
    """Dial `n` calls to `uri`, wait until each is confirmed and listen to each; their ids."""
    ids = [uuid.uuid4().hex for _ in range(n)]
    for c in ids:
        await sup.dial(c, uri)
    for c in ids:
        await recorder.wait_state(c, "confirmed", timeout=15)
        await sup.listen(c, True)
    return ids


@contextlib.asynccontextmanager
async def pumping_audio(sup: SipSupervisor, call_ids: list[str], frames: list[bytes]) -> AsyncIterator[None]:
    """While the block runs, send the next of `frames` (looped) to every call each 20 ms, as a
    real-time source would; calls that have ended are skipped."""
    stop = asyncio.Event()

    async def pump() -> None:
        i = 0
        while not stop.is_set():
            for c in call_ids:
                with contextlib.suppress(SipError):
                    sup.send_audio(c, frames[i % len(frames)])
            i += 1
            await asyncio.sleep(0.02)  # the pace of the audio itself

    task = asyncio.create_task(pump())
    try:
        yield
    finally:
        stop.set()
        await task


@contextlib.contextmanager
def stopped(*procs: asyncio.subprocess.Process) -> Iterator[tuple[asyncio.subprocess.Process, ...]]:
    """SIGSTOP worker processes (a frozen pjsua loop); on the way out, SIGKILL (and SIGCONT) any
    of those very processes that is still ours (its asyncio Process not reaped: the PID is ours)."""
    for p in procs:
        os.kill(p.pid, signal.SIGSTOP)
    try:
        yield procs
    finally:
        for p in procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
                    os.kill(p.pid, signal.SIGCONT)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def start_supervisor(recorder: Recorder, tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    """`sup = await start_supervisor(**config_overrides)`; every supervisor is stopped afterwards."""
    started: list[SipSupervisor] = []

    async def start(**kw: object) -> SipSupervisor:
        kw.setdefault("log_dir", str(tmp_path / f"sip-workers-{len(started)}"))
        sup = SipSupervisor(make_config(**kw), recorder.on_event, recorder.on_audio)
        started.append(sup)
        await sup.start()
        return sup

    yield start
    for sup in started:
        await sup.stop()
