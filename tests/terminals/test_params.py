"""The terminal.* params without sockets: what a report, a track query and an instruction accept,
and the field each refusal names."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from gateway.errors import InvalidParams
from gateway.protocol import METHODS, validate_params
from gateway.timeutil import epoch_to_iso


def report(**over) -> dict:
    return {"lat": 31.2, "lon": 121.5, "accuracy_m": 5, "time": epoch_to_iso(time.time()), **over}


def test_a_good_report_is_kept_in_the_gateway_time_format() -> None:
    beijing = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))) - dt.timedelta(minutes=1)
    p = validate_params(METHODS["terminal.report"], report(time=beijing.isoformat(), altitude=-12.5, speed=0,
                                                           heading=359.9, battery=100, status="on-scene"))
    fix = p.fix()
    assert fix["time"] == epoch_to_iso(beijing.timestamp())  # UTC, milliseconds, Z
    assert set(fix) == {"lat", "lon", "accuracy_m", "time", "altitude", "speed", "heading", "battery", "status"}
    assert validate_params(METHODS["terminal.report"], report(lat=-90, lon=180)).fix()["lon"] == 180


@pytest.mark.parametrize("over, loc, kind", [
    ({"lat": 90.0001}, "lat", "less_than_equal"),
    ({"lon": -180.5}, "lon", "greater_than_equal"),
    ({"lat": float("nan")}, "lat", "finite_number"),
    ({"lon": float("inf")}, "lon", "finite_number"),
    ({"accuracy_m": -0.1}, "accuracy_m", "greater_than_equal"),
    ({"heading": 360}, "heading", "less_than"),
    ({"battery": 100.5}, "battery", "less_than_equal"),
    ({"speed": -1}, "speed", "greater_than_equal"),
    ({"altitude": 30000}, "altitude", "less_than_equal"),
    ({"status": "On Scene"}, "status", "string_pattern_mismatch"),
    ({"time": "2026-12-01T10:00:00"}, "time", "invalid_time"),  # no zone
    ({"time": "not a time at all"}, "time", "invalid_time"),
    ({"time": epoch_to_iso(time.time() + 3600)}, "time", "future_time"),
    ({"time": epoch_to_iso(time.time() - 8 * 86400)}, "time", "old_time"),
    ({"terminal_id": "bad id"}, "terminal_id", "string_pattern_mismatch"),
    ({"extra": 1}, "extra", "extra_forbidden"),
])
def test_bad_reports_name_the_field(over, loc, kind) -> None:
    with pytest.raises(InvalidParams) as info:
        validate_params(METHODS["terminal.report"], report(**over))
    [err] = info.value.details["errors"]
    assert (err["loc"], err["type"]) == (loc, kind), err


def test_missing_fields_and_track_and_instruct_params() -> None:
    with pytest.raises(InvalidParams) as info:
        validate_params(METHODS["terminal.report"], {"lat": 1})
    assert {e["loc"] for e in info.value.details["errors"]} == {"lon", "accuracy_m", "time"}
    with pytest.raises(InvalidParams) as info:
        validate_params(METHODS["terminal.track"], {"terminal_id": "u", "since": "2026-12-02T00:00:00Z",
                                                    "until": "2026-12-01T00:00:00Z"})
    assert "since must not be after until" in info.value.details["errors"][0]["msg"]
    ok = validate_params(METHODS["terminal.instruct"], {"targets": ["unit-7", "group:d3"], "text": "go"})
    assert (ok.require_ack, ok.fallback, ok.ack_timeout_s) == (True, "sms", None)
    for bad, loc in (({"targets": [], "text": "go"}, "targets"), ({"targets": ["u"], "text": " "}, "text"),
                     ({"targets": ["u"], "text": "go", "fallback": "email"}, "fallback"),
                     ({"targets": ["u"], "text": "go", "ack_timeout_s": 0}, "ack_timeout_s"),
                     ({"targets": ["u"], "text": "x" * 1001}, "text")):
        with pytest.raises(InvalidParams) as info:
            validate_params(METHODS["terminal.instruct"], bad)
        assert [e["loc"] for e in info.value.details["errors"]] == [loc], bad
