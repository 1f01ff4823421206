"""The soak's sums, without I/O: least-squares slope per hour, gaps in a seq range, and the seqs a
subscriber missed (benchmarks/soak.py feeds them samples from /proc and seqs from the store)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence


def slope_per_hour(times_s: Sequence[float], values: Sequence[float]) -> float | None:
    """Least-squares slope of `values` against `times_s` (seconds), in units per hour; None with
    fewer than two distinct times."""
    n = len(times_s)
    if n != len(values):
        raise ValueError("times and values differ in length")
    if n < 2:
        return None
    mt, mv = sum(times_s) / n, sum(values) / n
    var = sum((t - mt) ** 2 for t in times_s)
    if var == 0:
        return None
    cov = sum((t - mt) * (v - mv) for t, v in zip(times_s, values, strict=True))
    return cov / var * 3600.0


def seq_gaps(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Missing ranges (first, last) between consecutive seqs, e.g. [1, 2, 5] -> [(3, 4)]."""
    out: list[tuple[int, int]] = []
    prev: int | None = None
    for s in sorted(set(seqs)):
        if prev is not None and s > prev + 1:
            out.append((prev + 1, s - 1))
        prev = s
    return out


def missed(stored: Iterable[int], seen: Iterable[int], after: int, upto: int) -> list[int]:
    """Seqs in (after, upto] the store holds that a subscriber did not see."""
    got = set(seen)
    return sorted(s for s in stored if after < s <= upto and s not in got)


def last_process(samples: Sequence[dict]) -> list[dict]:
    """The samples of the last gateway process (`gw_pid` of the last sample)."""
    return [s for s in samples if s["gw_pid"] == samples[-1]["gw_pid"]] if samples else []


def consecutive_slopes(samples: Sequence[dict], key: str, warmup_s: float, window_s: float) -> list[dict]:
    """Slope per hour of `samples[i][key]` in each consecutive `window_s` of the last gateway process,
    the first starting `warmup_s` after its first sample: `[{from_s, to_s, samples, slope}]` (bounds
    on the samples' clock, `to_s` the last window's last sample), so levelling off over a long run
    shows as slopes going to 0 window after window. A last window whose samples span less than half
    of `window_s` is left out (too short to say anything); `window_s` <= 0: none. Each window's
    `median` too: a series that saws (the heap trimmed every 5 minutes gives back ~1.5 MB, which
    comes back) levels off in its medians where a window's slope depends on where the teeth fall."""
    seg = last_process(samples)
    if window_s <= 0 or not seg:
        return []
    start, last_t = seg[0]["t"] + warmup_s, seg[-1]["t"]
    out: list[dict] = []
    while start < last_t:
        end = start + window_s
        inside = [s for s in seg if start <= s["t"] < end]
        if inside and (inside[-1]["t"] - inside[0]["t"] >= window_s / 2 or end <= last_t):
            out.append({"from_s": start, "to_s": min(end, last_t), "samples": len(inside),
                        "slope": slope_per_hour([s["t"] for s in inside], [s[key] for s in inside]),
                        "median": statistics.median(s[key] for s in inside)})
        start = end
    return out


def slope_windows(samples: Sequence[dict], key: str, warmup_s: float) -> dict[str, float | None]:
    """Slopes per hour of `samples[i][key]` (each sample has `t`, seconds, and `gw_pid`) over:
    `run` every sample; `last_process` those of the last gateway process; `last_process_after_warmup`
    those from `warmup_s` after that process's first sample; `last_process_second_half` the later half
    of that process's time (levelling off shows as a second-half slope near 0)."""
    seg = last_process(samples)
    t0 = seg[0]["t"] if seg else 0.0
    mid = (seg[0]["t"] + seg[-1]["t"]) / 2 if seg else 0.0
    windows = {"run": list(samples), "last_process": seg,
               "last_process_after_warmup": [s for s in seg if s["t"] >= t0 + warmup_s],
               "last_process_second_half": [s for s in seg if s["t"] >= mid]}
    return {name: slope_per_hour([s["t"] for s in ss], [s[key] for s in ss]) for name, ss in windows.items()}


def process_slopes(samples: Sequence[dict], index: int, warmup_s: float, min_span_s: float = 300.0) -> dict[str, float]:
    """Slope per hour of each worker process on its own (`samples[i]["wk"]` maps a PID to
    [rss_kb, fds]; `index` picks one), from `warmup_s` after its first sample, for the processes
    with at least `min_span_s` of samples left: a worker killed and restarted is a new series,
    not a step in the sum of all workers."""
    series: dict[str, list[tuple[float, float]]] = {}
    for s in samples:
        for pid, vals in (s.get("wk") or {}).items():
            series.setdefault(pid, []).append((s["t"], vals[index]))
    out: dict[str, float] = {}
    for pid, pts in series.items():
        kept = [(t, v) for t, v in pts if t >= pts[0][0] + warmup_s]
        if len(kept) >= 2 and kept[-1][0] - kept[0][0] >= min_span_s:
            v = slope_per_hour([t for t, _ in kept], [v for _, v in kept])
            if v is not None:
                out[pid] = v
    return out


def kpi_brief(k: dict) -> dict:
    """The soak's summary of a `kpi.get` answer: the two indicators, the outages, met/missed per
    channel, the first 20 misses, and every returned miss counted by (channel, why), so a channel
    whose misses are not in the first 20 still shows why."""
    av, tl = k["availability"], k["timeliness"]
    by_why: dict[str, int] = {}
    for m in tl["misses"]:
        key = f"{m['channel']}: {m['why']}"
        by_why[key] = by_why.get(key, 0) + 1
    return {"since": k["since"], "until": k["until"], "availability": av["whole"]["availability"],
            "down_s": av["whole"]["down_s"],
            "outages": [(o["part"], o["duration_s"], o["cause"]) for o in av["outages"]],
            "timeliness": tl["share"], "met": tl["met"], "missed": tl["missed"], "pending": tl["pending"],
            "channels": {c: (v["met"], v["missed"], v["pending"]) for c, v in tl["channels"].items()},
            "misses": [(m["channel"], m["why"], m["late_s"]) for m in tl["misses"][:20]],
            "misses_by_why": dict(sorted(by_why.items(), key=lambda kv: -kv[1]))}


def main(argv: list[str] | None = None) -> int:
    """The windows of a finished soak from its samples (WORKDIR/samples.json):

        .venv/bin/python -m benchmarks.soak_stats WORKDIR/samples.json --warmup-s 600 --window-min 10
    """
    import argparse
    import json

    p = argparse.ArgumentParser(description="slope and median of each window of a soak's samples")
    p.add_argument("samples")
    p.add_argument("--key", default="gw_rss_kb")
    p.add_argument("--warmup-s", type=float, default=600)
    p.add_argument("--window-min", type=float, default=10)
    a = p.parse_args(argv)
    with open(a.samples, encoding="utf-8") as f:
        samples = json.load(f)
    print(f"| minutes | samples | slope of {a.key} per hour | median |\n|---|---|---|---|")
    for w in consecutive_slopes(samples, a.key, a.warmup_s, a.window_min * 60):
        slope = "" if w["slope"] is None else f"{w['slope']:.1f}"
        print(f"| {w['from_s'] / 60:.0f}-{w['to_s'] / 60:.0f} | {w['samples']} | {slope} | {w['median']:g} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
