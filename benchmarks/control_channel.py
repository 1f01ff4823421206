"""Control-channel benchmark: many connected subscribers, command round trips, event fan-out.

    python -m benchmarks.control_channel [--clients 1000] [--rate 200] [--duration 20]

The gateway runs in its own process (`python -m gateway.cli serve`, on free loopback ports, store
and logs under a temp dir, sip.max_workers=1) so the load generator's CPU is not counted in the
server's figures. The load generator is `--loaders` processes (default: the core count;
benchmarks/control_loader.py), each owning a slice of the clients, driven phase by phase from this
one; what they report is merged by benchmarks/control_stats.py (percentiles over all samples, one
monotonic clock for every process). They share the machine's cores with the server: on a 2-core
box the loaders are real competitors, and their CPU is reported next to the server's.

Phases (in this order, all bounded in time):
  1. connect: N clients, each says hello and subscribes to events (since its hello seq);
     time to connect all, per-client connect latency, server RSS before and after.
  2. fan-out: one client sends `session.create`; time from just before the request until the
     last of the N subscribers (in any loader) has received that session's `session.state` event
     (repeated).
  3. steady load: a fixed total request rate (open loop, one plan and one start time shared by the
     loaders) over a subset of the clients, a mix of `ping`, `session.list` and `session.create`,
     with all N still connected and subscribed; round trip p50/p99 per method, sent and achieved
     rate, events delivered vs expected, server CPU per request, each loader's CPU, and (phases 2
     and 3) the gateway loop's stalls, read from its loop-lag histogram on /metrics. A run whose
     achieved rate is under 95 % of the target (or that lost events) is flagged as loader- or
     server-bound (its `verdict`), and the ratios as not measured.
  4. close all clients; server RSS after; gateway stopped with SIGTERM; its log scanned for
     warnings and errors.
Prints a JSON summary, then a markdown table.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import multiprocessing
import multiprocessing.process
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import structlog

from benchmarks.control_loader import loader_main
from benchmarks.control_stats import clients_of, loop_stalls, merge_fanout, merge_steady, ms, parse_mix, pct
from benchmarks.gateway_process import TOKEN, BareProcess, GatewayProcess, proc_cpu_s, raise_fd_limit, runq_wait_s

# --- the load generator: loader processes driven phase by phase ----------------------------------


class Loaders:
    """`n` loader processes (benchmarks/control_loader.py), each owning a slice of the clients; a
    command goes to each over its pipe and every answer is awaited, bounded in time."""

    def __init__(self, n: int, url: str) -> None:
        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited loop or sockets
        self.n = n
        self.pipes: list[Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        for k in range(n):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=loader_main, args=(theirs, k, n, url, TOKEN), name=f"bench-loader-{k}",
                               daemon=True)
            proc.start()
            theirs.close()
            self.pipes.append(ours)
            self.procs.append(proc)

    def ask(self, name: str, args: dict | list[dict], timeout: float, only: int | None = None) -> list[dict]:
        """Send (name, args) to every loader (or loader `only`); their answers, in loader order."""
        ks = range(self.n) if only is None else [only]
        for k in ks:
            self.pipes[k].send((name, args[k] if isinstance(args, list) else args))
        out = []
        deadline = time.monotonic() + timeout
        for k in ks:
            if not self.pipes[k].poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"loader {k} did not answer {name!r} in {timeout:.0f} s")
            answer = self.pipes[k].recv()
            if "error" in answer:
                raise RuntimeError(f"loader {k} failed {name!r}: {answer['error']}")
            out.append(answer)
        return out

    def cpu_s(self) -> list[float]:
        return [proc_cpu_s(p.pid) or 0.0 for p in self.procs]  # type: ignore[arg-type]

    def wait_s(self) -> list[float]:
        return [runq_wait_s(p.pid) or 0.0 for p in self.procs]  # type: ignore[arg-type]

    def stop(self) -> None:
        for k, proc in enumerate(self.procs):
            with contextlib.suppress(OSError, EOFError, TimeoutError):
                if proc.is_alive():
                    self.ask("stop", {}, 10, only=k)
            proc.join(10)
            if proc.is_alive():
                proc.kill()  # this loader's own pid
                proc.join(5)


def _cpu_pct(before: list[float], after: list[float], wall: float) -> list[float]:
    return [round(100 * (b - a) / wall, 1) for a, b in zip(before, after)]


def _phase_connect(args: argparse.Namespace, gw: GatewayProcess, loaders: Loaders, out: dict) -> int:
    n = loaders.n
    conc = max(1, -(-args.connect_concurrency // n))
    cpu0, s0 = loaders.cpu_s(), gw.sample()
    t = time.monotonic()
    lean_from = max(1, min(args.load_clients, args.clients)) if args.subscribers == "lean" else None
    parts = loaders.ask("connect", [{"numbers": clients_of(k, args.clients, n), "concurrency": conc,
                                     "lean_from": lean_from} for k in range(n)], timeout=600)
    total = time.monotonic() - t
    lat = [x for p in parts for x in p["lat"]]
    failed: collections.Counter[str] = collections.Counter()
    for p in parts:
        failed.update(p["failed"])
    connected = sum(p["connected"] for p in parts)
    time.sleep(1.0)
    s = gw.sample()
    out["connect"] = {
        "connected": connected, "failed": dict(failed), "total_s": round(total, 3),
        "per_client_p50_ms": ms(pct(lat, 50)), "per_client_p99_ms": ms(pct(lat, 99)),
        "per_client_max_ms": ms(max(lat) if lat else None), "concurrency": conc * n,
        "per_loader": [p["connected"] for p in parts],
        "server_rss_mb": s["rss_mb"], "server_cpu_s": round(s["cpu_s"] - s0["cpu_s"], 2),
        "loader_cpu_s": round(sum(loaders.cpu_s()) - sum(cpu0), 2),
        "rss_per_client_kb": round((s["rss_mb"] - out["server_idle"]["rss_mb"]) * 1024 / max(1, connected), 1)}
    return connected


LAGS = {"loop_stalls": "dispatch_loop_lag_seconds", "loop_stalls_own": "dispatch_loop_lag_own_seconds"}


def _lags(gw: GatewayProcess) -> dict[str, Any]:
    return {key: gw.loop_lag(name) for key, name in LAGS.items()}


def _stalls_since(before: dict[str, Any], gw: GatewayProcess) -> dict[str, Any]:
    """The gateway loop's stalls since `before` (`_lags`): as the wall clock saw them, and the part
    its own work explains (without its waits for a core)."""
    now = _lags(gw)
    return {key: loop_stalls(before[key], now[key]) for key in LAGS}


def _phase_fanout(args: argparse.Namespace, gw: GatewayProcess, loaders: Loaders, subscribers: int) -> dict:
    """One session.create from loader 0; time until the last subscriber of any loader got its event."""
    cpu0, f0, lag0 = loaders.cpu_s(), gw.sample()["cpu_s"], _lags(gw)
    lasts, firsts, replies, delivered, timeouts = [], [], [], [], 0
    for i in range(args.fanout_reps):
        time.sleep(0.3)  # let the previous one settle
        trig = loaders.ask("trigger", {"title": f"fanout-{i}"}, timeout=60, only=0)[0]
        merged = merge_fanout(loaders.ask("wait_fanout", {"sid": trig["sid"], "timeout": args.fanout_timeout},
                                          timeout=args.fanout_timeout + 30))
        delivered.append(merged["count"])
        replies.append(trig["t_reply"] - trig["t0"])
        if merged["count"] >= subscribers:
            lasts.append(merged["last"] - trig["t0"])
            firsts.append(merged["first"] - trig["t0"])
        else:
            timeouts += 1
    return {"reps": args.fanout_reps, "timeouts": timeouts, "min_delivered": min(delivered, default=0),
            "subscribers": subscribers,
            "last_p50_ms": ms(pct(lasts, 50)), "last_p99_ms": ms(pct(lasts, 99)),
            "last_max_ms": ms(max(lasts) if lasts else None),
            "first_p50_ms": ms(pct(firsts, 50)), "reply_p50_ms": ms(pct(replies, 50)),
            "server_cpu_s": round(gw.sample()["cpu_s"] - f0, 2),
            "loader_cpu_s": round(sum(loaders.cpu_s()) - sum(cpu0), 2),
            **_stalls_since(lag0, gw)}


def _phase_steady(args: argparse.Namespace, gw: GatewayProcess, loaders: Loaders, subscribers: int) -> dict:
    """Open loop at args.rate in total: every loader sends its share of one plan against one T0."""
    total = int(args.rate * args.duration)
    load_clients = max(1, min(args.load_clients, args.clients))
    lag0 = _lags(gw)
    cpu0, wait0, s0, w0 = loaders.cpu_s(), loaders.wait_s(), gw.sample(), time.monotonic()
    t0 = w0 + 0.5  # every loader has the command by then: the plan's common start
    parts = loaders.ask("steady", {"total": total, "rate": args.rate, "load_clients": load_clients,
                                   "mix": parse_mix(args.mix), "t0": t0, "drain_timeout": args.drain_timeout},
                        timeout=args.duration + args.drain_timeout + 60)
    created_ok = sum(p["created_ok"] for p in parts)
    for p, d in zip(parts, loaders.ask("drain", {"expected_per_client": created_ok, "timeout": args.drain_timeout},
                                       timeout=args.drain_timeout + 30)):
        p["events"] = d["events"]
    # to the end of the drain (as before the split): the work the load caused, its events included
    wall = time.monotonic() - w0
    cpu1, wait1, s1 = loaders.cpu_s(), loaders.wait_s(), gw.sample()
    loader_pct, loader_wait = _cpu_pct(cpu0, cpu1, wall), _cpu_pct(wait0, wait1, wall)
    server_wait = (round(100 * (s1["runq_wait_s"] - s0["runq_wait_s"]) / wall, 1)
                   if s1["runq_wait_s"] is not None and s0["runq_wait_s"] is not None else None)
    out = merge_steady(parts, args.rate, args.duration, t0, loader_pct, subscribers, loader_wait, server_wait)
    server_cpu = s1["cpu_s"] - s0["cpu_s"]
    out.update(load_clients=load_clients, mix={n: round(w, 3) for n, w in parse_mix(args.mix)},
               server_cpu_pct=round(100 * server_cpu / wall, 1),
               server_cpu_ms_per_req=round(1000 * server_cpu / out["ok"], 3) if out["ok"] else None,
               worker_cpu_pct=round(100 * (s1["worker_cpu_s"] - s0["worker_cpu_s"]) / wall, 1),
               loader_cpu_pct=loader_pct, loader_cpu_pct_total=round(sum(loader_pct), 1),
               loader_runq_wait_pct=loader_wait, server_runq_wait_pct=server_wait,
               loader_cpu_us_per_event=(round(1e6 * (sum(cpu1) - sum(cpu0)) / out["events_received"], 1)
                                        if out["events_received"] else None),
               server_rss_mb=s1["rss_mb"], **_stalls_since(lag0, gw))
    return out


def run(args: argparse.Namespace, gw: GatewayProcess) -> dict:
    out: dict[str, Any] = {"server_idle": gw.sample()}
    loaders = Loaders(args.loaders, gw.url)
    try:
        subscribers = _phase_connect(args, gw, loaders, out)
        if not subscribers:
            return out
        out["fanout"] = _phase_fanout(args, gw, loaders, subscribers)
        out["load"] = _phase_steady(args, gw, loaders, subscribers)
        tot: collections.Counter[str] = collections.Counter()
        for p in loaders.ask("totals", {}, timeout=30):
            tot.update(p)
        out["totals"] = dict(tot)
        out["close_s"] = round(max(p["close_s"] for p in loaders.ask(
            "close", {"concurrency": max(1, 100 // loaders.n)}, timeout=120)), 2)
    finally:
        loaders.stop()
    time.sleep(2.0)
    out["server_after_close"] = gw.sample()
    return out


def _stalls(phase: dict) -> str:
    st, own = phase.get("loop_stalls"), phase.get("loop_stalls_own")
    if not st or not own:
        return "not measured (no /metrics)"
    return (f"{st['max_from_ms']}-{st['max_ms']} ms; {st['over_5ms']} / {st['over_10ms']} / {st['over_20ms']} "
            f"of {st['samples']} timer wake-ups; its own work's part: {own['max_from_ms']}-{own['max_ms']} ms; "
            f"{own['over_5ms']} / {own['over_10ms']} / {own['over_20ms']}")


def table(r: dict) -> str:
    c, f, l = r.get("connect", {}), r.get("fanout", {}), r.get("load", {})
    rows = [
        ("clients connected + subscribed", f"{c.get('connected')} (failed {c.get('failed') or 0})"),
        ("time to connect all", f"{c.get('total_s')} s (concurrency {c.get('concurrency')}, "
                                f"per client p50 {c.get('per_client_p50_ms')} / p99 {c.get('per_client_p99_ms')} ms)"),
        ("server RSS idle -> connected", f"{r['server_idle']['rss_mb']} -> {c.get('server_rss_mb')} MB "
                                         f"(~{c.get('rss_per_client_kb')} KB/client)"),
        ("fan-out to all subscribers (last) p50 / p99 / max",
         f"{f.get('last_p50_ms')} / {f.get('last_p99_ms')} / {f.get('last_max_ms')} ms "
         f"({f.get('reps')} reps, {f.get('subscribers')} subs, timeouts {f.get('timeouts')})"),
        ("fan-out first subscriber p50; create reply p50", f"{f.get('first_p50_ms')} ms; {f.get('reply_p50_ms')} ms"),
        ("gateway loop's longest stall during fan-out (bucket); stalls > 5 / 10 / 20 ms", _stalls(f)),
        ("steady load target / sent / achieved", f"{l.get('target_rate')} / {l.get('send_rate')} / "
                                                 f"{l.get('achieved_rate')} req/s over {l.get('duration_s')} s "
                                                 f"on {l.get('load_clients')} clients, {l.get('loaders')} loaders"),
        ("measured the server at the target?", f"yes: {(l.get('verdict') or {}).get('why')}"
         if (l.get("verdict") or {}).get("ok") else
         f"NO, {(l.get('verdict') or {}).get('bound')}-bound: {(l.get('verdict') or {}).get('why')}"),
        ("loader sends late p99", f"{l.get('sched_late_p99_ms')} ms"),
        ("round trip all p50 / p99", f"{l.get('rtt_all_p50_ms')} / {l.get('rtt_all_p99_ms')} ms"),
    ]
    for m, v in (l.get("rtt") or {}).items():
        rows.append((f"  {m} p50 / p99 / max (n)", f"{v['p50_ms']} / {v['p99_ms']} / {v['max_ms']} ms ({v['n']})"))
    rows += [
        ("gateway loop's longest stall during load (bucket); stalls > 5 / 10 / 20 ms", _stalls(l)),
        ("errors during load", json.dumps(l.get("errors") or {})),
        ("events delivered during load", f"{l.get('events_received')} of {l.get('events_expected')} "
                                         f"({l.get('event_deliveries_per_s')}/s)"),
        ("CPU during load: server / sip worker / loaders", f"{l.get('server_cpu_pct')} / {l.get('worker_cpu_pct')} / "
                                                           f"{l.get('loader_cpu_pct')} % of one core"),
        ("waiting for a core (run queue): server / loaders", f"{l.get('server_runq_wait_pct')} / "
                                                             f"{l.get('loader_runq_wait_pct')} % of the time"),
        ("server CPU per request; loaders' CPU per event frame received",
         f"{l.get('server_cpu_ms_per_req')} ms; {l.get('loader_cpu_us_per_event')} µs"),
        ("server RSS after load / after all closed", f"{l.get('server_rss_mb')} / "
                                                     f"{(r.get('server_after_close') or {}).get('rss_mb')} MB"),
        ("overflows / seq gaps / still connected", f"{r.get('totals', {}).get('overflows')} / "
                                                   f"{r.get('totals', {}).get('seq_gaps')} / "
                                                   f"{r.get('totals', {}).get('still_connected')}"),
        ("gateway log warnings/errors", json.dumps((r.get("gateway_log") or {}).get("warnings_errors") or {})),
    ]
    lines = ["| measure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines)


def one_side(args: argparse.Namespace, side: str) -> dict[str, Any]:
    """The whole run (connect, fan-out, steady load, close) against the gateway or the bare server."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-control-{side}-"))
    cls = GatewayProcess if side == "gateway" else BareProcess
    gw = cls(workdir, args.log_level,
             str(Path(args.profile_server).resolve()) if args.profile_server and side == "gateway" else None)
    result: dict[str, Any] = {}
    try:
        gw.start()
        result["server"] = {"pid": gw.pid, "url": gw.url, "worker_pids": gw.worker_pids}
        result.update(run(args, gw))
    finally:
        result["server_stop"] = gw.stop()
        result["gateway_log"] = gw.log_summary()
        if args.keep:
            result["workdir"] = str(workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def ratios(gw: dict, bare: dict) -> dict[str, Any]:
    """gateway / bare for the figures issue 13 compares: round trip p50/p99, server CPU, fan-out;
    `measured` is false when either side's steady load fell short of its target (see its verdict)."""
    def ratio(a: Any, b: Any) -> float | None:
        return round(a / b, 2) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None
    gl, bl = gw.get("load", {}), bare.get("load", {})
    gf, bf = gw.get("fanout", {}), bare.get("fanout", {})
    return {"rtt_p50": ratio(gl.get("rtt_all_p50_ms"), bl.get("rtt_all_p50_ms")),
            "rtt_p99": ratio(gl.get("rtt_all_p99_ms"), bl.get("rtt_all_p99_ms")),
            "cpu": ratio(gl.get("server_cpu_pct"), bl.get("server_cpu_pct")),
            "cpu_per_req": ratio(gl.get("server_cpu_ms_per_req"), bl.get("server_cpu_ms_per_req")),
            "fanout_last_p50": ratio(gf.get("last_p50_ms"), bf.get("last_p50_ms")),
            "fanout_last_p99": ratio(gf.get("last_p99_ms"), bf.get("last_p99_ms")),
            "achieved_rate": {"gateway": gl.get("achieved_rate"), "bare": bl.get("achieved_rate")},
            "measured": bool((gl.get("verdict") or {}).get("ok") and (bl.get("verdict") or {}).get("ok"))}


def median_ratios(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each ratio's median over the pairs that measured both sides at their target (`measured`),
    with how many pairs met issue 13's targets: p99 within 1.2x, CPU within 2x."""
    ok = [r for r in pairs if r.get("measured")]
    out: dict[str, Any] = {"pairs": len(pairs), "measured": len(ok)}
    for key in ("rtt_p50", "rtt_p99", "cpu", "cpu_per_req", "fanout_last_p50", "fanout_last_p99"):
        values = sorted(r[key] for r in ok if isinstance(r.get(key), (int, float)))
        out[key] = round(statistics.median(values), 2) if values else None
    out["p99_within_1.2x"] = sum(1 for r in ok if isinstance(r.get("rtt_p99"), (int, float)) and r["rtt_p99"] <= 1.2)
    out["cpu_within_2x"] = sum(1 for r in ok if isinstance(r.get("cpu"), (int, float)) and r["cpu"] <= 2.0)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.control_channel", description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=1000, help="connected, subscribed clients")
    p.add_argument("--connect-concurrency", type=int, default=100, help="connects in progress at once")
    p.add_argument("--rate", type=float, default=200.0, help="total requests/s in the steady phase")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of steady load")
    p.add_argument("--load-clients", type=int, default=100, help="clients that send the steady load")
    p.add_argument("--loaders", type=int, default=min(8, os.cpu_count() or 1),
                   help="load-generator processes, each owning a slice of the clients (default: the core count)")
    p.add_argument("--subscribers", choices=("lean", "client"), default="lean",
                   help="the clients that send no load: lean (websockets' sans-I/O protocol on a bare "
                        "transport, default) or client (GatewayClient, as the load clients)")
    p.add_argument("--mix", default="ping=0.5,session.list=0.4,session.create=0.1",
                   help="method=weight,... for the steady load")
    p.add_argument("--fanout-reps", type=int, default=20)
    p.add_argument("--fanout-timeout", type=float, default=30.0)
    p.add_argument("--drain-timeout", type=float, default=60.0)
    p.add_argument("--log-level", default="info", help="the gateway's log level (default: its default)")
    p.add_argument("--no-compression", action="store_true",
                   help="no effect: the clients never offer permessage-deflate now (kept for old command lines)")
    p.add_argument("--json-out", default=None, help="also write the JSON summary here")
    p.add_argument("--profile-server", default=None, metavar="PATH",
                   help="run the gateway under cProfile, stats written to PATH at stop (slows it)")
    p.add_argument("--against", choices=("gateway", "bare", "both"), default="both",
                   help="the server(s) measured, one after the other with the same load (default both; "
                        "prints gateway/bare ratios)")
    p.add_argument("--repeat", type=int, default=1,
                   help="with --against both: this many pairs, the order alternating (gateway first, then bare "
                        "first, ...); each pair's ratios and their medians are printed")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")

    # quiet client logs (one line per connect otherwise), keep warnings
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    fds = raise_fd_limit(args.clients * 2 + 256)  # the gateway and the loaders inherit it

    result: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.control_channel", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "fd_limit": fds[0],
                    "loadavg": os.getloadavg()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    sides = ["gateway", "bare"] if args.against == "both" else [args.against]
    runs = []
    for i in range(args.repeat if args.against == "both" else 1):
        run_ = {"order": sides if i % 2 == 0 else sides[::-1], "loadavg": os.getloadavg()}
        for side in run_["order"]:
            run_[side] = one_side(args, side)
        if args.against == "both":
            run_["ratios"] = ratios(run_["gateway"], run_["bare"])
            print(f"pair {i + 1} of {args.repeat} ({' then '.join(run_['order'])}): gateway / bare:",
                  json.dumps(run_["ratios"]), flush=True)
        runs.append(run_)
    result.update({side: runs[-1][side] for side in sides})
    result["machine"]["loadavg_end"] = os.getloadavg()
    if args.against == "both":
        result["ratios"] = runs[-1]["ratios"]
    if len(runs) > 1:
        result["runs"] = runs
        result["ratios_median"] = median_ratios([r["ratios"] for r in runs])
    text = json.dumps(result, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    for side in sides:
        print(f"\n{side}:\n")
        print(table(result[side]))
    if "ratios_median" in result:
        for i, r in enumerate(result["runs"]):
            print(f"\npair {i + 1} ({' then '.join(r['order'])}; load {r['loadavg'][0]:.2f}): gateway / bare:",
                  json.dumps(r["ratios"]))
        print(f"\ngateway / bare, median of {len(result['runs'])} pairs:", json.dumps(result["ratios_median"]))
    elif "ratios" in result:
        print("\ngateway / bare:", json.dumps(result["ratios"]))
    print("load average at start / end:", result["machine"]["loadavg"], result["machine"]["loadavg_end"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
