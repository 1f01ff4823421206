"""Benchmark: conferences mixed by a worker's conference bridge; join time, CPU, mouth-to-ear delay.

    python -m benchmarks.conferences --layout 1x50,1x2,10x5 --repeat 3
    python -m benchmarks.conferences --layout 1x50,1x2 --span --repeat 3   # talker and listener on 2 workers
    python -m benchmarks.conferences --validate 0,40,120                   # the delay method, no gateway

Everything on 127.0.0.1; every process started here is stopped here by PID. The gateway process,
SIPp UAS, /proc sampling and machine description come from `benchmarks.sip_calls`.

One run per layout CxM (C conferences of M members; `1x50` and `10x5` are the issue's, `1x2` an
idle conference of the talker and the listener alone):
1. Gateway as its own process (sip.proxy none, the pjsua2 build of --build, 2 RTP ports a call).
   A conference lives on the worker of its first member; a worker keeps a slot for a trunk, so
   with calls_per_worker from the probe every member is on one worker. `--span` (layouts 1xM)
   sets calls_per_worker to ceil((M+3)/2) (2 for M=2): the talker's worker fills, and the conference spans a
   second worker, linked by a trunk, where the listener (added last) lands.
2. Conference 0 has two members held by a child process (python -m benchmarks.rtp_member: a SIP
   UAS and a PCMU RTP leg each, every thread SCHED_FIFO), the talker and the listener; every other member is a call to one SIPp UAS
   (answers, holds until BYE, sends no RTP: an echoing member would feed the mix back into
   itself). The talker sends a 60 ms 1 kHz beep every --beep-interval s, silence between; the
   listener sends silence.
3. `conference.create` C times; the talker's `conference.add` first, then every other add at once
   (members of all conferences interleaved), the listener's last with them (after them with
   --span). Join time: from the first `conference.add` sent to every member's `conference.member`
   "joined" event (and per conference, to its last member joined).
4. CPU (utime+stime) of gateway + workers over --steady s with everyone joined; RSS/PSS.
5. Mouth-to-ear delay, talker to listener, on ONE clock (that process's CLOCK_REALTIME): a beep
   is sent at the time taken just before `sendto` of the RTP packet whose first sample starts it;
   it is heard at the kernel receive timestamp (SO_TIMESTAMPNS) of the listener's packet holding
   the first sample over 1/16 full scale after >= 200 ms of quiet, plus that sample's offset in
   the packet (benchmarks.beep_delay). Only beeps sent from 1 s after everyone joined count; each
   heard onset is paired with the last beep sent before it (within 0.9 of an interval: a beep
   later than that is counted in heard_unpaired, not as a delay). The figure
   is what the gateway adds between RTP in and RTP out: the talker leg's jitter buffer in the
   worker, decoding and resampling to the bridge's 16 kHz, waiting for the bridge's 20 ms tick,
   mixing, (with --span: the trunk's encoding, RTP, the second worker's jitter buffer and tick),
   resampling, encoding and sending. It excludes what phones add: the talker's 20 ms of
   packetisation and the listener's own jitter buffer and playout.
6. `conference.end` on each, every member's call ended, SIPp's count of successful calls.

`--nice N` starts the gateway (and so every worker) at nice N: on a machine shared with other
work, how much of the delay is the bridge waiting for a core.

Why the delay jumps (docs/design.md, "Jitter buffer"): `--trace-ms N` turns on the workers' media
trace (sip.media_trace_ms) and reports, beside each beep, what the talker leg's jitter buffer held
just before it was sent (`jb_per_beep`: delay and held ms), that buffer's discarded / lost / empty
frames over the beeps and the workers' threads' waits for a core. Disturbances, from 1 s after
everyone joined (so during the steady CPU sample too): `--burst K:MS` makes the talker hold its
packets MS ms and send them at once (what a late receive thread or a network does), `--stall K:MS`
SIGSTOPs the gateway's workers for MS ms, half an interval after beep K; `--hogs N` runs N busy
loops while the beeps are measured. `--variant NAME:KEY=VALUE,...` runs each layout once per
variant in turn with those config overrides (e.g. jitter buffer settings), side by side.

`--validate D1,D2,..`: no gateway; the talker's RTP goes through an in-process relay that holds
each datagram D ms (from its kernel receive time) to the listener: the method must read D, and
each beep's reading must match the hold that beep's packet really had (the relay notes when it
forwarded each sequence number): that difference is the method's own error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import media_trace
from benchmarks.beep_delay import NS, BeepPlan, pair_delays, pair_onsets
from benchmarks.rtp_member import RtpLeg, RtpRelay
from benchmarks.sip_calls import (
    ROOT,
    TOKEN,
    UAS_HOLD,
    GatewayProcess,
    SippUas,
    close_client,
    machine_info,
    pct,
    probe_calls_per_worker,
    process_tree,
    sample,
    wait_until,
)
from gateway.client import GatewayClient, RemoteError
from sip.config import RTP_PORTS_PER_WORKER


class MemberWatch:
    """conference.member events: the first time each member reached each state."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, str], float] = {}
        self.changed = asyncio.Event()
        self.overflow = 0

    async def read(self, client: GatewayClient) -> None:
        async for ev in client.events():
            if ev.get("type") == "events.overflow":
                self.overflow += 1
            if ev.get("type") != "conference.member":
                continue
            d = ev["data"]
            self.first.setdefault((d["member_id"], d["state"]), time.monotonic())
            self.changed.set()

    def at(self, member_id: str, state: str) -> float | None:
        return self.first.get((member_id, state))

    async def until(self, pred: Any, timeout: float) -> bool:
        return await wait_until(self.changed, pred, timeout, tick=0.5)


