"""The control-channel benchmark's multi-process load generator, without sockets: the request plan
split over loaders, the merging of their reports, the cheap reading of event frames, the clock."""

from __future__ import annotations

import json
import multiprocessing
import time
from types import SimpleNamespace

from benchmarks.control_bare import BareServer
from benchmarks.control_loader import Bench, BenchClient
from benchmarks.control_stats import (clients_of, event_seq, loop_stalls, merge_fanout, merge_steady, owner,
                                      parse_mix, pct, plan_requests)
from gateway.protocol import codec

MIX = parse_mix("ping=0.5,session.list=0.4,session.create=0.1")


# --- event frames --------------------------------------------------------------------------------


def test_event_seq_reads_both_servers_frames_and_nothing_else() -> None:
    gateway_frame = codec.encode_event({"seq": 123456, "type": "session.state", "time": "2026-12-02T06:00:00Z",
                                        "session_id": "s-1", "data": {"seq": 7, "title": '"seq":9'}})
    bare = BareServer()
    for _ in range(41):
        bare_frame = bare._event("session.state", "s-2", {"title": "x"})
    assert event_seq(gateway_frame) == 123456
    assert event_seq(bare_frame) == 41
    assert event_seq(codec.encode_result(5, {"seq": 3})) is None  # a reply
    assert event_seq(json.dumps({"jsonrpc": "2.0", "method": "event", "params": {"type": "x", "seq": 4}},
                                separators=(",", ":"))) is None  # another key order: decoded in full instead
    assert event_seq('{"jsonrpc":"2.0","method":"event","params":{"seq":"12",') is None
    assert event_seq('{"jsonrpc":"2.0","method":"event","params":{"seq":12') is None  # truncated


def test_a_subscriber_decodes_one_frame_per_seq_and_stamps_every_arrival() -> None:
    bench = Bench()
    bench.n = 3
    subs = [SimpleNamespace(last_seq=None) for _ in range(3)]
    frames = [codec.encode_event({"seq": s, "type": "session.state", "time": "t", "session_id": f"s{s}",
                                  "data": {}}) for s in (10, 11, 13)]
    now = 100.0
    for f in frames:
        for c in subs:
            now += 0.001
            bench.on_frame(c, event_seq(f), f, None, now)  # type: ignore[arg-type]
    assert bench.decoded == 3  # one per seq in this process, not one per frame
    assert bench.events == 9
    assert bench.gaps == 3  # 11 -> 13 on each subscriber
    count, first, last = bench.arrivals["s11"]
    assert count == 3 and round(first, 3) == 100.004 and round(last, 3) == 100.006


def test_the_bench_client_hands_event_frames_to_the_bench_and_replies_to_their_request() -> None:
    client = BenchClient("ws://127.0.0.1:9/", "t")
    client.bench = bench = Bench()
    bench.n = 1
    client._on_text(codec.encode_event({"seq": 1, "type": "session.state", "time": "t", "session_id": "a",
                                        "data": {}}))
    overflow = json.dumps({"jsonrpc": "2.0", "method": "event", "params": {"type": "events.overflow", "seq": 2}})
    client._on_text(overflow)  # not the fixed prefix: the normal decoder, then the bench
    assert bench.arrivals["a"][0] == 1 and bench.events == 1 and bench.overflows == 1
    assert client._events.qsize() == 0  # no consumer queue


# --- the plan --------------------------------------------------------------------------------------


def test_the_loaders_share_one_plan_at_the_configured_rate() -> None:
    total, rate, load_clients, loaders = 1000, 200.0, 100, 3
    one = plan_requests(total, rate, load_clients, 1, MIX, 0)
    parts = [plan_requests(total, rate, load_clients, loaders, MIX, k) for k in range(loaders)]
    merged = sorted((p for part in parts for p in part), key=lambda p: p.i)
    assert merged == one  # the same requests, due times, clients and methods as one process
    assert [p.i for p in merged] == list(range(total))
    assert merged[-1].due_s == (total - 1) / rate  # together: `rate` per second
    for k, part in enumerate(parts):
        assert all(owner(p.client, loaders) == k for p in part)
        assert all(p.client in clients_of(k, load_clients, loaders) for p in part)
        assert abs(len(part) - total / loaders) <= load_clients / loaders  # each an even share
    assert {p.method for p in one} == {"ping", "session.list", "session.create"}


