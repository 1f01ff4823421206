"""Where memory grows, found while running (a debug facility, off by default).

`DISPATCH_GATEWAY_TRACEMALLOC=<seconds>` in the environment of the gateway (and so of its SIP
workers, which inherit it) starts tracemalloc and, every that many seconds, reports:
- `top`: the allocation sites (tracebacks, innermost frame first) that grew most since the first
  report, and since the previous one;
- `containers`: the sizes of the long-lived dicts, sets, lists and deques reachable from the
  process's roots (the gateway's services; the worker's state), those that grew since the first
  report first;
- `types`: the object types the garbage collector tracks whose count grew most (after a full
  collection: reachable objects only);
- `traced_kb`, `rss_kb`, `malloc_kb` (glibc's heap), `pymalloc` (CPython's object arenas: how many,
  and the kB in blocks in use, in free blocks, in unused pools), `sqlite_kb` (SQLite's), `fds` by kind.
`DISPATCH_GATEWAY_MEMSTATS=<seconds>` reports the sizes, heaps and fds only (no tracemalloc, no
object census, a few ms): cheap enough for a soak whose RSS slope is measured.
The gateway logs it as the `memwatch` event, a worker writes one JSON line to its log
(sip.log_dir/worker-N.log). Off, nothing runs and nothing is traced: one environment lookup at start.

The sums (`container_sizes`, `grown`, `top_sites`) take plain values and are tested without a
process (tests/gateway/test_memwatch.py); `MemWatch.report` runs them on the live process.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import gc
import os
import re
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Mapping
from typing import Any

ENV = "DISPATCH_GATEWAY_TRACEMALLOC"
LIGHT_ENV = "DISPATCH_GATEWAY_MEMSTATS"  # the same reports without tracemalloc nor object types: cheap
FRAMES = 6
_CONTAINERS = (dict, set, frozenset, list, collections.deque)
_OWN = ("gateway.", "sip.", "sms.", "video.", "terminal.")  # modules whose objects are walked into


def interval_from_env(environ: Mapping[str, str] | None = None, name: str = ENV) -> float | None:
    """The report interval in seconds, or None (off: unset, empty, 0 or not a number)."""
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    try:
        v = float(raw)
    except ValueError:
        return None
    return v if v > 0 else None


def _own(obj: object) -> bool:
    return type(obj).__module__.startswith(_OWN) and not isinstance(obj, type)


def _attrs(obj: object) -> dict[str, Any]:
    d = getattr(obj, "__dict__", None)
    out = dict(d) if isinstance(d, dict) else {}
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if isinstance(name, str) and hasattr(obj, name):
                out.setdefault(name, getattr(obj, name))
    return out


def container_sizes(roots: Mapping[str, object], depth: int = 4) -> dict[str, int]:
    """`path: len` of every container attribute reachable from `roots` through objects of this
    project's modules (attributes, then dict values and list items that are such objects), each
    object visited once, breadth first: an object reached by two ways is named by the shorter
    (`control._event_text`, not `terminals._conns[].server._event_text`), the same in every report.
    Paths read like `calls._live` or `sip._workers[].pending` (the largest of the workers')."""
    out: dict[str, int] = {}
    seen: set[int] = set()
    level: list[tuple[object, str]] = []
    for name, root in roots.items():
        if isinstance(root, _CONTAINERS):
            out[name] = len(root)
        else:
            seen.add(id(root))
            level.append((root, name))
    for _ in range(depth + 1):
        nxt: list[tuple[object, str]] = []
        for obj, path in level:
            for name, val in _attrs(obj).items():
                here = f"{path}.{name}" if path else name
                if isinstance(val, _CONTAINERS):
                    try:
                        n = len(val)
                        members = list(val.values() if isinstance(val, dict) else val)[:64]
                    except (RuntimeError, TypeError):  # changed size under us (another thread)
                        continue
                    out[here] = max(out.get(here, 0), n)
                    for m in members:
                        if _own(m) and id(m) not in seen:
                            seen.add(id(m))
                            nxt.append((m, f"{here}[]"))
                elif _own(val) and id(val) not in seen:
                    seen.add(id(val))
                    nxt.append((val, here))
        level = nxt
    return out


def grown(first: Mapping[str, int], now: Mapping[str, int], top: int = 15) -> list[tuple[str, int, int]]:
    """(name, first, now) of the entries that grew most from `first` to `now` (new names count
    from 0), largest growth first; then, to fill `top`, the largest now."""
    growth = sorted(((k, first.get(k, 0), v) for k, v in now.items() if v > first.get(k, 0)),
                    key=lambda r: (r[1] - r[2], r[0]))
    rest = sorted(((k, first.get(k, 0), v) for k, v in now.items() if v <= first.get(k, 0)),
                  key=lambda r: (-r[2], r[0]))
    return (growth + rest)[:top]


def top_sites(stats: list[tracemalloc.StatisticDiff], top: int = 12) -> list[dict[str, Any]]:
    """The sites that grew most (size_diff), as plain data: kB grown, kB now, blocks grown, frames."""
    out = []
    for s in sorted(stats, key=lambda s: -s.size_diff)[:top]:
        if s.size_diff <= 0:
            break
        out.append({"kb_grown": round(s.size_diff / 1024, 1), "kb": round(s.size / 1024, 1),
                    "blocks_grown": s.count_diff,
                    "at": [f"{f.filename.rsplit('/site-packages/', 1)[-1]}:{f.lineno}" for f in reversed(s.traceback)]})
    return out


def fd_kinds(targets: list[str]) -> dict[str, int]:
    """Open descriptors by what they point at: `socket`, `pipe`, `anon_inode:[eventfd]`, or the
    file's path (files are few and each one matters), from the targets of /proc/self/fd links."""
    return dict(collections.Counter(t.split(":[", 1)[0] if t.startswith(("socket:", "pipe:")) else t
                                    for t in targets))


def _fds() -> dict[str, int]:
    targets = []
    try:
        for fd in os.listdir("/proc/self/fd"):
            try:
                targets.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                continue  # closed meanwhile (the listing's own descriptor)
    except OSError:
        return {}
    return fd_kinds(targets)


def _malloc_kb() -> dict[str, int] | None:
    """glibc's heap (mallinfo2): `arena` taken from the system by brk, `mmap` in mmapped blocks,
    `used` in use, `free` held but free (fragmentation, or kept for reuse)."""
    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                    "fsmblks", "uordblks", "fordblks", "keepcost")]
    try:
        libc = ctypes.CDLL(None)
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = MallInfo2
    m = fn()
    return {"arena": m.arena >> 10, "mmap": m.hblkhd >> 10, "used": m.uordblks >> 10, "free": m.fordblks >> 10}


