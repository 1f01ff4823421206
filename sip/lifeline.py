"""Children die with the gateway, even on `kill -9`, and nothing a child forked outlives it.

Three mechanisms, for the processes the gateway starts (SIP workers, the Kamailio front, Janus,
and the short-lived ones: the capacity probe, TTS, recording post-processing):

- `PR_SET_PDEATHSIG` (Linux prctl): the kernel sends the child a signal when the gateway dies.
  A worker sets it on itself at start (`die_with_parent`, SIGKILL: nothing may act on the calls
  of a dead gateway, and the next start must find the worker ports free); the others get it
  between fork and exec (`preexec_die_with_parent`): Kamailio SIGTERM (its main process then
  stops the children it forked, which do not inherit the setting), Janus and the short-lived
  ones SIGKILL (one process each; Janus may sit on a SIGTERM). Both check, once set, that the
  parent is still the one that started them: a parent that died before the prctl sends no
  signal. The signal follows the death of the *thread* that forked: the gateway forks from its
  event loop's thread, which lives as long as the process.
- A main process that dies alone (kill -9 of Kamailio's main, a crash) leaves what it forked
  running with no parent but init, holding its pipes and ports. `exited` sees the main process's
  own exit (a pidfd; asyncio's `wait()` waits for the pipes too, which those keep open), and
  `end_marked` ends the leftovers: the members of its process group (its own session) with a
  marker in their command line.
- A pidfile (`ChildRecord`) for the front and Janus, written once it runs and removed on a clean stop:
  the next start finds a leftover one and ends what is still running under it (`reap`). It
  identifies the processes by their process group and a marker in their command line (the
  front's config path, unique per run), so a reused PID is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

log = structlog.get_logger("sip.lifeline")

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int


def die_with_parent(sig: int, parent_pid: int | None) -> None:
    """Ask for `sig` when our parent dies; exit now if it is already gone (or not `parent_pid`)."""
    if _prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def preexec_die_with_parent(sig: int) -> Callable[[], None]:
    """A `preexec_fn` for subprocesses: `die_with_parent(sig, <the caller's pid>)` in the child,
    before exec (the setting survives exec). Only async-signal-safe work: one prctl, one getppid."""
    parent = os.getpid()

    def preexec() -> None:
        _prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


async def exited(proc: asyncio.subprocess.Process) -> int | None:
    """When the process itself has exited (its return code). Not `proc.wait()`: asyncio (3.11)
    resolves that only once every pipe to the child is closed too, and the processes a child
    forked (Kamailio's) keep its stdout open after it died, so a main process killed alone was
    never seen to exit. The kernel says it through a pidfd, readable at the exit."""
    if proc.returncode is not None:
        return proc.returncode
    loop = asyncio.get_running_loop()
    try:
        fd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        fd = None  # reaped already: the child watcher's report is on its way
    if fd is not None:
        try:
            ready = loop.create_future()
            loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
            try:
                await ready
            finally:
                loop.remove_reader(fd)
        finally:
            os.close(fd)
    # The child watcher (a thread) reaps it at the same moment and reports to the loop; that
    # report is what sets `returncode`. It is not an event one can await: a short bounded wait.
    for _ in range(200):
        if proc.returncode is not None:
            break
        await asyncio.sleep(0.005)
    return proc.returncode


async def terminate_child(proc: asyncio.subprocess.Process, timeout: float,
                          drain: asyncio.Task[None] | None = None,
                          leftovers: Callable[[], Awaitable[object]] | None = None, *,
                          ask: Callable[[], object] | None = None, own_session: bool = True) -> bool:
    """Ask a child to end (`ask()`; by default SIGTERM), SIGKILL it after `timeout` (Kamailio and
    Janus may sit on a first SIGTERM): its process group when it was started in a session of its
    own, else itself; then `leftovers()` (ends what the child forked and left running if it died
    alone), then give its output `drain` task 2 s to finish. True when it had to be killed."""
    killed = False
    if proc.returncode is None:
        if ask is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        else:
            with contextlib.suppress(OSError, RuntimeError):  # its pipe already gone: it is ending
                ask()
        try:
            await asyncio.wait_for(exited(proc), timeout)
        except TimeoutError:
            killed = True
            try:
                if own_session:
                    os.killpg(proc.pid, signal.SIGKILL)  # its own session: ours, started by us
                else:
                    proc.kill()
            except ProcessLookupError:
                pass
            await exited(proc)
    if leftovers is not None:
        await leftovers()
    if drain is not None:
        try:
            await asyncio.wait_for(drain, 2)
        except TimeoutError:
            drain.cancel()
    return killed


class ChildRecord:
    """`path` holds "<pid>\\n<marker>\\n<owner pid>\\n" while a child the gateway (the owner)
    started runs. A record whose owner still runs belongs to a live gateway: never reaped."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def write(self, pid: int, marker: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(f"{pid}\n{marker}\n{os.getpid()}\n")
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def reap(self, grace: float = 3.0) -> list[int]:
        """End every process still running under a leftover record (SIGTERM, then SIGKILL after
        `grace`), then remove it. Returns the PIDs that were found."""
        try:
            pid_text, marker, owner_text = self.path.read_text().splitlines()[:3]
            pid = int(pid_text)
            owner = int(owner_text)
        except FileNotFoundError:
            return []
        except (OSError, ValueError):
            self.remove()
            return []
        if owner != os.getpid() and _alive(owner):
            return []  # another gateway runs on this data dir: its front is its own business
        found = end_marked(marker, pid, grace, why=f"record {self.path}")
        self.remove()
        return found


def end_marked(marker: str, group: int, grace: float = 3.0, why: str = "") -> list[int]:
    """End every process of process group `group` whose command line holds `marker` (SIGTERM,
    then SIGKILL after `grace`); the PIDs found. Both must match: the group is the child's own
    session (the PID of its main process, never reused while a member lives), the marker rules
    out an unrelated group that took that number later; an operator's `less <config>` is in
    neither. Blocking (polls /proc): run it in a thread from the event loop."""
    found = _processes_with(marker, group)
    if found:
        log.warning("sip.lifeline.ending", why=why, marker=marker, pids=found)
        _signal_all(found, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while (left := [p for p in found if _alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        _signal_all(left, signal.SIGKILL)
        deadline = time.monotonic() + grace
        while [p for p in left if _alive(p)] and time.monotonic() < deadline:
            time.sleep(0.05)
    return found


def _processes_with(marker: str, group: int) -> list[int]:
    """PIDs of process group `group` whose command line contains `marker` (never ours)."""
    out = []
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            pgrp = int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[2])
            cmdline = Path(entry.path, "cmdline").read_bytes() if pgrp == group else b""
        except (OSError, IndexError, ValueError):
            continue
        if marker.encode() in cmdline:
            out.append(int(entry.name))
    return sorted(out)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone: it holds no socket)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