class PortTaken(RuntimeError):
    """A port found free was taken by another process before the gateway bound it: run again."""


class MeasuringLegs:
    """The talker and the listener in a child process (python -m benchmarks.rtp_member), started
    and stopped here by PID."""

    def __init__(self, python: str, every: int) -> None:
        self.args = [python, "-m", "benchmarks.rtp_member", "--every", str(every)]
        self.proc: asyncio.subprocess.Process | None = None
        self.talker_uri = self.listener_uri = ""

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(*self.args, cwd=ROOT, stdin=asyncio.subprocess.PIPE,
                                                         stdout=asyncio.subprocess.PIPE)
        assert self.proc.stdout is not None
        d = json.loads(await asyncio.wait_for(self.proc.stdout.readline(), 30))
        self.talker_uri, self.listener_uri = d["talker"], d["listener"]

    async def finish(self) -> dict[str, Any]:
        """Stop both legs; what the talker sent and the listener heard."""
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"stop\n")
        await self.proc.stdin.drain()
        out = json.loads(await asyncio.wait_for(self.proc.stdout.readline(), 30))
        await asyncio.wait_for(self.proc.wait(), 10)
        return out

    async def hold(self, frames: int) -> None:
        """The talker holds its next `frames` packets back, then sends them at once (a burst)."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(f"hold {frames}\n".encode())
        await self.proc.stdin.drain()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


def delay_stats(sent_onsets: list[int], heard_onsets: list[int], since_ns: int, window_ns: int) -> dict[str, Any]:
    """The talker-to-listener delays of the beeps sent from `since_ns` on (ms, p50/p95/min/max)."""
    sent = [t for t in sent_onsets if t >= since_ns]
    heard = [t for t in heard_onsets if t >= since_ns]
    d = [x / 1e6 for x in pair_delays(sent, heard, window_ns)]
    return {"beeps_sent": len(sent), "beeps_heard": len(heard), "beeps_paired": len(d),
            "heard_unpaired": len(heard) - len(d),  # over 0.9 of an interval late, or not a beep
            "delay_ms_p50": round(statistics.median(d), 1) if d else None,
            "delay_ms_p95": round(pct(d, 95), 1) if d else None,  # type: ignore[arg-type]
            "delay_ms_min": round(min(d), 1) if d else None, "delay_ms_max": round(max(d), 1) if d else None,
            "delays_ms": [round(x, 1) for x in d]}


def chain_length(log: Path, conference_id: str) -> int:
    """Workers in the conference's chain: 1 + the trunks its `conference.spanned` log events name."""
    n = 1
    with contextlib.suppress(OSError):
        for ln in log.read_text(errors="replace").splitlines():
            if '"conference.spanned"' in ln and conference_id in ln:
                with contextlib.suppress(ValueError, KeyError):
                    n = max(n, len(json.loads(ln)["workers"]))
    return n