_PYMALLOC_LINES = {  # sys._debugmallocstats()'s summary lines -> our keys
    "# arenas allocated current": "arenas", "# arenas highwater mark": "arenas_highwater",
    "# bytes in allocated blocks": "in_use_kb", "# bytes in available blocks": "free_blocks_kb",
    "unused pools": "unused_pools_kb"}


def parse_pymalloc(text: str) -> dict[str, int]:
    """CPython's arena summary from `sys._debugmallocstats()`'s text: `arenas` (1 MiB each, mapped
    while any block in them is used), `arenas_highwater`, kB in blocks in use, in free blocks of
    used pools, in unused pools of live arenas. Arenas growing while `in_use_kb` stays flat is
    fragmentation (a few live objects keep an arena each), not a leak."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        label, sep, value = line.partition("=")
        if not sep:
            continue
        for key, name in _PYMALLOC_LINES.items():
            if key in label and name not in out:
                n = int(re.sub(r"[^0-9]", "", value) or 0)
                out[name] = n >> 10 if name.endswith("_kb") else n
    return out


def _pymalloc() -> dict[str, int] | None:
    """`parse_pymalloc` of this process: `_debugmallocstats` writes to the C stderr, so fd 2 points
    at a temporary file for the call (it holds the GIL throughout: no Python thread writes then)."""
    if not hasattr(sys, "_debugmallocstats"):
        return None
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        try:
            sys.stderr.flush()
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        return parse_pymalloc(tmp.read().decode("ascii", "replace")) or None


def _sqlite_kb() -> int | None:
    """SQLite's own heap (sqlite3_memory_used: page caches, statements) in this process."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
        fn = lib.sqlite3_memory_used
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_int64
    return int(fn()) >> 10


