"""Soak: the gateway at a mixed load for --minutes, with fault drills, on one machine.

    python -m benchmarks.soak --minutes 30 --drills worker@5,sms500@10,gateway@18,worker@24
    python -m benchmarks.soak --minutes 2 --drills worker@0.7            # a short proof

Everything on 127.0.0.1; every process is started here and stopped here by PID:
- the gateway (`python -m gateway.cli serve`, benchmarks/sip_calls.py's GatewayProcess: proxy none,
  SQLite in a fresh data dir) with SMS through the Twilio stub (tests/peers/twilio_stub.py, in this
  process), `--terminals` terminals in its directory with a token each;
- one SIPp UAS answering with RTP echo (benchmarks/sip_calls.py's UAS_HOLD): the calls' phones and
  the broadcast's speakers;
- load from this process: `--calls` calls kept up, each held 20..60 s then hung up and dialled
  again; a broadcast (a 10 s tone) to `--speakers` speakers every minute; an `sms.send` of
  `--sms-batch` numbers every `--sms-every` s; each terminal `terminal.report`s every 5 s;
  `--consoles` consoles subscribed from the first seq, recording every seq they see; every
  `--scrape-s` s (15) a GET of /metrics and /readyz, as Prometheus and a load balancer would.
Every `--sample-s` s: RSS and open file descriptors of the gateway and of its workers (/proc).
At the end: least-squares slope per hour of each (benchmarks/soak_stats.py: over the run, the last
gateway process, after its warm-up, and each consecutive `--slope-window-min` window of it after
the warm-up, so levelling off over a long run shows), the store's seqs (gaps) and every console's (missed), and `kpi.get` over the run and over each drill's window.

Drills (`KIND@MINUTE`, comma-separated): `worker` kill -9 of a SIP worker (the gateway's child
running sip.worker); `kamailio` (with `--proxy auto`) kill -9 of the process group of the Kamailio
the gateway started; `janus` (with `--video`) kill -9 of the process group of the Janus the
gateway started; `gateway` kill -9 of the gateway (its workers too), restarted on the same data
dir and ports 5 s later, the SMS accepted before it checked in the store afterwards; `sms500` the
Twilio stub answers every create with 500 for `--sms-fail-s` s; `disk` (with `--disk-mb`: the
whole soak runs in a mount namespace of its own, `unshare -m`, the data dir a tmpfs of that size)
a file fills the data dir's file system for `--disk-full-s` s while sms.send, call.dial and
broadcast.start are tried (their answers recorded), then it is removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import sqlite3
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from benchmarks.sip_calls import TOKEN, UAS_HOLD, GatewayProcess, SippUas, process_tree
from benchmarks.soak_stats import consecutive_slopes, kpi_brief, missed, process_slopes, seq_gaps, slope_windows
from gateway.client import GatewayClient
from tests.gateway.test_sms_twilio import SID as TW_SID
from tests.gateway.test_sms_twilio import TOKEN as TW_TOKEN
from tests.peers.ports import free_tcp_port
from tests.peers.twilio_stub import TwilioStub

BODY = "Soak: flood warning district 3."
SERIES = ("gw_rss_kb", "gw_anon_kb", "gw_fds", "workers_rss_kb", "workers_fds")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def _proc_rss_fds(pid: int) -> tuple[int, int, int] | None:
    """VmRSS (kB), open descriptors, RssAnon (kB: the heap, not mapped files such as SQLite's -shm)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            kb = {k: int(v.split()[0]) for k, _, v in (ln.partition(":") for ln in f) if k in ("VmRSS", "RssAnon")}
        return kb["VmRSS"], len(os.listdir(f"/proc/{pid}/fd")), kb["RssAnon"]
    except (OSError, KeyError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace")
    return ""


def workers_of(gw_pid: int) -> list[int]:
    return [p for p in process_tree(gw_pid)[1:] if "sip.worker" in _cmdline(p)]


class Soak:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
        if a.disk_mb:
            (self.work / "data").mkdir()
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={a.disk_mb}m", "soak-data", str(self.work / "data")],
                           check=True)
        self.stub = TwilioStub(TW_SID, TW_TOKEN)
        self.uas = SippUas(UAS_HOLD, calls=1_000_000, timeout_s=a.minutes * 60 + 600)
        self.samples: list[dict[str, Any]] = []
        self.drills: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}
        self.sms_sends: list[str] = []
        self.seen: list[set[int]] = [set() for _ in range(a.consoles)]
        self.gw: GatewayProcess | None = None
        self.starts: list[float] = []  # wall time of each gateway start
        self.sms_extra = 0  # numbers of sends not of --sms-batch size

    def count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def _gateway(self) -> GatewayProcess:
        a = self.a
        gw = GatewayProcess(self.work, python=a.python, max_workers=a.workers, warm=2, cpw=a.calls_per_worker,
                            max_in_flight=64, log_level="info", rtp_base=a.rtp_port_base)
        if a.tracemalloc:  # gateway/memwatch.py: reports in gateway.log and sip-logs/worker-N.log
            gw.env = {**gw.env, "DISPATCH_GATEWAY_TRACEMALLOC": str(a.tracemalloc)}
        if a.memstats:  # the light reports (no tracemalloc): heaps and container sizes, same logs
            gw.env = {**gw.env, "DISPATCH_GATEWAY_MEMSTATS": str(a.memstats)}
        for kv in a.gateway_env:  # e.g. LD_PRELOAD=libjemalloc.so.2: an allocator measured side by side
            k, sep, v = kv.partition("=")
            if not sep or not k:
                raise SystemExit(f"--gateway-env wants NAME=VALUE, got {kv!r}")
            gw.env = {**gw.env, k: v}
        tids = [f"unit-{i}" for i in range(a.terminals)]
        eps = ", ".join(f'{{name = "{t}", kind = "terminal", phone = "+8613800{i:06d}"}}' for i, t in enumerate(tids))
        toks = ", ".join([f'"{TOKEN}" = {{principal = "bench", role = "dispatcher"}}']
                         + [f'"tok-{t}" = {{principal = "{t}", role = "terminal"}}' for t in tids])
        http = gw.http_port
        sets = {"sms.provider": "twilio", "sms.rate_per_s": "20", "sms.burst": "20", "sms.base_delay_s": "0.5",
                "sms.max_delay_s": "5", "sms.twilio.account_sid": TW_SID, "sms.twilio.auth_token": TW_TOKEN,
                "sms.twilio.api_base": self.stub.url, "sms.twilio.public_url": f"http://127.0.0.1:{http}",
                "broadcast.chime": "false", "kpi.min_free_bytes": str(16 << 20), "directory.endpoint": f"[{eps}]", "auth.tokens": f"{{{toks}}}"}
        if a.proxy != "none":
            sets["sip.proxy"] = a.proxy  # auto: the gateway starts Kamailio (its own session) in front of the workers
        if a.video:  # the media engine: one Janus the gateway starts and supervises
            sets.update({"video.enabled": "true", "video.instances": "1", "video.ws_base_port": str(free_tcp_port()),
                         "video.rtp_port_min": str(a.video_rtp_min), "video.rtp_port_max": str(a.video_rtp_min + 999)})
        for kv in a.set:  # e.g. kpi.metrics_interval_s=86400: a setting measured side by side
            k, sep, v = kv.partition("=")
            if not sep or not k:
                raise SystemExit(f"--set wants KEY=VALUE, got {kv!r}")
            sets[k] = v
        for k, v in sets.items():
            gw.args += ["--set", f"{k}={v}"]
        return gw

    # ---- load ----

    async def call_loop(self, c: GatewayClient, until: float) -> None:
        await asyncio.sleep(random.uniform(0, 10))
        while time.monotonic() < until:
            try:
                r = await c.call("call.dial", target=self.uas.uri)
                self.count("calls_dialled")
                await asyncio.sleep(random.uniform(20, 60))
                with contextlib.suppress(Exception):
                    await c.call("call.hangup", call_id=r["call_id"])
            except Exception as exc:  # noqa: BLE001 - counted, the soak goes on
                self.count(f"call_error:{type(exc).__name__}:{getattr(exc, 'reason', '')}")
                await asyncio.sleep(2)

    async def every(self, period: float, until: float, name: str, fn: Any) -> None:
        while time.monotonic() < until:
            try:
                await fn()
                self.count(name)
            except Exception as exc:  # noqa: BLE001
                self.count(f"{name}_error:{type(exc).__name__}:{getattr(exc, 'reason', '')}")
            await asyncio.sleep(period)

    async def broadcast(self, c: GatewayClient) -> None:
        targets = [f"sip:spk{i}@127.0.0.1:{self.uas.port}" for i in range(self.a.speakers)]
        await c.call("broadcast.start", targets=targets, chime=False, source={"type": "tone", "seconds": 10})

    async def sms(self, c: GatewayClient) -> None:
        base = 8613700000000 + len(self.sms_sends) * 1000
        r = await c.call("sms.send", to=[f"+{base + i}" for i in range(self.a.sms_batch)], body=BODY)
        self.sms_sends.append(r["send_id"])

    async def scrape(self) -> None:
        """What Prometheus and a load balancer do: GET /metrics and /readyz (on a thread: urllib)."""
        gw = self.gw
        assert gw is not None

        def get() -> None:
            for path in ("/metrics", "/readyz"):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{gw.http_port}{path}", timeout=10) as r:
                        r.read()
                except urllib.error.HTTPError as exc:  # /readyz answers 503 while a part is down
                    if path == "/metrics":
                        raise
                    exc.read()
        await asyncio.to_thread(get)

    async def terminal(self, i: int, until: float) -> None:
        assert self.gw is not None
        t = await GatewayClient.connect(self.gw.url, f"tok-unit-{i}", call_timeout=30)
        try:
            await asyncio.sleep(random.uniform(0, 5))
            await self.every(5, until, "reports", lambda: t.report(31.2 + i / 1000, 121.4, 8.0, battery=80.0))
        finally:
            await t.close()

    async def console(self, k: int, since: int) -> None:
        assert self.gw is not None
        c = await GatewayClient.connect(self.gw.url, TOKEN, call_timeout=30, event_queue=100_000)
        try:
            await c.subscribe(since)
            async for ev in c.events():
                self.seen[k].add(ev["seq"])
        finally:
            await c.close()

    async def sampler(self, until: float) -> None:
        t0 = time.monotonic()
        while time.monotonic() < until:
            gw = self.gw
            if gw is not None and gw.proc is not None and gw.proc.poll() is None:
                g = _proc_rss_fds(gw.proc.pid)
                wk = {str(p): s for p in workers_of(gw.proc.pid) if (s := _proc_rss_fds(p))}
                ws = list(wk.values())
                if g:
                    self.samples.append({"t": round(time.monotonic() - t0, 1), "gw_pid": gw.proc.pid,
                                         "gw_rss_kb": g[0], "gw_fds": g[1], "gw_anon_kb": g[2], "workers": len(ws),
                                         "workers_rss_kb": sum(s[0] for s in ws), "workers_fds": sum(s[1] for s in ws),
                                         "wk": {p: list(s) for p, s in wk.items()}})
            await asyncio.sleep(self.a.sample_s)

    # ---- drills ----

    async def drill(self, kind: str, at_s: float, t_run: float) -> None:
        await asyncio.sleep(max(0.0, t_run + at_s - time.monotonic()))
        gw = self.gw
        assert gw is not None and gw.proc is not None
        rec: dict[str, Any] = {"kind": kind, "at": _iso(time.time())}
        if kind == "worker":
            ws = workers_of(gw.proc.pid)
            rec["pid"] = ws[0] if ws else None
            if ws:
                os.kill(ws[0], signal.SIGKILL)
        elif kind == "kamailio":
            ks = [p for p in process_tree(gw.proc.pid)[1:] if _cmdline(p).split(" ")[0].endswith("kamailio")
                  and os.getpgid(p) == p]  # the one the gateway started: its own process group
            rec["pgid"] = ks[0] if ks else None
            if ks:
                os.killpg(ks[0], signal.SIGKILL)
        elif kind == "janus":
            js = [p for p in process_tree(gw.proc.pid)[1:] if _cmdline(p).split(" ")[0].endswith("janus")
                  and os.getpgid(p) == p]  # the media engine the gateway started: its own process group
            rec["pgid"] = js[0] if js else None
            if js:
                os.killpg(js[0], signal.SIGKILL)
        elif kind == "sms500":
            self.stub.fail_next(10**9, 500)
            await asyncio.sleep(self.a.sms_fail_s)
            self.stub._failures.clear()  # noqa: SLF001 - the stub's injected failures end here
        elif kind == "disk":
            rec.update(await self.fill_disk(gw))
        elif kind == "gateway":
            with contextlib.closing(sqlite3.connect(f"file:{gw.workdir}/data/gateway.db?mode=ro", uri=True)) as db:
                rec["sms_before"] = db.execute("SELECT COUNT(*) FROM sms").fetchone()[0]
                rec["seq_before"] = db.execute("SELECT MAX(seq) FROM events").fetchone()[0]
            tree = process_tree(gw.proc.pid)
            os.kill(gw.proc.pid, signal.SIGKILL)
            await asyncio.to_thread(gw.proc.wait)
            await asyncio.sleep(1)
            for pid in tree[1:]:  # its workers, which it started: by PID
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(4)
            os.replace(gw.workdir / "gateway.log", gw.workdir / f"gateway.log.{len(self.starts)}")
            rec["restart_s"] = round(await asyncio.to_thread(gw.start), 2)
            self.starts.append(time.time())
            rec["pid_after"] = gw.proc.pid
        rec["end"] = _iso(time.time())
        self.drills.append(rec)
        print(json.dumps({"drill": rec}), flush=True)

    async def fill_disk(self, gw: GatewayProcess) -> dict[str, Any]:
        """Fill the data dir's file system (the tmpfs of --disk-mb), try new work, free it again."""
        filler = gw.workdir / "data" / "soak-filler"
        rec: dict[str, Any] = {}

        def fill() -> int:
            n = 0
            with open(filler, "wb") as f, contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * (1 << 20))
                    f.flush()
                    n += 1
            return n
        rec["filled_mb"] = await asyncio.to_thread(fill)
        st = os.statvfs(filler.parent)
        rec["free_bytes"] = st.f_bavail * st.f_frsize
        c = await GatewayClient.connect(gw.url, TOKEN, call_timeout=30, reconnect=False)
        try:
            await asyncio.sleep(self.a.disk_full_s / 2)
            for name, coro in (("sms.send", c.call("sms.send", to=["+8613799999999"], body=BODY)),
                               ("call.dial", c.call("call.dial", target=self.uas.uri)),
                               ("broadcast.start", c.call("broadcast.start", targets=[f"sip:spk0@127.0.0.1:{self.uas.port}"],
                                                          chime=False, source={"type": "tone", "seconds": 3}))):
                try:
                    r = await coro
                    rec[name] = "accepted"
                    if name == "sms.send":
                        self.sms_sends.append(r["send_id"])
                        self.sms_extra += 1 - self.a.sms_batch
                except Exception as exc:  # noqa: BLE001 - recorded: how the gateway refuses
                    rec[name] = f"{type(exc).__name__}: {exc}"[:300]
            await asyncio.sleep(self.a.disk_full_s / 2)
        finally:
            filler.unlink()
            await c.close()
        return rec

    # ---- run ----

    async def run(self) -> dict[str, Any]:
        a = self.a
        await self.stub.start()
        await self.uas.start()
        self.gw = self._gateway()
        out: dict[str, Any] = {"args": {k: v for k, v in vars(a).items()}, "workdir": str(self.work)}
        tasks: list[asyncio.Task] = []
        try:
            out["gateway_start_s"] = round(await asyncio.to_thread(self.gw.start), 2)
            self.starts.append(time.time())
            t_wall0 = time.time()
            d = await GatewayClient.connect(self.gw.url, TOKEN, call_timeout=60)
            first = d.hello["seq"]
            t_run = time.monotonic()
            until = t_run + a.minutes * 60
            for k in range(a.consoles):
                tasks.append(asyncio.create_task(self.console(k, first)))
            tasks.append(asyncio.create_task(self.sampler(until)))
            tasks += [asyncio.create_task(self.call_loop(d, until)) for _ in range(a.calls)]
            tasks.append(asyncio.create_task(self.every(60, until, "broadcasts", lambda: self.broadcast(d))))
            tasks.append(asyncio.create_task(self.every(a.sms_every, until, "sms_sends", lambda: self.sms(d))))
            tasks += [asyncio.create_task(self.terminal(i, until)) for i in range(a.terminals)]
            if a.scrape_s:
                tasks.append(asyncio.create_task(self.every(a.scrape_s, until, "scrapes", self.scrape)))
            drills = [asyncio.create_task(self.drill(k, float(m) * 60, t_run))
                      for k, m in (s.split("@") for s in a.drills.split(",") if s)]
            await asyncio.sleep(max(0.0, until - time.monotonic()))
            await asyncio.gather(*drills, return_exceptions=True)
            await asyncio.sleep(70)  # calls held end, broadcasts and SMS settle, consoles catch up
            t_wall1 = time.time()
            out.update(await self.finish(d, first, t_wall0, t_wall1))
            await d.close()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.gw is not None:
                out["gateway_exit"] = self.gw.stop()
            await self.uas.stop()
            await self.stub.stop()
        return out

    async def finish(self, d: GatewayClient, first: int, t0: float, t1: float) -> dict[str, Any]:
        assert self.gw is not None
        with contextlib.closing(sqlite3.connect(f"file:{self.gw.workdir}/data/gateway.db?mode=ro", uri=True)) as db:
            stored = [r[0] for r in db.execute("SELECT seq FROM events WHERE seq > ? ORDER BY seq", (first,))]
            sms_states = dict(db.execute("SELECT state, COUNT(*) FROM sms GROUP BY state").fetchall())
            with contextlib.closing(sqlite3.connect(self.work / "gateway-final.db")) as keep:
                db.backup(keep)  # kept for a post-mortem: with --disk-mb the data dir's tmpfs goes with the run
        last = stored[-1] if stored else first
        res: dict[str, Any] = {
            "counts": dict(sorted(self.counts.items())), "events_stored": len(stored),
            "seq_first": first + 1, "seq_last": last, "store_gaps": seq_gaps([first, *stored]),
            "console_missed": [len(missed(stored, s, first, last)) for s in self.seen],
            "sms_states": sms_states, "sms_accepted": len(self.sms_sends) * self.a.sms_batch + self.sms_extra,
            "sms_rows": sum(sms_states.values()), "sms_numbers_at_peer": len(self.stub.creates),
            "sms_duplicated_at_peer": sum(1 for k in self.stub.creates.values() if k > 1),
            "samples": len(self.samples), "drills": self.drills, "gateway_env": self.a.gateway_env,
        }
        for key in SERIES:
            for name, v in slope_windows(self.samples, key, self.a.warmup_s).items():
                res[f"slope_{key}_per_h_{name}"] = None if v is None else round(v, 1)
            res[f"{key}_first_last"] = [self.samples[0][key], self.samples[-1][key]] if self.samples else None
            res[f"slope_{key}_per_h_windows"] = [
                {"from_min": round(w["from_s"] / 60, 1), "to_min": round(w["to_s"] / 60, 1), "samples": w["samples"],
                 "slope": None if w["slope"] is None else round(w["slope"], 1), "median": w["median"]}
                for w in consecutive_slopes(self.samples, key, self.a.warmup_s, self.a.slope_window_min * 60)]
        res["slope_window_min"] = self.a.slope_window_min
        for i, key in enumerate(("rss_kb", "fds")):  # each worker process apart (a restart is not growth)
            res[f"slope_worker_{key}_per_h_each"] = {p: round(v, 1) for p, v in
                                                      process_slopes(self.samples, i, self.a.warmup_s).items()}
        kpi = await d.call("kpi.get", since=_iso(t0), until=_iso(t1))
        res["kpi_run"] = kpi_brief(kpi)
        ats = sorted(datetime.fromisoformat(r["at"]).timestamp() for r in self.drills)
        for rec in self.drills:
            start = datetime.fromisoformat(rec["at"]) - timedelta(seconds=1)
            end = datetime.fromisoformat(rec["end"]) + timedelta(seconds=self.a.drill_window_s)
            nxt = [t for t in ats if t > start.timestamp() + 1]  # the window stops at the next drill
            k = await d.call("kpi.get", since=start.isoformat(), until=_iso(min([end.timestamp(), t1, *nxt])))
            rec["kpi_window"] = kpi_brief(k)
        with open(self.work / "samples.json", "w") as f:
            json.dump(self.samples, f)
        return res


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.3f} %"