def stall(pids: list[int], ms: float) -> dict[str, Any]:
    """SIGSTOP `pids` (the gateway's workers, started by this benchmark) for `ms`, then SIGCONT."""
    t0 = time.time_ns()
    try:
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGSTOP)
        time.sleep(ms / 1000)
    finally:
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGCONT)
    return {"at_ns": t0, "ms": ms, "stopped_ms": round((time.time_ns() - t0) / 1e6, 1)}


async def disturb(stalls: list[tuple[int, float]], bursts: list[tuple[int, float]], since_ns: int, interval: float,
                  pids: list[int], legs: MeasuringLegs) -> list[dict]:
    """Half an interval after beep k: for each (k, ms) of `stalls` the workers stopped for ms; for
    each of `bursts` the talker's packets held ms, then sent at once."""
    done = []
    for k, ms, kind in sorted([*((k, ms, "stall") for k, ms in stalls), *((k, ms, "burst") for k, ms in bursts)]):
        await asyncio.sleep(max(0.0, (since_ns + (k + 0.5) * interval * NS - time.time_ns()) / NS))
        if kind == "stall":
            done.append({"beep": k, "kind": kind, **await asyncio.to_thread(stall, pids, ms)})
        else:
            done.append({"beep": k, "kind": kind, "at_ns": time.time_ns(), "ms": ms})
            await legs.hold(max(1, round(ms / 20)))
    return done


def start_hogs(python: str, n: int) -> list[subprocess.Popen]:
    """`n` busy loops (CPU hogs), stopped by `stop_hogs` by PID."""
    return [subprocess.Popen([python, "-c", "while True: pass"]) for _ in range(n)]


def stop_hogs(hogs: list[subprocess.Popen]) -> None:
    for h in hogs:
        h.kill()
        h.wait()


def jitter_report(log: Path, sent: list[int], heard: list[int], since_ns: int, window_ns: int) -> dict[str, Any]:
    """The talker leg's jitter buffer beside each beep, its counters over the beeps, the workers'
    threads' waits for a core (from the `sip.media_trace` lines of `log`)."""
    recs = media_trace.read_trace(log)
    series = media_trace.leg_series(recs, "talker@")
    pairs = [p for p in pair_onsets(sent, heard, window_ns) if p[0] >= since_ns]
    beeps = [{**b, "t_s": round((b["sent_ns"] - since_ns) / NS, 2)} for b in media_trace.per_beep(pairs, series)]
    pid = next((r.get("pid") for r in recs if any("talker@" in str(c.get("uri")) for c in (r.get("calls") or {}).values())),
               None)
    held = [jb["held_ms"] for t, jb in series if t >= since_ns]
    return {"trace_samples": len(series), "jb_per_beep": beeps,
            "jb_held_ms_max": max(held) if held else None,
            **{f"jb_{k}": v for k, v in media_trace.counters(series, since_ns).items()},
            "talker_worker_threads": media_trace.thread_waits(recs, since_ns, pid)}