def watch_from_env(roots: Mapping[str, object],
                   environ: Mapping[str, str] | None = None) -> tuple[MemWatch, float] | None:
    """The watch the environment asks for (full with DISPATCH_GATEWAY_TRACEMALLOC, light with
    DISPATCH_GATEWAY_MEMSTATS) and its interval, or None."""
    if (every := interval_from_env(environ)) is not None:
        return MemWatch(roots), every
    if (every := interval_from_env(environ, LIGHT_ENV)) is not None:
        return MemWatch(roots, light=True), every
    return None


def _rss_kb() -> int | None:
    try:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None


class MemWatch:
    """tracemalloc from `start()`; `report()` compares the heap with the first and the previous
    report. Roots are the objects whose containers are measured."""

    def __init__(self, roots: Mapping[str, object], frames: int = FRAMES, *, light: bool = False) -> None:
        self.roots = dict(roots)
        self.frames = frames
        self.light = light  # no tracemalloc, no object types, no collection: sizes, heaps, fds only
        self._filters = [tracemalloc.Filter(False, tracemalloc.__file__),
                         tracemalloc.Filter(False, __file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
        self._first: tracemalloc.Snapshot | None = None
        self._prev: tracemalloc.Snapshot | None = None
        self._sizes0: dict[str, int] = {}
        self._types0: collections.Counter[str] = collections.Counter()
        self.reports = 0

    def start(self) -> None:
        if not self.light and not tracemalloc.is_tracing():
            tracemalloc.start(self.frames)

    def stop(self) -> None:
        if not self.light:
            tracemalloc.stop()

    def _light_report(self) -> dict[str, Any]:
        t0 = time.monotonic()
        sizes = container_sizes(self.roots)
        if not self.reports:
            self._sizes0 = sizes
        out = {"n": self.reports, "rss_kb": _rss_kb(), "malloc_kb": _malloc_kb(), "pymalloc": _pymalloc(),
               "sqlite_kb": _sqlite_kb(),
               "fds": _fds(), "containers": grown(self._sizes0, sizes, 12)}
        out["took_s"] = round(time.monotonic() - t0, 3)
        self.reports += 1
        return out

    def _types(self) -> collections.Counter[str]:
        return collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())

    def report(self, top: int = 12) -> dict[str, Any]:
        if self.light:
            return self._light_report()
        t0 = time.monotonic()
        collected = gc.collect()  # what is left is reachable: garbage waiting for a collection is not growth
        snap = tracemalloc.take_snapshot().filter_traces(self._filters)
        sizes, types = container_sizes(self.roots), self._types()
        out: dict[str, Any] = {"n": self.reports, "traced_kb": round(tracemalloc.get_traced_memory()[0] / 1024),
                               "tracemalloc_kb": round(tracemalloc.get_tracemalloc_memory() / 1024),  # its own overhead, in RSS too
                               "rss_kb": _rss_kb(), "gc_objects": sum(types.values()), "gc_collected": collected, "fds": _fds(),
                               "malloc_kb": _malloc_kb(), "pymalloc": _pymalloc(), "sqlite_kb": _sqlite_kb()}
        if self._first is None:
            self._first, self._sizes0, self._types0 = snap, sizes, types
        else:
            out["top_since_first"] = top_sites(snap.compare_to(self._first, "traceback"), top)
            assert self._prev is not None
            out["top_since_previous"] = top_sites(snap.compare_to(self._prev, "traceback"), top // 2)
        out["containers"] = grown(self._sizes0, sizes, top + 8)
        out["types"] = grown(dict(self._types0), dict(types), top)
        self._prev = snap
        self.reports += 1
        out["took_s"] = round(time.monotonic() - t0, 3)
        return out


async def run_reports(watch: MemWatch, interval_s: float, emit: Any) -> None:
    """The gateway's loop: a report every `interval_s` seconds, handed to `emit` (a log call).
    The snapshot and its sums run in a thread; the GIL still holds the loop for part of that:
    a debug facility, not for production."""
    import asyncio

    watch.start()
    try:
        while True:
            emit(await asyncio.to_thread(watch.report))
            await asyncio.sleep(interval_s)
    finally:
        watch.stop()
