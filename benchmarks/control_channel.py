"""Control-channel benchmark: many connected subscribers, command round trips, event fan-out.

    python -m benchmarks.control_channel [--clients 1000] [--rate 200] [--duration 20]

The gateway runs in its own process (`python -m gateway.cli serve`, on free loopback ports, store
and logs under a temp dir, sip.max_workers=1) so the load generator's CPU is not counted in the
server's figures. Both processes share the machine's cores, though: on a 2-core box the loader is
a real competitor, and its CPU is reported next to the server's.

Phases (in this order, all bounded in time):
  1. connect: N clients, each says hello and subscribes to events (since its hello seq);
     time to connect all, per-client connect latency, server RSS before and after.
  2. fan-out: one client sends `session.create`; time from just before the request until the
     last of the N subscribers has received that session's `session.state` event (repeated).
  3. steady load: a fixed total request rate (open loop) over a subset of the clients, a mix of
     `ping`, `session.list` and `session.create`, with all N still connected and subscribed;
     round trip p50/p99 per method, achieved rate, events delivered vs expected.
  4. close all clients; server RSS after; gateway stopped with SIGTERM; its log scanned for
     warnings and errors.
Prints a JSON summary, then a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import logging
import os
import platform
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import structlog

from gateway.client import GatewayClient

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-dispatcher-token"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- small helpers --------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) or None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 2)


def _port_free(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port_block(span: int, tcp: bool = True) -> int:
    """A base port whose `span` next ports are free on UDP (and TCP when `tcp`)."""
    rnd = random.Random()
    for _ in range(200):
        base = rnd.randrange(30000, 60000 - span)
        if all(_port_free(base + k, socket.SOCK_DGRAM) and (not tcp or _port_free(base + k, socket.SOCK_STREAM))
               for k in range(span)):
            return base
    raise RuntimeError("no free port block found")


def proc_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return round(int(f.read().split()[1]) * PAGE / 2**20, 1)
    except OSError:
        return None


def proc_cpu_s(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    except OSError:
        return None


def children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            out.append(int(d))
    return out


def self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def raise_fd_limit(need: int) -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _toml_str(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- the gateway process --------------------------------------------------------------------------


class GatewayProcess:
    """`python -m gateway.cli serve` on free loopback ports, stderr (JSON logs) to a file."""

    def __init__(self, workdir: Path, log_level: str, profile: str | None = None,
                 extra: dict[str, str] | None = None) -> None:
        self.extra = extra or {}  # more --set values (they win over the ones below)
        self.workdir = workdir
        self.profile = profile
        self.log_path = workdir / "gateway.log"
        self.log_level = log_level
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.http_port = 0
        self.worker_pids: list[int] = []

    def start(self, timeout: float = 60.0) -> None:
        sip_base = free_port_block(30)
        rtp_base = free_port_block(1000, tcp=False)
        sets = {
            "gateway.data_dir": str(self.workdir / "data"),  # strings as is, like tests/gateway/conftest.py
            "gateway.log_format": "json",
            "gateway.log_level": self.log_level,
            "control.host": "127.0.0.1",
            "control.port": "0",
            # every client comes from 127.0.0.1: the per-address limit (default 64) would refuse them
            "control.max_connections": "100000",
            "control.max_connections_per_source": "100000",
            # one principal drives every client: its request budget is the whole load's
            "control.request_budget.dispatcher": "{rate = 1000000, burst = 1000000}",
            "http.host": "127.0.0.1",
            "http.port": "0",
            "sip.host": "127.0.0.1",
            "sip.worker_host": "127.0.0.1",
            "sip.port": str(sip_base),
            "sip.worker_base_port": str(sip_base + 10),
            "sip.rtp_port_base": str(rtp_base),
            "sip.max_workers": "1",
            "sip.log_dir": str(self.workdir / "sip-logs"),
            "auth.dev_tokens": "false",
            "auth.tokens": "{%s = {principal = \"bench\", role = \"dispatcher\"}}" % _toml_str(TOKEN),
        }
        sets.update(self.extra)
        prof = ["-m", "cProfile", "-o", self.profile] if self.profile else []
        argv = [sys.executable, *prof, "-m", "gateway.cli", "serve"]
        for k, v in sets.items():
            argv += ["--set", f"{k}={v}"]
        deadline = time.monotonic() + timeout
        started = self._launch(argv, "gateway.started", "gateway", deadline)
        self.url, self.http_port = started["control"], int(started["http_port"])
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        self.worker_pids = children(self.proc.pid)
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"gateway not ready in {timeout}s; see {self.log_path}")

    def _launch(self, argv: list[str], event: str, what: str, deadline: float) -> dict:
        """Start `argv` (its output in log_path) and wait for its `event` log line, which it returns."""
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         start_new_session=True)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {self.proc.returncode}; see {self.log_path}")
            started = self._find_log(event)
            if started:
                return started
            time.sleep(0.1)
        raise TimeoutError(f"{what} did not start in time; see {self.log_path}")

    def _find_log(self, event: str) -> dict | None:
        with contextlib.suppress(OSError):
            for line in self.log_path.read_text(errors="replace").splitlines():
                if event in line:
                    with contextlib.suppress(ValueError):
                        obj = json.loads(line)
                        if obj.get("event") == event:
                            return obj
        return None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def sample(self) -> dict[str, Any]:
        return {
            "rss_mb": proc_rss_mb(self.pid),
            "cpu_s": proc_cpu_s(self.pid),
            "worker_rss_mb": sum(filter(None, (proc_rss_mb(p) for p in self.worker_pids))) or None,
            "worker_cpu_s": sum(filter(None, (proc_cpu_s(p) for p in self.worker_pids))),
        }

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        """SIGTERM, wait; SIGKILL (this process group only: ours) if it does not stop."""
        if self.proc is None:
            return {}
        t0 = time.monotonic()
        killed = False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                killed = True
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return {"exit_code": self.proc.returncode, "stop_s": round(time.monotonic() - t0, 2),
                "killed": killed}

    def log_summary(self) -> dict[str, Any]:
        levels: collections.Counter[str] = collections.Counter()
        bad: collections.Counter[str] = collections.Counter()
        non_json = 0
        with contextlib.suppress(OSError):
            for line in self.log_path.read_text(errors="replace").splitlines():
                try:
                    obj = json.loads(line)
                except ValueError:
                    non_json += 1
                    continue
                if not isinstance(obj, dict):
                    non_json += 1
                    continue
                lvl = str(obj.get("level", "?"))
                levels[lvl] += 1
                if lvl in ("warning", "error", "critical", "exception"):
                    bad[f"{lvl}:{obj.get('event')}"] += 1
        return {"levels": dict(levels), "warnings_errors": dict(bad.most_common(20)),
                "non_json_lines": non_json}


class BareProcess(GatewayProcess):
    """benchmarks/control_bare.py (plain `websockets`, nothing behind it) in its own process."""

    def start(self, timeout: float = 60.0) -> None:
        argv = [sys.executable, "-m", "benchmarks.control_bare", "--port", "0"]
        started = self._launch(argv, "bare.started", "bare server", time.monotonic() + timeout)
        self.url = started["control"]


# --- the load generator ---------------------------------------------------------------------------


class Bench:
    def __init__(self, n: int) -> None:
        self.n = n
        self.events = 0
        self.overflows = 0
        self.gaps = 0
        # session_id -> [count, first arrival, last arrival] of its session.state events
        self.arrivals: dict[str, list[float]] = {}
        self.waiters: dict[str, asyncio.Event] = {}

    def on_event(self, client: "BenchClient", params: dict, now: float) -> None:
        if params.get("type") == "events.overflow":
            self.overflows += 1
            return
        self.events += 1
        seq = params.get("seq")
        if isinstance(seq, int):
            if client.last_seq is not None and seq != client.last_seq + 1:
                self.gaps += 1
            client.last_seq = seq
        if params.get("type") == "session.state":
            sid = params.get("session_id") or (params.get("data") or {}).get("session_id")
            a = self.arrivals.get(sid)
            if a is None:
                self.arrivals[sid] = a = [0, now, now]
            a[0] += 1
            a[2] = now
            if a[0] >= self.n:
                w = self.waiters.get(sid)
                if w is not None:
                    w.set()


class BenchClient(GatewayClient):
    """Records arrival time of each event as its frame is parsed; no consumer queue."""

    bench: Bench

    def _on_event(self, params: dict) -> None:
        self.bench.on_event(self, params, time.perf_counter())


async def connect_all(url: str, n: int, bench: Bench, concurrency: int) -> tuple[list[BenchClient], dict]:
    sem = asyncio.Semaphore(concurrency)
    lat: list[float] = []
    failures: collections.Counter[str] = collections.Counter()

    async def one(i: int) -> BenchClient | None:
        async with sem:
            t = time.perf_counter()
            try:
                c = BenchClient(url, TOKEN, client_name=f"bench-{i}", reconnect=False, call_timeout=30)
                c.bench = bench
                await c.open()
                await c.subscribe(c.hello["seq"])
            except Exception as exc:  # counted and reported, the run goes on
                failures[type(exc).__name__] += 1
                return None
            lat.append(time.perf_counter() - t)
            return c

    t0 = time.perf_counter()
    got = await asyncio.gather(*(one(i) for i in range(n)))
    total = time.perf_counter() - t0
    clients = [c for c in got if c is not None]
    return clients, {"connected": len(clients), "failed": dict(failures), "total_s": round(total, 3),
                     "per_client_p50_ms": ms(pct(lat, 50)), "per_client_p99_ms": ms(pct(lat, 99)),
                     "per_client_max_ms": ms(max(lat) if lat else None), "concurrency": concurrency}


async def fanout(clients: list[BenchClient], bench: Bench, reps: int, timeout: float) -> dict:
    """One session.create; time until every subscriber got its session.state event."""
    trigger = clients[0]
    lasts, firsts, replies, timeouts, delivered = [], [], [], 0, []
    for i in range(reps):
        await asyncio.sleep(0.3)  # let the previous one settle
        t0 = time.perf_counter()
        res = await trigger.call("session.create", title=f"fanout-{i}")
        t_reply = time.perf_counter()
        sid = res["session_id"]
        w = bench.waiters.setdefault(sid, asyncio.Event())
        a = bench.arrivals.get(sid)
        if not (a and a[0] >= len(clients)):
            try:
                async with asyncio.timeout(timeout):
                    await w.wait()
            except TimeoutError:
                timeouts += 1
        bench.waiters.pop(sid, None)
        a = bench.arrivals.get(sid) or [0, float("nan"), float("nan")]
        delivered.append(a[0])
        replies.append(t_reply - t0)
        if a[0] >= len(clients):
            lasts.append(a[2] - t0)
            firsts.append(a[1] - t0)
    return {"reps": reps, "timeouts": timeouts, "min_delivered": min(delivered) if delivered else 0,
            "last_p50_ms": ms(pct(lasts, 50)), "last_p99_ms": ms(pct(lasts, 99)),
            "last_max_ms": ms(max(lasts) if lasts else None),
            "first_p50_ms": ms(pct(firsts, 50)), "reply_p50_ms": ms(pct(replies, 50))}


def parse_mix(text: str) -> list[tuple[str, float]]:
    out = []
    for part in text.split(","):
        name, _, w = part.partition("=")
        out.append((name.strip(), float(w or 1)))
    total = sum(w for _, w in out)
    return [(n, w / total) for n, w in out]


async def steady(clients: list[BenchClient], bench: Bench, rate: float, duration: float,
                 load_clients: int, mix: list[tuple[str, float]], drain_timeout: float) -> dict:
    """Open-loop: request i is due at t0 + i/rate, on client i % load_clients; method by mix."""
    users = clients[:max(1, min(load_clients, len(clients)))]
    rnd = random.Random(1)
    names = [n for n, _ in mix]
    weights = [w for _, w in mix]
    lat: dict[str, list[float]] = collections.defaultdict(list)
    errors: collections.Counter[str] = collections.Counter()
    lateness: list[float] = []
    tasks: set[asyncio.Task] = set()
    events_before = bench.events
    created_ok = 0

    async def one(c: BenchClient, method: str, i: int) -> None:
        nonlocal created_ok
        params: dict[str, Any] = {"title": f"load-{i}"} if method == "session.create" else {}
        t = time.perf_counter()
        try:
            await c.call(method, **params)
        except Exception as exc:
            errors[f"{method}:{type(exc).__name__}:{getattr(exc, 'reason', '')}"] += 1
            return
        lat[method].append(time.perf_counter() - t)
        if method == "session.create":
            created_ok += 1

    total = int(rate * duration)
    t0 = time.perf_counter()
    for i in range(total):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lateness.append(max(0.0, time.perf_counter() - due))
        method = rnd.choices(names, weights)[0]
        task = asyncio.get_running_loop().create_task(one(users[i % len(users)], method, i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    send_window = time.perf_counter() - t0
    if tasks:
        await asyncio.wait(set(tasks), timeout=drain_timeout)
    for t in list(tasks):
        t.cancel()
    elapsed = time.perf_counter() - t0
    # wait (bounded) for the load's events to reach every subscriber
    expected = created_ok * len(clients)
    deadline = time.perf_counter() + drain_timeout
    while bench.events - events_before < expected and time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
    ok = sum(len(v) for v in lat.values())
    all_lat = [x for v in lat.values() for x in v]
    return {
        "target_rate": rate, "duration_s": duration, "load_clients": len(users),
        "mix": {n: round(w, 3) for n, w in mix},
        "sent": total, "ok": ok, "errors": dict(errors), "unfinished": len(tasks),
        "achieved_rate": round(ok / elapsed, 1), "send_window_s": round(send_window, 2),
        "elapsed_s": round(elapsed, 2),
        "sched_late_p99_ms": ms(pct(lateness, 99)),
        "rtt_all_p50_ms": ms(pct(all_lat, 50)), "rtt_all_p99_ms": ms(pct(all_lat, 99)),
        "rtt": {m: {"n": len(v), "p50_ms": ms(pct(v, 50)), "p99_ms": ms(pct(v, 99)),
                    "max_ms": ms(max(v))} for m, v in sorted(lat.items())},
        "events_expected": expected, "events_received": bench.events - events_before,
        "event_deliveries_per_s": round((bench.events - events_before) / elapsed, 0),
    }


async def close_all(clients: list[BenchClient], concurrency: int = 100) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def one(c: BenchClient) -> None:
        async with sem:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    await c.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one(c) for c in clients))
    return time.perf_counter() - t0


async def run(args: argparse.Namespace, gw: GatewayProcess) -> dict:
    bench = Bench(args.clients)
    out: dict[str, Any] = {}
    idle = gw.sample()
    out["server_idle"] = idle
    cpu0, self0 = idle["cpu_s"], self_cpu_s()

    clients, out["connect"] = await connect_all(gw.url, args.clients, bench, args.connect_concurrency)
    await asyncio.sleep(1.0)
    s = gw.sample()
    out["connect"].update(server_rss_mb=s["rss_mb"], server_cpu_s=round(s["cpu_s"] - cpu0, 2),
                          loader_cpu_s=round(self_cpu_s() - self0, 2),
                          rss_per_client_kb=round((s["rss_mb"] - idle["rss_mb"]) * 1024 / max(1, len(clients)), 1))
    bench.n = len(clients)
    if not clients:
        return out

    f0, l0 = gw.sample()["cpu_s"], self_cpu_s()
    out["fanout"] = await fanout(clients, bench, args.fanout_reps, args.fanout_timeout)
    out["fanout"]["subscribers"] = len(clients)
    out["fanout"].update(server_cpu_s=round(gw.sample()["cpu_s"] - f0, 2), loader_cpu_s=round(self_cpu_s() - l0, 2))

    s0, l0, t0 = gw.sample(), self_cpu_s(), time.perf_counter()
    out["load"] = await steady(clients, bench, args.rate, args.duration, args.load_clients,
                               parse_mix(args.mix), args.drain_timeout)
    wall = time.perf_counter() - t0
    s1 = gw.sample()
    out["load"].update(
        server_cpu_pct=round(100 * (s1["cpu_s"] - s0["cpu_s"]) / wall, 1),
        worker_cpu_pct=round(100 * (s1["worker_cpu_s"] - s0["worker_cpu_s"]) / wall, 1),
        loader_cpu_pct=round(100 * (self_cpu_s() - l0) / wall, 1),
        server_rss_mb=s1["rss_mb"])

    out["totals"] = {"events_received": bench.events, "overflows": bench.overflows, "seq_gaps": bench.gaps,
                     "still_connected": sum(c.connected for c in clients)}
    out["close_s"] = round(await close_all(clients), 2)
    await asyncio.sleep(2.0)
    out["server_after_close"] = gw.sample()
    return out


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
        ("steady load target / achieved", f"{l.get('target_rate')} / {l.get('achieved_rate')} req/s over "
                                          f"{l.get('duration_s')} s on {l.get('load_clients')} clients"),
        ("round trip all p50 / p99", f"{l.get('rtt_all_p50_ms')} / {l.get('rtt_all_p99_ms')} ms"),
    ]
    for m, v in (l.get("rtt") or {}).items():
        rows.append((f"  {m} p50 / p99 / max (n)", f"{v['p50_ms']} / {v['p99_ms']} / {v['max_ms']} ms ({v['n']})"))
    rows += [
        ("errors during load", json.dumps(l.get("errors") or {})),
        ("events delivered during load", f"{l.get('events_received')} of {l.get('events_expected')} "
                                         f"({l.get('event_deliveries_per_s')}/s)"),
        ("CPU during load: server / sip worker / loader", f"{l.get('server_cpu_pct')} / {l.get('worker_cpu_pct')} / "
                                                          f"{l.get('loader_cpu_pct')} % of one core"),
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
        result.update(asyncio.run(run(args, gw)))
    finally:
        result["server_stop"] = gw.stop()
        result["gateway_log"] = gw.log_summary()
        if args.keep:
            result["workdir"] = str(workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def ratios(gw: dict, bare: dict) -> dict[str, float | None]:
    """gateway / bare for the figures issue 13 compares: round trip p50/p99, server CPU, fan-out."""
    def ratio(a: Any, b: Any) -> float | None:
        return round(a / b, 2) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None
    gl, bl = gw.get("load", {}), bare.get("load", {})
    gf, bf = gw.get("fanout", {}), bare.get("fanout", {})
    return {"rtt_p50": ratio(gl.get("rtt_all_p50_ms"), bl.get("rtt_all_p50_ms")),
            "rtt_p99": ratio(gl.get("rtt_all_p99_ms"), bl.get("rtt_all_p99_ms")),
            "cpu": ratio(gl.get("server_cpu_pct"), bl.get("server_cpu_pct")),
            "fanout_last_p50": ratio(gf.get("last_p50_ms"), bf.get("last_p50_ms")),
            "fanout_last_p99": ratio(gf.get("last_p99_ms"), bf.get("last_p99_ms"))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.control_channel", description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=1000, help="connected, subscribed clients")
    p.add_argument("--connect-concurrency", type=int, default=100, help="connects in progress at once")
    p.add_argument("--rate", type=float, default=200.0, help="total requests/s in the steady phase")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of steady load")
    p.add_argument("--load-clients", type=int, default=100, help="clients that send the steady load")
    p.add_argument("--mix", default="ping=0.5,session.list=0.4,session.create=0.1",
                   help="method=weight,... for the steady load")
    p.add_argument("--fanout-reps", type=int, default=20)
    p.add_argument("--fanout-timeout", type=float, default=30.0)
    p.add_argument("--drain-timeout", type=float, default=60.0)
    p.add_argument("--log-level", default="info", help="the gateway's log level (default: its default)")
    p.add_argument("--no-compression", action="store_true",
                   help="clients offer no permessage-deflate (the server's default is to accept it)")
    p.add_argument("--json-out", default=None, help="also write the JSON summary here")
    p.add_argument("--profile-server", default=None, metavar="PATH",
                   help="run the gateway under cProfile, stats written to PATH at stop (slows it)")
    p.add_argument("--against", choices=("gateway", "bare", "both"), default="both",
                   help="the server(s) measured, one after the other with the same load (default both; "
                        "prints gateway/bare ratios)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")
    args = p.parse_args(argv)

    # quiet client logs (one line per connect otherwise), keep warnings
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if args.no_compression:
        import functools

        import gateway.client as gc
        gc.ws_connect = functools.partial(gc.ws_connect, compression=None)  # type: ignore[assignment]
    fds = raise_fd_limit(args.clients * 2 + 256)  # the gateway inherits it too

    result: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.control_channel", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "fd_limit": fds[0]},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    sides = ["gateway", "bare"] if args.against == "both" else [args.against]
    for side in sides:
        result[side] = one_side(args, side)
    if args.against == "both":
        result["ratios"] = ratios(result["gateway"], result["bare"])
    text = json.dumps(result, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    for side in sides:
        print(f"\n{side}:\n")
        print(table(result[side]))
    if "ratios" in result:
        print("\ngateway / bare:", json.dumps(result["ratios"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