async def run_once(confs: int, size: int, a: argparse.Namespace, cpw: int,
                   variant: tuple[str, list[str]] = ("", [])) -> dict[str, Any]:
    n = confs * size
    if a.span:
        # the home worker takes cpw-1 members (one slot kept for a trunk); the next takes the trunk,
        # then cpw-2 (at least 1): the listener, added last, is on the second worker
        cpw = min(cpw, math.ceil((size + 3) / 2) if size > 2 else 2)
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-conf-{confs}x{size}-"))
    max_workers = math.ceil(n / cpw) + 2
    gw = GatewayProcess(workdir, python=a.python, max_workers=max_workers, warm=1, cpw=cpw,
                        max_in_flight=max(32, 2 * n), log_level=a.log_level, rtp_base=10000,
                        build=a.build, rtp_ports_per_worker=max(RTP_PORTS_PER_WORKER, 2 * cpw))
    sets = [*a.set, *variant[1], *([f"sip.media_trace_ms={a.trace_ms}"] if a.trace_ms else [])]
    for kv in sets:
        gw.args += ["--set", kv]
    if a.nice:  # the gateway and every worker it starts (they inherit it)
        gw.args = ["nice", "-n", str(a.nice), *gw.args]
    res: dict[str, Any] = {"build": a.build, "layout": f"{confs}x{size}", "span": a.span, "nice": a.nice, "members": n,
                           "variant": variant[0], "sets": sets,
                           "calls_per_worker": cpw, "max_workers": max_workers, "workdir": str(workdir)}
    every = max(10, round(a.beep_interval * 50))
    legs = MeasuringLegs(a.python, every)
    uas = SippUas(UAS_HOLD, calls=n - 2, timeout_s=a.steady + a.beeps * a.beep_interval + 300,
                  echo=False) if n > 2 else None
    client: GatewayClient | None = None
    tasks: list[asyncio.Task] = []
    hogs: list[subprocess.Popen] = []
    try:
        try:
            res["gateway_start_s"] = round(gw.start(), 2)
        except RuntimeError:
            if "already in use" in (workdir / "gateway.log").read_text(errors="replace")[-2000:]:
                raise PortTaken(str(workdir)) from None
            raise
        await legs.start()
        if uas:
            await uas.start()
        assert gw.proc is not None
        client = await GatewayClient.connect(gw.url, TOKEN, call_timeout=60, client_name="bench-conferences",
                                             event_queue=100_000)
        await client.subscribe(client.hello.get("seq", 0))
        w = MemberWatch()
        tasks.append(asyncio.create_task(w.read(client)))
        cids = [(await client.call("conference.create", title=f"bench {i}"))["conference_id"]
                for i in range(confs)]
        # member j of conference i; conference 0 has the talker first and the listener last
        last = (0, size - 1)
        plan = [(i, j) for j in range(size) for i in range(confs) if (i, j) not in ((0, 0), last)]
        targets = {(0, 0): legs.talker_uri, last: legs.listener_uri}
        members: dict[tuple[int, int], dict] = {}
        errors: dict[str, int] = {}

        async def add(i: int, j: int) -> None:
            target = targets.get((i, j), f"sip:m{i}-{j}@127.0.0.1:{uas.port if uas else 9}")
            try:
                members[(i, j)] = await client.call("conference.add", conference_id=cids[i], target=target)
            except RemoteError as e:
                errors[e.reason] = errors.get(e.reason, 0) + 1

        s0 = sample(process_tree(gw.proc.pid))
        t0 = time.monotonic()
        await add(0, 0)
        if a.span:
            await asyncio.gather(*(add(i, j) for i, j in plan))
            await add(*last)
        else:
            await asyncio.gather(*(add(i, j) for i, j in [*plan, last]))
        res["add_replies_s"] = round(time.monotonic() - t0, 2)

        def joined() -> bool:
            return all(w.at(m["member_id"], "joined") or w.at(m["member_id"], "left") for m in members.values())

        settled = await w.until(joined, a.join_timeout)
        s1 = sample(process_tree(gw.proc.pid))
        since_ns = time.time_ns() + NS  # beeps sent from 1 s after everyone joined
        # disturbances from then on, during the steady CPU sample too (it is what they cost)
        hogs = start_hogs(a.python, a.hogs)
        stalling = asyncio.create_task(disturb(a.stall, a.burst, since_ns, a.beep_interval,
                                               process_tree(gw.proc.pid)[1:], legs))
        tasks.append(stalling)
        join = {k: w.at(m["member_id"], "joined") for k, m in members.items()}
        ok_join = [t - t0 for t in join.values() if t is not None]
        per_conf = [max(((join[(i, j)] or math.inf) - t0 for j in range(size) if (i, j) in join), default=math.inf)
                    for i in range(confs)]
        res.update({
            "settled": settled, "joined": len(ok_join), "add_errors": errors,
            "chain_workers": chain_length(workdir / "gateway.log", cids[0]),
            "all_joined_s": round(max(ok_join), 2) if ok_join else None,
            "join_s_p50": round(statistics.median(ok_join), 2) if ok_join else None,
            "conference_all_joined_s_p50": round(statistics.median(per_conf), 2),
            "join_cpu_cores": round((s1.cpu_s - s0.cpu_s) / (s1.t - s0.t), 3),
        })
        await asyncio.sleep(2)
        pids = process_tree(gw.proc.pid)
        a0 = sample(pids)
        await asyncio.sleep(a.steady)
        a1 = sample(pids)
        dt, main = a1.t - a0.t, gw.proc.pid
        mb, mt = a1.machine[0] - a0.machine[0], a1.machine[1] - a0.machine[1]
        res.update({
            "workers": a1.procs - 1,
            "steady_cpu_cores": round((a1.cpu_s - a0.cpu_s) / dt, 3),
            "steady_main_cpu_cores": round((a1.per_pid[main] - a0.per_pid.get(main, 0.0)) / dt, 3),
            "cpu_ms_per_member_s": round((a1.cpu_s - a0.cpu_s) / dt / max(1, len(ok_join)) * 1000, 2),
            "machine_busy_pct": round(100 * mb / mt, 1) if mt else None,
            "rss_mb": round(a1.rss_kb / 1024, 1), "pss_mb": round(a1.pss_kb / 1024, 1),
        })
        # the talker's beeps come every interval: wait for beeps + 1 of them after since_ns
        await asyncio.sleep(max(0.0, (since_ns - time.time_ns()) / NS + (a.beeps + 1) * a.beep_interval + 0.5))
        res["disturbances"] = [{**d, "t_s": round((d["at_ns"] - since_ns) / NS, 2)} for d in await stalling]
        stop_hogs(hogs)
        hogs = []
        got = await legs.finish()
        window = int(a.beep_interval * 0.9 * NS)
        res.update(delay_stats(got["sent_onsets"], got["heard_onsets"], since_ns, window))
        if a.trace_ms:
            res.update(jitter_report(workdir / "gateway.log", got["sent_onsets"], got["heard_onsets"], since_ns, window))
        late = sorted(got["send_late_ns"])
        res.update({"talker_realtime": got["talker_realtime"], "listener_frames": got["listener_frames"],
                    "talker_send_late_ms_p95": round(pct(late, 95) / 1e6, 1) if late else None,  # type: ignore[operator]
                    "talker_send_late_ms_max": round(late[-1] / 1e6, 1) if late else None})
        for cid in cids:
            with contextlib.suppress(RemoteError):
                await client.call("conference.end", conference_id=cid)
        res["all_left"] = await w.until(lambda: all(w.at(m["member_id"], "left") for m in members.values()), 60)
        if uas:
            sr = await uas.wait(30)
            res.update({"sipp_successful": sr["successful"], "sipp_failed": sr["failed"]})
        res["events_overflow"] = w.overflow
    finally:
        stop_hogs(hogs)
        await close_client(client, tasks)
        await legs.stop()
        if uas:
            await uas.stop()
        res["gateway_rc"] = await asyncio.to_thread(gw.stop)
    res["ok"] = (res.get("joined") == n and res.get("sipp_successful", 0) == max(0, n - 2)
                 and res.get("beeps_paired", 0) >= a.beeps * 0.9 and (not a.span or res["chain_workers"] >= 2))
    return res