def table(out: dict[str, Any]) -> str:
    """Markdown: the run's checks and slopes, then one row per drill with the indicators of its window."""
    k = out["kpi_run"]
    rows = [f"- load done: {json.dumps(out['counts'])}",
            f"- events stored {out['events_stored']} (seq {out['seq_first']}..{out['seq_last']}), gaps in the store:"
            f" {out['store_gaps'] or 'none'}, seqs missed per console: {out['console_missed']}",
            f"- SMS accepted {out['sms_accepted']}, rows in the store {out['sms_rows']} {json.dumps(out['sms_states'])},"
            f" numbers at the stub {out['sms_numbers_at_peer']}, duplicated there {out['sms_duplicated_at_peer']}",
            f"- indicators over the run: availability {_pct(k['availability'])} (down {k['down_s']} s:"
            f" {k['outages']}), timeliness {_pct(k['timeliness'])} (met {k['met']}, missed {k['missed']},"
            f" pending {k['pending']}); misses by channel and why: {json.dumps(k.get('misses_by_why', {}))}", "",
            "| series | first -> last sample | slope per hour, whole run | last gateway process | same, after warm-up"
            " | same, its second half |", "|---|---|---|---|---|---|"]
    for key in SERIES:
        fl = out.get(f"{key}_first_last") or ["-", "-"]
        rows.append(f"| {key} | {fl[0]} -> {fl[1]} | {out.get(f'slope_{key}_per_h_run')} |"
                    f" {out.get(f'slope_{key}_per_h_last_process')} |"
                    f" {out.get(f'slope_{key}_per_h_last_process_after_warmup')} |"
                    f" {out.get(f'slope_{key}_per_h_last_process_second_half', '-')} |")
    for key in ("rss_kb", "fds"):
        each = out.get(f"slope_worker_{key}_per_h_each")
        if each is not None:
            rows.append(f"| worker_{key}, each worker process after its warm-up (PID: slope per hour) | | | | {json.dumps(each)} | |")
    rows += _window_table(out)
    rows += ["", "| drill | at (UTC) | effect | availability of the window | outages in the window | timeliness (met / missed) |",
             "|---|---|---|---|---|---|"]
    for d in out["drills"]:
        w = d.get("kpi_window", {})
        eff = {x: y for x, y in d.items() if x not in ("kind", "at", "end", "kpi_window")}
        rows.append(f"| {d['kind']} | {d['at'][11:19]} | {json.dumps(eff)} | {_pct(w.get('availability'))} |"
                    f" {w.get('outages')} | {_pct(w.get('timeliness'))} ({w.get('met')} / {w.get('missed')}) |")
    return "\n".join(rows)


