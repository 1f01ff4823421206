"""Retention of the indicators' own facts (kpi_runs, kpi_part_states, kpi_maintenance), called by
gateway/retention.py with the events' cut-off (`store.events_keep_days`): the dispatch facts the
timeliness is judged from (calls, broadcast target events, SMS receipts, instructions) go then too.

What is cut must not change a figure of any window that starts at or after the cut-off, so the
facts still needed there are kept, and only those:
- a run that ended before the cut-off is deleted with its state changes, except the last such
  run when the next one started after the cut-off (or there is none): the gateway was not running
  from its end to that start, a gap reaching into the kept time. That run is kept as a marker of
  its end only (its start moved to its end, its state changes deleted), so the in-window part of
  the gap still counts as the gateway not running;
- a run going on across the cut-off keeps, of its state changes before the cut-off, the last one
  of each part: the state each part was in at the cut-off (a part down since before it is still
  down in the kept time, from the cut-off on). Its start is moved to the cut-off: facts before it
  are no longer all there, so a window reaching further back is measured from the cut-off
  (`measured_from`), not reported as up;
- a maintenance window that ended before the cut-off is deleted; one across it is kept whole.
The deadlines a run recorded stay with it: a target started after the cut-off belongs to a kept run.
"""

from __future__ import annotations

from typing import Any

from gateway.store import Store
from gateway.store.units import Tx


def _marks(n: int) -> str:
    return ", ".join("?" * n)


async def prune(store: Store, cutoff: str, limit: int) -> int:
    """One bounded unit of work (at most `limit` state changes deleted); the rows deleted in it.
    Call until it returns fewer than `limit`. `cutoff`: the store's time format."""

    async def work(tx: Tx) -> int:
        runs = await tx.fetchall("SELECT run_id, started_at, coalesce(stopped_at, last_seen) FROM kpi_runs"
                                 " ORDER BY started_at, run_id")
        ended = [r for r in runs if r[2] < cutoff]
        later = [r for r in runs if r[2] >= cutoff]
        marker = ended[-1] if ended and (not later or later[0][1] > cutoff) else None
        doomed = [r[0] for r in ended if r is not marker]
        across = [r[0] for r in later if r[1] < cutoff]
        deleted = 0
        for i in range(0, len(ended), 500):  # every state change of the runs that ended
            chunk = [r[0] for r in ended[i:i + 500]]
            deleted += await tx.execute(
                f"DELETE FROM kpi_part_states WHERE id IN (SELECT id FROM kpi_part_states WHERE run_id IN"
                f" ({_marks(len(chunk))}) LIMIT ?)", (*chunk, limit - deleted))
            if deleted >= limit:
                return deleted
        for run_id in across:  # of those before the cut-off, all but each part's last
            deleted += await tx.execute(
                "DELETE FROM kpi_part_states WHERE id IN (SELECT s.id FROM kpi_part_states s"
                " WHERE s.run_id = ?1 AND s.time < ?2 AND EXISTS (SELECT 1 FROM kpi_part_states l"
                " WHERE l.run_id = ?1 AND l.part = s.part AND l.time < ?2"
                " AND (l.time > s.time OR (l.time = s.time AND l.id > s.id))) LIMIT ?3)",
                (run_id, cutoff, limit - deleted))
            if deleted >= limit:
                return deleted
        for i in range(0, len(doomed), 500):
            chunk = doomed[i:i + 500]
            deleted += await tx.execute(f"DELETE FROM kpi_runs WHERE run_id IN ({_marks(len(chunk))})", chunk)
        if marker is not None:
            await tx.execute("UPDATE kpi_runs SET started_at = ? WHERE run_id = ?", (marker[2], marker[0]))
        for run_id in across:
            await tx.execute("UPDATE kpi_runs SET started_at = ? WHERE run_id = ?", (cutoff, run_id))
        deleted += await tx.execute("DELETE FROM kpi_maintenance WHERE end_at < ?", (cutoff,))
        return deleted

    result: Any = await store.atomic(work)
    return int(result)
