"""benchmarks/memstats_table.py: the memwatch lines of a gateway log picked and shown in MB."""

from __future__ import annotations

import json

from benchmarks.memstats_table import reports, table


def _line(n: int, rss_kb: int) -> str:
    return json.dumps({"n": n, "rss_kb": rss_kb, "malloc_kb": {"used": 2048, "free": 1024},
                       "pymalloc": {"arenas": 30 + n, "in_use_kb": 3072, "free_blocks_kb": 512},
                       "event": "memwatch", "timestamp": f"2026-12-03T04:{10 + n:02d}:00.000Z"})


def test_picks_every_kth_report_and_the_last_in_megabytes() -> None:
    log = [_line(n, 70_000 + 1024 * n) for n in range(7)]
    log.insert(3, '{"event": "control.request", "memwatch": false}')
    log.insert(1, "not json, mentions \"memwatch\"")
    ds = reports(log)
    assert [d["n"] for d in ds] == list(range(7))
    rows = table(ds, first=1, every=3).splitlines()[2:]
    assert [r.split(" | ")[0] for r in rows] == ["| 1", "| 4", "| 6"]
    assert rows[1] == "| 4 | 04:14:00 | 72.4 | 2.0 | 1.0 | 3.0 | 0.5 | 34 |"


def test_reports_without_pymalloc_leave_its_cells_empty() -> None:
    d = json.loads(_line(0, 1024))
    del d["pymalloc"]
    assert table([d]).splitlines()[2] == "| 0 | 04:10:00 | 1.0 | 2.0 | 1.0 |  |  |  |"