def test_clients_are_split_without_overlap() -> None:
    slices = [clients_of(k, 1000, 3) for k in range(3)]
    assert sorted(c for s in slices for c in s) == list(range(1000))
    assert [len(s) for s in slices] == [334, 333, 333]


# --- merging ------------------------------------------------------------------------------------


def _part(lat: dict, t0: float, last_done: float, *, late: list[float] | None = None, errors: dict | None = None,
          created_ok: int = 0, events: int = 0) -> dict:
    n = sum(len(v) for v in lat.values()) + sum((errors or {}).values())
    return {"lat": lat, "errors": errors or {}, "late": late or [0.0] * n, "sent": n, "last_sent": last_done - 0.01,
            "last_done": last_done, "unfinished": 0, "created_ok": created_ok, "events": events}


def test_percentiles_are_over_the_merged_samples_not_an_average_of_each_loaders() -> None:
    t0 = 1000.0
    fast = _part({"ping": [0.001] * 990}, t0, t0 + 5.0)
    slow = _part({"ping": [0.100] * 10}, t0, t0 + 5.0)
    m = merge_steady([fast, slow], 200.0, 5.0, t0)
    assert m["rtt_all_p50_ms"] == 1.0
    assert m["rtt_all_p99_ms"] == 1.0  # 10 slow of 1,000: the 99th is still fast
    assert pct([0.001] * 990 + [0.100] * 10, 99.5) == 0.1
    m2 = merge_steady([_part({"ping": [0.001] * 90}, t0, t0 + 1), _part({"ping": [0.100] * 10}, t0, t0 + 1)],
                      100.0, 1.0, t0)
    assert m2["rtt_all_p99_ms"] == 100.0 and m2["rtt_all_p50_ms"] == 1.0  # (a mean of p99s would be 50.5)
    assert m2["rtt"]["ping"]["n"] == 100


def test_achieved_rate_is_all_completions_over_the_common_window() -> None:
    t0 = 50.0
    parts = [_part({"ping": [0.002] * 800, "session.create": [0.004] * 200}, t0, t0 + 10.0, created_ok=200,
                   events=200 * 1000),
             _part({"ping": [0.002] * 1000}, t0, t0 + 9.5, errors={"ping:Disconnected:": 3})]
    m = merge_steady(parts, 200.0, 10.0, t0, loader_cpu_pct=[40.0, 38.0], subscribers=1000)
    assert m["ok"] == 2000 and m["sent"] == 2003 and m["errors"] == {"ping:Disconnected:": 3}
    assert m["achieved_rate"] == 200.0  # 2,000 in the 10 s to the last completion of any loader
    assert m["events_expected"] == 200_000 and m["events_received"] == 200_000
    assert m["verdict"]["ok"] is True


