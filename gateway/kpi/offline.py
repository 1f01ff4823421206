"""`dispatch-gateway kpi --db FILE` (or `--config`): the same figures read straight from a store
file, read-only, with no gateway running (an auditor's copy, a backup, a stopped gateway).

The parts are those the runs recorded; the deadlines of each target are its run's, as in the
gateway. Whether the last run is still going cannot be asked of a file: it is taken as running
when its heartbeat is fresher than `stale_s` (then it ends now, as the gateway counts it), else
as ended at its last heartbeat (killed, or copied while it ran) or its clean stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import facts
from .config import KpiConfig
from .parts import PARTS
from .service import check_window, compute_figures


class ReadOnlyStore:
    """What gateway/kpi/facts.py reads through (`fetchall`), on a file opened read-only."""

    def __init__(self, path: str) -> None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no store at {path}")
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._db.execute(sql, tuple(params)).fetchall()

    def close(self) -> None:
        self._db.close()


async def figures(path: str, config: KpiConfig, since: float, until: float | None,
                  group_by: str | None = None) -> dict[str, Any]:
    store = ReadOnlyStore(path)
    try:
        now = time.time()
        until = now if until is None else until
        check_window(since, until, group_by)
        runs, transitions, maint = await facts.load_availability(store, since, until)  # type: ignore[arg-type]
        dl = await facts.deadlines(store, config.deadlines())  # type: ignore[arg-type]
        rows = await facts.load_target_rows(store, since, until)  # type: ignore[arg-type]
    finally:
        store.close()
    seen = {t.part for t in transitions}
    parts = [p for p in PARTS if p in seen] or ["store"]
    stale_s = 3 * config.probe_interval_s + config.probe_timeout_s
    live = bool(runs) and runs[-1].stopped is None and now - runs[-1].last_seen < stale_s
    result = await asyncio.to_thread(compute_figures, runs, transitions, maint, rows, dl, parts,
                                     [p for p in config.whole if p in parts], since, until, now, group_by,
                                     deadlines=config.deadlines(), live=live)
    result["source"] = {"store": str(path), "last_run_running": live}
    return result


def parse_when(text: str) -> float:
    """An ISO 8601 time (with an offset) or `24h`, as epoch seconds."""
    from gateway.protocol.kpi import epoch

    from .text import when

    with contextlib.suppress(ValueError):
        return epoch(when(text))
    raise ValueError(f"not a time: {text!r} (ISO 8601 with an offset, or 30m, 24h, 7d)")
