"""The probe loop: each part the gateway depends on checked every `kpi.probe_interval_s`, and each
change of state stored (gateway/kpi/facts.py) with its time and cause.

A part's check is an async callable answering (up, cause); it runs under `kpi.probe_timeout_s`
(a check that does not answer in time is down: "probe timed out"). The loop also writes the run's
heartbeat, which is the store's own probe: a heartbeat that cannot be written marks the store
down; that change (with the time it was seen) is kept in memory, bounded, and written once the
store takes writes again. `poke(part)` probes one part at once (the SIP supervisor pokes "sip"
when a worker dies or is back), so a short outage is not missed between two rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping

import structlog

from gateway.store import Store
from gateway.tasks import OwnedTasks
from gateway.timeutil import now_iso

from . import facts

log = structlog.get_logger(__name__)

Check = Callable[[], Awaitable[tuple[bool, str]]]
STORE = "store"
_BACKLOG = 1000  # state changes kept while the store refuses writes; the oldest go first


class Prober:
    def __init__(self, store: Store, checks: Mapping[str, Check], *, interval_s: float, timeout_s: float,
                 deadlines: Mapping[str, float]) -> None:
        self._store = store
        self._checks = dict(checks)
        self._interval = interval_s
        self._timeout = timeout_s
        self._deadlines = dict(deadlines)
        self.run_id: int | None = None  # None until the run's row is written
        self._started_at = ""
        self._running = False
        self.state: dict[str, tuple[bool, str]] = {}
        self._backlog: deque[tuple[str, bool, str, str]] = deque(maxlen=_BACKLOG)
        self._tasks = OwnedTasks()
        self._wake = asyncio.Event()
        self._poked: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._write_lock = asyncio.Lock()  # the backlog is written in order, each change once
        self.on_state: Callable[[str, bool], None] | None = None  # told each part's state as stored
        # Bumped by each hook's observation: a probe that began before it judged an older state.
        self._observed: dict[str, int] = {}

    @property
    def parts(self) -> list[str]:
        return [STORE, *self._checks]

    async def start(self) -> None:
        """A new run, and every part's state at its start (recorded even when up). A store that
        refuses the run's row does not stop the gateway: the run is written (with this start
        time) and the states after it once the store takes writes."""
        self._started_at = now_iso()
        up, cause = await self._start_run()
        self._running = True
        self.state[STORE] = (up, cause)
        await self._write(STORE, up, cause or "start", self._started_at)
        await asyncio.gather(*(self._probe(p, initial=True) for p in self._checks))
        self._tasks.spawn(self._loop(), name="kpi-probe-loop")
        log.info("kpi.run.started", run_id=self.run_id, parts=self.parts)

    async def _start_run(self) -> tuple[bool, str]:
        try:
            async with asyncio.timeout(self._timeout):
                self.run_id = await facts.start_run(self._store, self._deadlines, self._started_at)
            return True, ""
        except Exception as exc:  # noqa: BLE001 - the store is down; tried again each round
            log.warning("kpi.run.not_written", error=repr(exc))
            return False, f"run not written: {type(exc).__name__}: {exc}"[:300]

    async def stop(self) -> None:
        await self._tasks.cancel_all()
        if self.run_id is not None:
            with contextlib.suppress(Exception):
                await facts.stop_run(self._store, self.run_id)
            log.info("kpi.run.stopped", run_id=self.run_id)

    def observe(self, part: str, up: bool, cause: str) -> None:
        """A hook saw `part` change (the SIP supervisor: a worker died, or is back). Down is
        recorded as seen, at this moment; up is checked by a probe first."""
        if part not in self._checks or not self._running:
            return
        self._observed[part] = self._observed.get(part, 0) + 1
        if up:
            self.poke(part)
        else:
            self._tasks.spawn(self._changed(part, False, cause, now_iso()), name=f"kpi-observe-{part}")

    def poke(self, part: str) -> None:
        """Probe `part` now (from a hook: not awaited, never raises)."""
        if part in self._checks and self._running:
            self._poked.add(part)
            self._wake.set()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_round = loop.time() + self._interval
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(next_round):
                    await self._wake.wait()
            self._wake.clear()
            poked, self._poked = self._poked, set()
            if poked:
                await asyncio.gather(*(self._probe(p) for p in poked))
            if loop.time() >= next_round:  # pokes never put the heartbeat off
                next_round = loop.time() + self._interval
                await self._heartbeat()
                await asyncio.gather(*(self._probe(p) for p in self._checks))

    async def _heartbeat(self) -> None:
        when = now_iso()
        if self.run_id is None:
            up, cause = await self._start_run()
        else:
            try:
                async with asyncio.timeout(self._timeout):
                    await facts.heartbeat(self._store, self.run_id, when)
                up, cause = True, ""
            except Exception as exc:  # noqa: BLE001 - any failure to write is the store being down
                up, cause = False, f"heartbeat not written: {type(exc).__name__}: {exc}"[:300]
        await self._changed(STORE, up, cause, when)
        if up:
            await self._flush()  # what an unchanged state left behind (a run written late)

    async def _probe(self, part: str, initial: bool = False) -> None:
        lock = self._locks.setdefault(part, asyncio.Lock())
        async with lock:  # a poke and a round never judge the same part at once
            when, seen = now_iso(), self._observed.get(part, 0)
            try:
                async with asyncio.timeout(self._timeout):
                    up, cause = await self._checks[part]()
            except TimeoutError:
                up, cause = False, f"probe timed out after {self._timeout} s"
            except Exception as exc:  # noqa: BLE001 - a check that fails says the part is down
                up, cause = False, f"probe failed: {type(exc).__name__}: {exc}"[:300]
            if self._observed.get(part, 0) != seen:
                self.poke(part)  # a hook saw it change meanwhile: this answer may predate that
                return
            if initial:
                self.state[part] = (up, cause)
                await self._write(part, up, cause or "start", when)
            else:
                await self._changed(part, up, cause, when)

    async def _changed(self, part: str, up: bool, cause: str, when: str) -> None:
        old = self.state.get(part)
        if old is not None and old[0] == up:
            return
        self.state[part] = (up, cause)
        if up:
            log.info("kpi.part.up", part=part)
        else:
            log.warning("kpi.part.down", part=part, cause=cause)
        await self._write(part, up, cause, when)

    async def _write(self, part: str, up: bool, cause: str, when: str) -> None:
        if self.on_state is not None:
            self.on_state(part, up)
        self._backlog.append((part, up, cause, when))
        if not (part == STORE and not up):  # else written once the store is back
            await self._flush()

    async def _flush(self) -> None:
        if self.run_id is None:
            return  # the run's row first
        async with self._write_lock:
            while self._backlog:
                p, u, c, w = self._backlog[0]
                try:
                    await facts.record_state(self._store, self.run_id, p, u, c, w)
                except Exception as exc:  # noqa: BLE001 - kept, written with the next change
                    log.warning("kpi.state.not_written", part=p, error=repr(exc))
                    return
                self._backlog.popleft()
