"""The timeliness core without sockets or clocks."""

from __future__ import annotations

import pytest

from gateway.kpi.timeliness import Target, compute, judge

T0 = 1_800_000_000.0


def test_met_missed_pending() -> None:
    now = T0 + 100
    assert judge(Target("call", "c1", "sip:a@x", T0, 30, reached=T0 + 29.9), now).status == "met"
    late = judge(Target("call", "c2", "sip:b@x", T0, 30, reached=T0 + 34.5, why="connected late"), now)
    assert (late.status, late.late_s, late.why) == ("missed", pytest.approx(4.5), "connected late")
    assert judge(Target("sms", "m1", "+1", T0 + 90, 30), now).status == "pending"
    open_ = judge(Target("sms", "m2", "+1", T0, 30), now)
    assert (open_.status, open_.late_s, open_.why) == ("missed", pytest.approx(70), "not reached yet")
    failed = judge(Target("broadcast", "b1", "spk", T0, 10, ended=T0 + 3, why="failed: busy"), now)
    assert (failed.status, failed.late_s, failed.why) == ("missed", None, "failed: busy")
    late_fail = judge(Target("broadcast", "b1", "spk2", T0, 10, ended=T0 + 15, why="failed"), now)
    assert (late_fail.status, late_fail.late_s) == ("missed", pytest.approx(5))


def test_shares_per_channel_and_overall() -> None:
    ts = [Target("call", f"c{i}", "u", T0, 30, reached=T0 + 1) for i in range(3)]
    ts += [Target("call", "late", "u", T0, 30, reached=T0 + 40)]
    ts += [Target("sms", "m", "+1", T0, 60, reached=T0 + 5)]
    r = compute(ts, now=T0 + 1000)
    assert r["share"] == pytest.approx(4 / 5) and (r["met"], r["missed"], r["pending"]) == (4, 1, 0)
    assert r["channels"]["call"]["share"] == pytest.approx(0.75)
    assert r["channels"]["sms"]["share"] == 1.0 and r["channels"]["instruction"]["share"] is None
    (miss,) = r["misses"]
    assert (miss["ref"], miss["channel"], miss["late_s"], miss["reached"]) == ("late", "call", 10.0, True)


def test_nothing_dispatched_has_no_share() -> None:
    assert compute([], now=T0)["share"] is None


def test_groups_split_the_targets_by_the_hour_they_started() -> None:
    from gateway.kpi.facts import Deadlines, TargetRows, targets
    from gateway.kpi.figures import _buckets, compute_figures
    from gateway.kpi.timeliness import Tally, judge_all
    from gateway.timeutil import epoch_to_iso as iso

    start = T0 - T0 % 3600
    calls = [(f"c{i}", "sip:a@x", iso(start + i * 900), iso(start + i * 900 + (40 if i % 3 == 0 else 5)),
              iso(start + i * 900 + 60), 200, "local-hangup") for i in range(12)]  # 3 hours, every 3rd late
    dl = Deadlines([], {"call": 30.0, "broadcast": 10.0, "sms": 60.0, "instruction": 60.0})
    groups = _buckets(start, start + 3 * 3600, 3600)
    t = Tally([lo for lo, _ in groups])
    for i in range(0, 12, 5):  # in slices, as kpi.get reads them
        t.add(judge_all(targets(TargetRows(calls[i:i + 5], [], [], [], [], []), dl), start + 4 * 3600))
    r = compute_figures([], [], [], t, ["store"], ["store"], start, start + 3 * 3600, start + 4 * 3600,
                        "hour", groups, deadlines={})
    assert [(g["met"], g["missed"]) for g in r["groups"]] == [(2, 2), (3, 1), (3, 1)]
    assert (r["timeliness"]["met"], r["timeliness"]["missed"]) == (8, 4)