def _window_table(out: dict[str, Any]) -> list[str]:
    """Markdown: the slope of each consecutive window of the last gateway process after its warm-up
    (a row per series, a column per window); nothing for a run without them."""
    windows = {key: out.get(f"slope_{key}_per_h_windows") or [] for key in SERIES}
    spans = max(windows.values(), key=len)
    if not spans:
        return []
    heads = [f"min {w['from_min']:g}-{w['to_min']:g}" for w in spans]
    rows = ["", f"Slope per hour in each {out.get('slope_window_min'):g}-minute window of the last gateway process,"
                " after its warm-up (minutes of the run), then each window's median:", "",
            "| series | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for key, ws in windows.items():
        cells = [str(w["slope"]) for w in ws] + ["-"] * (len(heads) - len(ws))
        rows.append(f"| {key} | " + " | ".join(cells) + " |")
    for key, ws in windows.items():  # runs recorded before the medians have none
        if ws and all("median" in w for w in ws):
            cells = [f"{w['median']:g}" for w in ws] + ["-"] * (len(heads) - len(ws))
            rows.append(f"| {key}, median | " + " | ".join(cells) + " |")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--calls", type=int, default=10, help="calls kept up (each 20..60 s, then again)")
    p.add_argument("--speakers", type=int, default=3)
    p.add_argument("--sms-batch", type=int, default=20)
    p.add_argument("--sms-every", type=float, default=30)
    p.add_argument("--sms-fail-s", type=float, default=60)
    p.add_argument("--terminals", type=int, default=20)
    p.add_argument("--consoles", type=int, default=3)
    p.add_argument("--scrape-s", type=float, default=15, help="GET /metrics and /readyz this often (0: never)")
    p.add_argument("--workers", type=int, default=3, help="sip.max_workers")
    p.add_argument("--video", action="store_true", help="video.enabled (one Janus): the janus drill")
    p.add_argument("--proxy", default="none", choices=("none", "auto"), help="sip.proxy (auto: Kamailio, the kamailio drill)")
    p.add_argument("--calls-per-worker", type=int, default=20)
    p.add_argument("--rtp-port-base", type=int, default=30000)
    p.add_argument("--video-rtp-min", type=int, default=52000, help="Janus's RTP ports: this .. +999")
    p.add_argument("--gateway-env", action="append", default=[], metavar="NAME=VALUE",
                   help="set in the gateway's (and so its children's) environment; repeatable")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a gateway setting over the soak's own (dispatch-gateway --set); repeatable")
    p.add_argument("--sample-s", type=float, default=5)
    p.add_argument("--warmup-s", type=float, default=300, help="samples before this are left out of one slope")
    p.add_argument("--slope-window-min", type=float, default=30,
                   help="also the slopes of each consecutive window of this many minutes of the last gateway"
                        " process after its warm-up (levelling off over a long run); 0: none")
    p.add_argument("--drills", default="", help="KIND@MINUTE,... (worker, gateway, sms500)")
    p.add_argument("--drill-window-s", type=float, default=90, help="kpi.get past each drill's end")
    p.add_argument("--python", default=str(Path(__file__).resolve().parents[1] / ".venv/bin/python"))
    p.add_argument("--json-out", default=None)
    p.add_argument("--disk-mb", type=int, default=0,
                   help="the data dir on a tmpfs of this size, in a mount namespace of its own (root): the `disk` drill")
    p.add_argument("--disk-full-s", type=float, default=60)
    p.add_argument("--tracemalloc", type=float, default=0, metavar="S",
                   help="DISPATCH_GATEWAY_TRACEMALLOC=S for the gateway and its workers: memory reports every S s")
    p.add_argument("--memstats", type=float, default=0, metavar="S",
                   help="DISPATCH_GATEWAY_MEMSTATS=S: light memory reports (no tracemalloc) every S s")
    p.add_argument("--table-from", default=None, metavar="JSON", help="only print the table of a run's --json-out")
    a = p.parse_args(argv)
    if a.table_from:
        print(table(json.loads(Path(a.table_from).read_text())))
        return 0
    if a.disk_mb and not os.environ.get("SOAK_IN_NS"):
        # This script again, in its own mount namespace (gone with it): the tmpfs is nobody else's.
        os.environ["SOAK_IN_NS"] = "1"
        os.execvp("unshare", ["unshare", "-m", "--propagation", "private", sys.executable, "-m", "benchmarks.soak",
                              *(argv if argv is not None else sys.argv[1:])])
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))  # clients' reconnects
    out = asyncio.run(Soak(a).run())
    text = json.dumps(out, indent=1, default=str)
    print(text, flush=True)
    print(table(out), flush=True)
    if a.json_out:
        Path(a.json_out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