def validate(delay_ms: float, a: argparse.Namespace) -> dict[str, Any]:
    """The method without the gateway: talker -> relay holding each datagram `delay_ms` -> listener."""
    every = max(10, round(a.beep_interval * 50))
    talker, listener, relay = RtpLeg(BeepPlan(lead=25, every=every)), RtpLeg(), RtpRelay(delay_ms)
    relay.start(("127.0.0.1", listener.port))
    listener.start(None)
    since = time.time_ns()
    talker.start(("127.0.0.1", relay.port))
    try:
        time.sleep((25 + every * a.beeps) * 0.02 + 0.5)
    finally:
        for x in (talker, relay, listener):
            x.stop()
    window = int(a.beep_interval * 0.9 * NS)
    r = {"inserted_ms": delay_ms, **delay_stats(talker.sent_onsets, listener.detector.onsets, since, window),
         "relay_realtime": relay.realtime}
    late = [x / 1e6 for x in relay.late_ns]
    r["relay_late_ms_p50"], r["relay_late_ms_max"] = (round(statistics.median(late), 2), round(max(late), 2)) if late else (None, None)
    # the error of each beep's reading: heard - sent, minus what the relay really held that packet
    seq_of = dict(zip(talker.sent_onsets, talker.onset_seqs))
    err = [(h - relay.forwarded[seq_of[s]]) / 1e6 for s, h in pair_onsets(talker.sent_onsets, listener.detector.onsets, window)
           if seq_of[s] in relay.forwarded]
    r.update({"error_ms_p50": round(statistics.median(err), 2) if err else None,
              "error_ms_p95": round(pct(err, 95), 2) if err else None,  # type: ignore[arg-type]
              "error_ms_max": round(max(err, key=abs), 2) if err else None})
    r["ok"] = (r["beeps_paired"] >= a.beeps and bool(err) and abs(r["error_ms_p50"]) < 1 and abs(r["error_ms_p95"]) < 3)
    return r


