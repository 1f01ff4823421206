"""`dispatch-gateway kpi --db FILE` (or `--config`): the same figures read straight from a store
file, read-only, with no gateway running (an auditor's copy, a backup, a stopped gateway).

The parts are those the runs recorded; the deadlines of each target are its run's, as in the
gateway. Whether the last run is still going cannot be asked of a file: it is taken as running
when its heartbeat is fresher than `stale_s` (then it ends now, as the gateway counts it), else
as ended at its last heartbeat (killed, or copied while it ran) or its clean stop.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.timeutil import iso_to_epoch

from .config import KpiConfig
from .figures import check_window, read_figures


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
        last = await store.fetchall("SELECT last_seen, stopped_at FROM kpi_runs ORDER BY run_id DESC LIMIT 1")
        stale_s = 3 * config.probe_interval_s + config.probe_timeout_s
        live = bool(last) and last[0][1] is None and now - iso_to_epoch(last[0][0]) < stale_s
        result = await read_figures(store, since, until, now, group_by, parts=None, whole=list(config.whole),
                                    deadlines=config.deadlines(), live=live)
    finally:
        store.close()
    result["source"] = {"store": str(path), "last_run_running": live}
    return result


def parse_when(text: str) -> float:
    """An ISO 8601 time (with an offset) or `24h`, as epoch seconds."""
    from gateway.protocol.kpi import epoch

    from .text import when

    with contextlib.suppress(ValueError):
        return epoch(when(text))
    raise ValueError(f"not a time: {text!r} (ISO 8601 with an offset, or 30m, 24h, 7d)")
