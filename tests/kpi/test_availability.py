"""The normal-operation core without sockets or clocks: runs, transitions and maintenance given
as numbers (a fake clock is just `now`)."""

from __future__ import annotations

import pytest

from gateway.kpi.availability import GATEWAY, Maintenance, Run, Transition, compute
from gateway.kpi.intervals import clip, intersect, merge, subtract, total

T0 = 1_800_000_000.0  # a fixed epoch second


def test_interval_arithmetic() -> None:
    assert merge([(5, 6), (1, 3), (2, 4), (4, 4.5), (7, 7)]) == [(1, 4.5), (5, 6)]
    assert subtract([(0, 10)], [(2, 3), (5, 12)]) == [(0, 2), (3, 5)]
    assert subtract([(0, 10)], []) == [(0, 10)]
    assert intersect([(0, 5), (6, 10)], [(4, 7)]) == [(4, 5), (6, 7)]
    assert clip([(0, 5), (8, 12)], 2, 10) == [(2, 5), (8, 10)]
    assert total([(0, 5), (3, 6)]) == 6


def _get(runs, transitions=(), maintenance=(), *, since=T0, until=T0 + 1000, now=T0 + 1000,
         parts=("store", "sip", "sms"), whole=("store", "sip"), live=True):
    return compute(list(runs), list(transitions), list(maintenance), parts=list(parts), whole=list(whole),
                   since=since, until=until, now=now, live=live)


def test_all_up_is_one() -> None:
    r = _get([Run(1, T0, T0 + 990)], [Transition(1, T0, p, True, "start") for p in ("store", "sip", "sms")])
    assert r["whole"]["availability"] == 1.0 and r["outages"] == []
    assert all(v["availability"] == 1.0 for v in r["parts"].values())


def test_part_outage_counts_for_the_part_and_the_whole_when_needed() -> None:
    tr = [Transition(1, T0, "sip", True, "start"),
          Transition(1, T0 + 100, "sip", False, "sip worker 0 exited (rc -9)"),
          Transition(1, T0 + 110, "sip", True),
          Transition(1, T0 + 200, "sms", False, "not bound"),
          Transition(1, T0 + 300, "sms", True)]
    r = _get([Run(1, T0, T0 + 990)], tr)
    assert r["parts"]["sip"]["availability"] == pytest.approx(0.99)
    assert r["parts"]["sms"]["availability"] == pytest.approx(0.9)
    assert r["whole"]["availability"] == pytest.approx(0.99)  # sms is not in the whole here
    (sip, sms) = r["outages"]
    assert (sip["part"], sip["duration_s"], sip["cause"]) == ("sip", 10.0, "sip worker 0 exited (rc -9)")
    assert (sms["part"], sms["duration_s"]) == ("sms", 100.0)


def test_outage_still_going_ends_now_and_is_ongoing() -> None:
    r = _get([Run(1, T0, T0 + 500)], [Transition(1, T0 + 900, "sip", False, "x")], now=T0 + 950, until=T0 + 1000)
    (o,) = r["outages"]
    assert o["ongoing"] and o["duration_s"] == 50.0
    assert r["measured_s"] == 950.0


def test_gateway_not_running_between_runs_is_down_for_every_part() -> None:
    # run 1 killed (last heartbeat at +400), run 2 started at +460; run 2 stopped cleanly at +800,
    # run 3 at +900.
    runs = [Run(1, T0, T0 + 400), Run(2, T0 + 460, T0 + 795, T0 + 800), Run(3, T0 + 900, T0 + 990)]
    r = _get(runs)
    gaps = [o for o in r["outages"] if o["part"] == GATEWAY]
    assert [(g["duration_s"]) for g in gaps] == [60.0, 100.0]
    assert "killed or crashed" in gaps[0]["cause"] and "stopped at" in gaps[1]["cause"]
    assert r["whole"]["availability"] == pytest.approx(1 - 160 / 1000)
    assert r["parts"]["sms"]["availability"] == pytest.approx(1 - 160 / 1000)


