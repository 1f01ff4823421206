"""Maintenance windows listed and taken back (gateway/kpi/facts.py) on a real store in a temp dir,
with the time given (no clock): a planned window is deleted, one under way ended at that time, one
that has ended refused and left as it was; each change is in the audit chain with the window as
it was, and the availability computed from the store follows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.audit.offline import verify_store
from gateway.errors import InvalidParams
from gateway.kpi import availability, facts
from gateway.kpi.config import KpiConfig
from gateway.kpi.service import check_maintenance
from gateway.store import Store
from gateway.timeutil import epoch_to_iso

T0 = 1_790_000_000.0  # a fixed "now" (2026-09-21); the windows around it


async def _windows(store: Store) -> list[tuple[int, str, str]]:
    return [tuple(r) for r in await store.fetchall(
        "SELECT maintenance_id, start_at, end_at FROM kpi_maintenance ORDER BY maintenance_id")]


async def _audit(store: Store) -> list[tuple[str, str, dict]]:
    rows = await store.fetchall("SELECT principal, method, params FROM audit ORDER BY id")
    return [(r[0], r[1], json.loads(r[2])) for r in rows]


async def test_list_gives_the_windows_overlapping_with_their_state(tmp_path: Path) -> None:
    async with Store(tmp_path / "gw.db") as store:
        past = await facts.add_maintenance(store, T0 - 7200, T0 - 3600, [], "old", "root")
        now_ = await facts.add_maintenance(store, T0 - 60, T0 + 60, ["sip"], "now", "root")
        later = await facts.add_maintenance(store, T0 + 3600, T0 + 7200, ["sms", "disk"], "later", "ops")
        every = await facts.list_maintenance(store, None, None, T0, 10)
        assert [(w["maintenance_id"], w["state"]) for w in every] == [
            (past["maintenance_id"], "over"), (now_["maintenance_id"], "ongoing"), (later["maintenance_id"], "planned")]
        assert every[0]["parts"] == ["*"] and every[2]["parts"] == ["sms", "disk"]
        assert every[2]["created_by"] == "ops" and every[2]["start"] == epoch_to_iso(T0 + 3600)
        # overlapping [since, until): a window ending exactly at since is not in it
        assert [w["reason"] for w in await facts.list_maintenance(store, T0 - 3600, T0, T0, 10)] == ["now"]
        assert [w["reason"] for w in await facts.list_maintenance(store, T0, None, T0, 10)] == ["now", "later"]
        assert [w["reason"] for w in await facts.list_maintenance(store, None, T0 - 60, T0, 10)] == ["old"]
        assert len(await facts.list_maintenance(store, None, None, T0, 2)) == 2


async def test_a_planned_window_is_deleted_and_audited_with_what_it_was(tmp_path: Path) -> None:
    async with Store(tmp_path / "gw.db") as store:
        m = await facts.add_maintenance(store, T0 + 3600, T0 + 7200, ["sip"], "pjsip upgrade", "root")
        action, window = await facts.remove_maintenance(store, m["maintenance_id"], T0, "root", "admin")
        assert action == "deleted" and window["reason"] == "pjsip upgrade"
        assert await _windows(store) == []
        ((who, method, params),) = await _audit(store)
        assert (who, method) == ("root", "kpi.maintenance.deleted")
        assert params == {"maintenance_id": m["maintenance_id"], "start": epoch_to_iso(T0 + 3600),
                          "end": epoch_to_iso(T0 + 7200), "parts": ["sip"], "reason": "pjsip upgrade",
                          "created_by": "root", "created_at": window["created_at"]}
        assert await facts.remove_maintenance(store, m["maintenance_id"], T0, "root", "admin") is None  # gone


async def test_an_ongoing_window_is_ended_now_and_its_past_part_still_counts(tmp_path: Path) -> None:
    async with Store(tmp_path / "gw.db") as store:
        run = await facts.start_run(store, {}, epoch_to_iso(T0 - 600))
        await facts.heartbeat(store, run, epoch_to_iso(T0 + 600))
        await facts.record_state(store, run, "sip", False, "upgrade", epoch_to_iso(T0 - 120))
        await facts.record_state(store, run, "sip", True, "", epoch_to_iso(T0 + 120))
        m = await facts.add_maintenance(store, T0 - 300, T0 + 300, ["sip"], "pjsip upgrade", "root")

        async def sip_down_s() -> float:
            runs, transitions, maint = await facts.load_availability(store, T0 - 600, T0 + 600)
            r = availability.compute(runs, transitions, maint, parts=["sip"], whole=["sip"], since=T0 - 600,
                                     until=T0 + 600, now=T0 + 600, live=False)
            return r["parts"]["sip"]["down_s"]

        assert await sip_down_s() == 0.0  # all of the outage inside the window
        action, window = await facts.remove_maintenance(store, m["maintenance_id"], T0, "root", "admin")
        assert action == "ended" and window["end"] == epoch_to_iso(T0) and window["state"] == "over"
        assert await _windows(store) == [(m["maintenance_id"], epoch_to_iso(T0 - 300), epoch_to_iso(T0))]
        assert await sip_down_s() == 120.0  # the 120 s after the window ended now count
        ((_, method, params),) = await _audit(store)
        assert method == "kpi.maintenance.ended"
        assert (params["end"], params["ended_at"]) == (epoch_to_iso(T0 + 300), epoch_to_iso(T0))


async def test_a_window_that_has_ended_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    async with Store(tmp_path / "gw.db") as store:
        m = await facts.add_maintenance(store, T0 - 7200, T0 - 3600, [], "old", "root")
        before = await _windows(store)
        with pytest.raises(facts.MaintenanceOver):
            await facts.remove_maintenance(store, m["maintenance_id"], T0, "root", "admin")
        with pytest.raises(facts.MaintenanceOver):  # ended exactly now: over too
            await facts.remove_maintenance(store, m["maintenance_id"], T0 - 3600, "root", "admin")
        assert await _windows(store) == before and await _audit(store) == []


async def test_the_removal_rows_keep_the_audit_chain_whole(tmp_path: Path) -> None:
    async with Store(tmp_path / "gw.db") as store:
        await store.add_audit("root", "admin", "kpi.maintenance.add", {"reason": "a"}, "ok")
        a = await facts.add_maintenance(store, T0 + 10, T0 + 20, [], "a", "root")
        b = await facts.add_maintenance(store, T0 - 10, T0 + 20, [], "b", "root")
        await facts.remove_maintenance(store, a["maintenance_id"], T0, "root", "admin")
        await store.add_audit("root", "admin", "kpi.maintenance.delete", {"maintenance_id": 1}, "ok")
        await facts.remove_maintenance(store, b["maintenance_id"], T0, "root", "admin")
        assert [m for _, m, _ in await _audit(store)] == [
            "kpi.maintenance.add", "kpi.maintenance.deleted", "kpi.maintenance.delete", "kpi.maintenance.ended"]
    report, _ = verify_store(tmp_path / "gw.db", [])
    assert report.ok and report.rows == 4, report.to_dict()


def test_a_window_starting_in_the_past_beyond_the_grace_is_refused() -> None:
    grace = KpiConfig().maintenance_grace_s
    assert grace == 60.0  # the documented default (docs/operations.md, config/gateway.toml)
    check_maintenance(T0 + 3600, T0 + 7200, T0, grace)  # planned
    check_maintenance(T0 - grace, T0 + 3600, T0, grace)  # started within the grace: a clock a little off
    for start, end in ((T0 - grace - 1, T0 + 3600), (T0 - 7200, T0 - 3600)):  # under way, or over
        with pytest.raises(InvalidParams) as refused:
            check_maintenance(start, end, T0, grace)
        assert refused.value.reason == "maintenance-in-past"
        assert refused.value.details == {"start": epoch_to_iso(start), "now": epoch_to_iso(T0), "grace_s": grace}
    check_maintenance(T0 - 7200, T0 - 3600, T0, 7201)  # an operator's wider grace is honoured
    with pytest.raises(InvalidParams) as refused:
        check_maintenance(T0 + 10, T0 + 10, T0, grace)
    assert refused.value.reason == "invalid-params"