def test_a_run_under_95_percent_of_target_is_flagged_with_the_side_that_held_it_back() -> None:
    t0 = 0.0
    on_time = [_part({"ping": [0.5] * 1200}, t0, 10.0, late=[0.001] * 1200)]
    m = merge_steady(on_time, 200.0, 10.0, t0, loader_cpu_pct=[30.0, 35.0])
    assert m["achieved_rate"] == 120.0
    assert m["verdict"]["ok"] is False and m["verdict"]["bound"] == "server"
    late = [_part({"ping": [0.01] * 1200}, t0, 10.0, late=[0.3] * 1200)]
    assert merge_steady(late, 200.0, 10.0, t0, loader_cpu_pct=[60.0])["verdict"]["bound"] == "loader"
    busy = [_part({"ping": [0.01] * 1200}, t0, 10.0)]
    assert merge_steady(busy, 200.0, 10.0, t0, loader_cpu_pct=[20.0, 97.0])["verdict"]["bound"] == "loader"
    # late while waiting for a core: other processes held the cores, not the loader's own cost
    starved = merge_steady(late, 200.0, 10.0, t0, loader_cpu_pct=[10.0, 9.0], loader_wait_pct=[5.0, 40.0])
    assert starved["verdict"]["bound"] == "machine" and "40 % of the time" in starved["verdict"]["why"]
    server_starved = merge_steady(on_time, 200.0, 10.0, t0, loader_cpu_pct=[30.0], server_wait_pct=60.0)
    assert server_starved["verdict"]["bound"] == "machine"
    assert merge_steady(on_time, 200.0, 10.0, t0, server_wait_pct=3.0)["verdict"]["bound"] == "server"
    lost = [_part({"ping": [0.01] * 1900, "session.create": [0.01] * 100}, t0, 10.0, created_ok=100, events=99_000)]
    v = merge_steady(lost, 200.0, 10.0, t0, subscribers=1000)["verdict"]
    assert v["ok"] is False and "99000 of 100000" in v["why"]
    just = [_part({"ping": [0.01] * 1900}, t0, 10.0)]  # 190/s: exactly 95 %
    assert merge_steady(just, 200.0, 10.0, t0)["verdict"] == {"ok": True, "bound": None,
                                                               "why": "achieved 190.0 of 200 req/s"}
    # all 2,000 done by the last one's due time (9.995 s): 200/s, not 200.1/s
    assert merge_steady([_part({"ping": [0.0] * 2000}, t0, 9.995)], 200.0, 10.0, t0)["achieved_rate"] == 200.0
    held_late = [_part({"ping": [0.01] * 2000}, t0, 10.0, late=[0.2] * 2000)]
    v = merge_steady(held_late, 200.0, 10.0, t0, loader_wait_pct=[45.0])["verdict"]
    assert v["ok"] is True and "200 ms late" in v["why"] and "45 %" in v["why"]


def test_fanout_is_the_earliest_first_and_latest_last_over_loaders() -> None:
    m = merge_fanout([{"count": 500, "first": 10.002, "last": 10.150},
                      {"count": 500, "first": 10.001, "last": 10.180},
                      {"count": 0, "first": None, "last": None}])
    assert m == {"count": 1000, "first": 10.001, "last": 10.180}
    assert merge_fanout([{"count": 0, "first": None, "last": None}]) == {"count": 0, "first": None, "last": None}


# --- one clock for every process ----------------------------------------------------------------


def _child_now(q: multiprocessing.Queue) -> None:
    q.put(time.monotonic())


def test_monotonic_time_read_in_another_process_is_on_the_same_clock() -> None:
    """What lets a send stamped in loader 0 and an arrival stamped in loader 1 be subtracted."""
    ctx = multiprocessing.get_context("spawn")  # as the benchmark starts its loaders
    q = ctx.Queue()
    proc = ctx.Process(target=_child_now, args=(q,))
    before = time.monotonic()
    proc.start()
    child = q.get(timeout=60)
    after = time.monotonic()
    proc.join(30)
    assert before <= child <= after


def test_loop_stalls_between_two_reads_of_the_histogram() -> None:
    """The longest stall is the highest bucket that grew between the reads, not since start."""
    inf = float("inf")
    before = {0.005: 10.0, 0.01: 10.0, 0.02: 11.0, 0.05: 12.0, inf: 12.0}  # a 30-50 ms stall at start-up
    after = {0.005: 100.0, 0.01: 103.0, 0.02: 105.0, 0.05: 106.0, inf: 106.0}
    assert loop_stalls(before, after) == {"samples": 94, "max_ms": 20.0, "max_from_ms": 10.0,
                                          "over_5ms": 4, "over_10ms": 1, "over_20ms": 0}
    assert loop_stalls(None, after) is None