def test_down_part_of_a_killed_run_ends_with_its_last_heartbeat() -> None:
    runs = [Run(1, T0, T0 + 400), Run(2, T0 + 500, T0 + 990)]
    r = _get(runs, [Transition(1, T0 + 300, "sip", False, "x"), Transition(2, T0 + 500, "sip", True, "start")])
    sip = [o for o in r["outages"] if o["part"] == "sip"]
    assert [(o["duration_s"], o["ongoing"]) for o in sip] == [(100.0, False)]
    assert r["parts"]["sip"]["down_s"] == 200.0  # its own 100 s and the gateway's 100 s


def test_maintenance_is_not_outage_and_is_listed() -> None:
    tr = [Transition(1, T0 + 100, "sip", False, "upgrade"), Transition(1, T0 + 200, "sip", True)]
    m = [Maintenance(7, T0 + 90, T0 + 190, ("sip",), "pjsip upgrade", "root")]
    r = _get([Run(1, T0, T0 + 990)], tr, m)
    (o,) = r["outages"]  # only the 10 s after the window
    assert (o["start"][-9:], o["duration_s"]) == ("3:10.000Z", 10.0)
    assert r["parts"]["sip"]["availability"] == pytest.approx(1 - 10 / 900)
    assert r["parts"]["sip"]["maintenance_s"] == 100.0
    assert r["whole"]["availability"] == pytest.approx(1 - 10 / 1000)  # a part's window stays measured
    (w,) = r["maintenance"]
    assert (w["maintenance_id"], w["parts"], w["down_s"], w["reason"]) == (7, ["sip"], 90.0, "pjsip upgrade")


def test_whole_gateway_maintenance_excuses_a_restart() -> None:
    runs = [Run(1, T0, T0 + 395, T0 + 400), Run(2, T0 + 460, T0 + 990)]
    m = [Maintenance(1, T0 + 390, T0 + 470, (), "restart", "root")]
    r = _get(runs, maintenance=m)
    assert r["outages"] == [] and r["whole"]["availability"] == 1.0
    assert r["whole"]["maintenance_s"] == 80.0 and r["maintenance"][0]["down_s"] == 60.0


def test_window_before_the_first_run_is_not_measured() -> None:
    r = _get([Run(1, T0 + 500, T0 + 990)], since=T0, until=T0 + 1000)
    assert r["measured_from"].endswith("08:20.000Z") and r["measured_s"] == 500.0
    assert r["whole"]["availability"] == 1.0


def test_no_measured_time_has_no_figure() -> None:
    r = _get([], since=T0, until=T0 + 10, now=T0 + 5)
    assert r["whole"]["availability"] is None and r["measured_s"] == 0
    r = _get([Run(1, T0 + 500, T0 + 990)], since=T0, until=T0 + 100)
    assert r["whole"]["availability"] is None


def test_outage_still_going_is_ongoing_in_a_window_that_ended_before_now() -> None:
    r = _get([Run(1, T0, T0 + 500)], [Transition(1, T0 + 900, "sip", False, "x")], now=T0 + 2000, until=T0 + 1000)
    (o,) = r["outages"]
    assert o["ongoing"] and o["duration_s"] == 100.0 and o["end"].endswith("16:40.000Z")


def test_prepared_once_gives_the_same_figures_for_every_window() -> None:
    """kpi.get's groups reuse one `prepare` (the runs' outages) for every hour: the same answer
    as computing each window from scratch."""
    from gateway.kpi.availability import prepare

    runs = [Run(1, T0, T0 + 400), Run(2, T0 + 460, T0 + 795, T0 + 800), Run(3, T0 + 900, T0 + 990)]
    tr = [Transition(r, T0 + t, p, up, "c") for r, t, p, up in (
        (1, 50, "sip", False), (1, 60, "sip", True), (1, 300, "sms", False), (2, 470, "sip", False),
        (2, 600, "sip", True), (3, 950, "sip", False))]
    m = [Maintenance(1, T0 + 280, T0 + 320, ("sms",), "x", "root"), Maintenance(2, T0 + 780, T0 + 910, (), "y", "root")]
    prep = prepare(runs, tr, now=T0 + 1000, live=True, until=T0 + 1000)
    for lo in range(0, 1000, 70):
        for width in (30, 100, 333):
            kw = dict(parts=["store", "sip", "sms"], whole=["store", "sip"], since=T0 + lo,
                      until=T0 + lo + width, now=T0 + 1000)
            assert compute(runs, tr, m, prepared=prep, **kw) == compute(runs, tr, m, **kw), (lo, width)