SUMMARY = [("joined", "joined"), ("all_joined_s", "all joined s"), ("join_s_p50", "join p50 s"),
           ("conference_all_joined_s_p50", "conf joined p50 s"), ("join_cpu_cores", "join CPU"),
           ("workers", "workers"), ("chain_workers", "chain"), ("steady_cpu_cores", "steady CPU"),
           ("cpu_ms_per_member_s", "CPU ms/member/s"), ("steady_main_cpu_cores", "main proc CPU"),
           ("pss_mb", "PSS MB"), ("delay_ms_p50", "delay p50 ms"), ("delay_ms_p95", "delay p95 ms"),
           ("beeps_paired", "beeps"), ("heard_unpaired", "unpaired"), ("jb_held_ms_max", "jb held max ms"),
           ("jb_discard", "jb discarded"), ("jb_lost", "jb lost"), ("jb_empty", "jb empty")]


def summary(results: dict[str, list[dict]]) -> str:
    """Medians over runs of each per-run figure, and the p50/p95 of every run's beeps together."""
    lines = ["| layout | runs ok | " + " | ".join(h for _, h in SUMMARY) + " | all beeps p50 / p95 ms |",
             "|" + "---|" * (len(SUMMARY) + 3)]
    for lay, rs in results.items():
        cells = []
        for k, _ in SUMMARY:
            vals = [r[k] for r in rs if isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)]
            cells.append(f"{statistics.median(vals):g}" if vals else "-")
        pooled = [d for r in rs for d in r.get("delays_ms", [])]
        both = f"{statistics.median(pooled):.1f} / {pct(pooled, 95):.1f}" if pooled else "-"
        lines.append(f"| {lay} | {sum(bool(r['ok']) for r in rs)}/{len(rs)} | " + " | ".join(cells) + f" | {both} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.conferences", description=__doc__.split("\n")[0])
    ap.add_argument("--layout", default="1x50,1x2,10x5", help="comma-separated CxM: C conferences of M members")
    ap.add_argument("--span", action="store_true", help="conference 0 on two workers (layouts 1xM only)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--build", default="auto", help="DISPATCH_GATEWAY_PJSUA2 of the gateway: source, wheel, auto")
    ap.add_argument("--steady", type=float, default=10.0)
    ap.add_argument("--join-timeout", type=float, default=60.0)
    ap.add_argument("--beep-interval", type=float, default=1.0)
    ap.add_argument("--beeps", type=int, default=20, help="beeps measured a run, from 1 s after all joined")
    ap.add_argument("--nice", type=int, default=0, help="run the gateway and its workers at this nice value")
    ap.add_argument("--validate", default=None, help="comma-separated ms: the method through a relay, no gateway")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a gateway config override for every run (as `serve --set`)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME[:KEY=VALUE,...]",
                    help="run each layout once per variant in turn (side by side), with these overrides")
    ap.add_argument("--trace-ms", type=int, default=0,
                    help="sip.media_trace_ms: report the talker leg's jitter buffer beside each beep")
    ap.add_argument("--stall", default="", metavar="K:MS,...",
                    help="SIGSTOP the gateway's workers for MS ms half an interval after beep K")
    ap.add_argument("--burst", default="", metavar="K:MS,...",
                    help="the talker holds its packets MS ms, then sends them at once, half an interval after beep K")
    ap.add_argument("--hogs", type=int, default=0, help="CPU busy loops running while the beeps are measured")
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--json", default=None, help="append each run's result to this JSONL file")
    a = ap.parse_args(argv)
    a.stall, a.burst = ([(int(k), float(ms)) for k, ms in (x.split(":") for x in v.split(",") if x)]
                        for v in (a.stall, a.burst))
    variants = [(v.partition(":")[0], [kv for kv in v.partition(":")[2].split(",") if kv]) for v in a.variant] or [("", [])]
    info = machine_info()
    if a.validate is not None:
        rows = []
        for _ in range(a.repeat):
            for d in (float(x) for x in a.validate.split(",")):
                rows.append(validate(d, a))
                print(json.dumps(rows[-1]), flush=True)
        print("\n| inserted ms | read p50 ms | p95 | min | max | beeps | relay late p50 / max ms | error p50 / p95 / max ms |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['inserted_ms']:g} | {r['delay_ms_p50']} | {r['delay_ms_p95']} | {r['delay_ms_min']} "
                  f"| {r['delay_ms_max']} | {r['beeps_paired']} | {r['relay_late_ms_p50']} / {r['relay_late_ms_max']} "
                  f"| {r['error_ms_p50']} / {r['error_ms_p95']} / {r['error_ms_max']} |")
        return 0 if all(r["ok"] for r in rows) else 1
    layouts = [tuple(int(v) for v in x.split("x")) for x in a.layout.split(",")]
    if any(m < 2 for _, m in layouts):
        ap.error("conference 0 needs at least 2 members (talker and listener)")
    if a.span and any(c != 1 for c, _ in layouts):
        ap.error("--span takes layouts of one conference (1xM)")
    cpw = probe_calls_per_worker(a.python, a.build, limit=max([64, *(c * m for c, m in layouts)]))
    print(json.dumps({"machine": info, "calls_per_worker": cpw, "build": a.build, "span": a.span,
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}), flush=True)
    results: dict[str, list[dict]] = {}
    for _ in range(a.repeat):
        for (c, m), v in ((lay, v) for lay in layouts for v in variants):
            for attempt in range(3):  # ports found free may be taken before the gateway binds them
                try:
                    r = asyncio.run(run_once(c, m, a, cpw, v))
                    break
                except PortTaken:
                    if attempt == 2:
                        raise
            results.setdefault(f"{c}x{m}" + (" span" if a.span else "") + (f" nice {a.nice}" if a.nice else "")
                               + (f" {v[0]}" if v[0] else ""), []).append(r)
            print(json.dumps(r), flush=True)
            if a.json:
                with open(a.json, "a") as f:
                    f.write(json.dumps({**r, "machine": info}) + "\n")
    print("\n" + summary(results))
    return 0 if all(r["ok"] for rs in results.values() for r in rs) else 1


if __name__ == "__main__":
    sys.exit(main())
