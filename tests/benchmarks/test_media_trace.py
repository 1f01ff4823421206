"""The worker's media trace read beside the beeps (benchmarks/media_trace.py), without processes."""

import json

from benchmarks.media_trace import counters, leg_series, parse_trace, per_beep, thread_waits

MS = 1_000_000


def line(t_ms: int, calls: dict, threads: dict | None = None, pid: int = 7) -> str:
    return json.dumps({"event": "sip.media_trace", "t_ns": t_ms * MS, "pid": pid, "calls": calls,
                       "threads": threads or {}})


def jb(size: int, **kw: int) -> dict:
    return {"uri": kw.pop("uri", "sip:talker@127.0.0.1:5000"), "rx": 1, "frame_ms": 10, "held_ms": 10 * size,
            "size": size, "prefetch": 0, "burst": 1,
            "minPrefetch": 1, "maxPrefetch": 20, "lost": kw.get("lost", 0), "discard": kw.get("discard", 0),
            "empty": kw.get("empty", 0)}


def test_only_trace_lines_in_time_order() -> None:
    lines = [line(200, {}), '{"event": "sip.worker.started"}', "not json", line(100, {}),
             '{"event": "sip.media_trace"}']  # no time: not a record
    assert [r["t_ns"] for r in parse_trace(lines)] == [100 * MS, 200 * MS]


def test_the_talker_leg_is_followed_by_its_call_id() -> None:
    recs = parse_trace([
        line(0, {"c1": jb(0, uri="sip:m1@x")}),
        line(100, {"c1": jb(0, uri="sip:m1@x"), "c2": jb(3)}),
        line(200, {"c2": jb(4)}),
        line(300, {"c3": jb(9)}),  # another call later with the same URI part: not followed
    ])
    assert [(t // MS, j["size"]) for t, j in leg_series(recs, "talker@")] == [(100, 3), (200, 4)]


def test_each_beep_gets_the_buffer_sampled_just_before_it_was_sent() -> None:
    series = [(20 * MS, jb(1)), (100 * MS, jb(15)), (200 * MS, jb(14))]
    beeps = per_beep([(50 * MS, 80 * MS), (150 * MS, 470 * MS), (10 * MS, 30 * MS)], series)
    assert [(b["delay_ms"], b["jb_held_ms"]) for b in beeps] == [(30.0, 10), (320.0, 150), (20.0, None)]


def test_counters_over_a_window() -> None:
    series = [(0, jb(1, discard=2)), (100 * MS, jb(1, discard=5, empty=3)), (200 * MS, jb(1, discard=9, empty=4))]
    assert counters(series, 50 * MS) == {"lost": 0, "discard": 4, "empty": 1}
    assert counters(series, 0, 100 * MS) == {"lost": 0, "discard": 3, "empty": 3}
    assert counters(series, 150 * MS) == {"lost": 0, "discard": 0, "empty": 0}  # one sample: nothing to tell


def test_thread_waits_per_interval_and_the_main_loop_gap() -> None:
    recs = parse_trace([
        line(0, {}, {"clock/11": [0, 0, 0], "media/12": [0, 0, 0]}),
        line(100, {}, {"clock/11": [5 * MS, 2 * MS, 9], "media/12": [1 * MS, 40 * MS, 3]}),
        line(400, {}, {"clock/11": [9 * MS, 3 * MS, 12], "media/12": [2 * MS, 45 * MS, 4]}),
        line(450, {}, {"clock/99": [0, 0, 0]}, pid=8),  # another worker: not compared with pid 7
    ])
    w = thread_waits(recs, 0, pid=7)
    assert w["clock"] == {"max_ms": 2.0, "total_ms": 3.0}
    assert w["media"] == {"max_ms": 40.0, "total_ms": 45.0}
    assert w["main loop"]["max_ms"] == 300.0
