"""Benchmark: broadcast fan-out to N SIP speakers, and console-microphone-to-speaker delay.

    python -m benchmarks.broadcast --targets 50,100,200 --repeat 2 --pace 20
    python -m benchmarks.broadcast --targets 0 --speakers 3 --repeat 3   # console -> speaker delay only
    python -m benchmarks.broadcast --targets 200,500 --builds source --pace 2000 --repeat 3 --bare

Everything on 127.0.0.1; every process started here is stopped here by PID. The gateway process,
the SIPp UAS (own scenario, -rtp_echo), /proc sampling and the machine description are reused
from `benchmarks.sip_calls`.

Fan-out (one run per size N):
1. Gateway as its own process: sip.proxy none, sip.max_workers = ceil(N / calls_per_worker) + 2,
   sip.rtp_port_base --rtp-port-base (10000), broadcast.invite_pace_per_s = --pace, broadcast.answer_timeout_s =
   --answer-timeout, broadcast.chime false. One SIPp UAS answers every call (100, 200+SDP, holds
   until BYE) and echoes RTP.
2. `broadcast.start` with N distinct URIs `sip:spk<i>@127.0.0.1:<sipp port>` and a tone source
   long enough to outlast the fan-out. Times are taken from `broadcast.start` sent:
   every target `connected` (`broadcast.target` events), and when the audio pump started. The
   pump start is not an event: the broadcast's recording (`<data_dir>/recordings/<id>.wav`) is
   created when its first 1 s chunk is written, so pump start = file appears - 1.0 s (the file
   is polled every 10 ms).
3. CPU (utime+stime) of gateway + workers from `broadcast.start` to all connected, and apart:
   the gateway process, the workers, SIPp and this client (who had the cores during the fan-out)
   with the whole machine's busy %; then over --steady seconds with every target connected and
   the tone flowing; RSS/PSS at the end of that.
4. `broadcast.stop`, wait for the `ended` state, check that SIPp counted N successful calls and
   that the pump sent as many frames as real time allows (`frames_sent` from `broadcast.get`).
   A run is `ok` when every target was connected at the gateway AND SIPp counted every call
   successful (--sipp-trace: SIPp logs every message, to find out why one was not).
5. With --bare, the same N calls from bare pjsua2 (benchmarks.pjsua2_fanout --answered --hangup:
   one process, a worker's media settings, every INVITE at once, sendonly) to a SIPp UAS of its
   own right after: its time to all CONFIRMED, its CPU and SIPp's, then BYE to every call and
   SIPp's count (`ok` likewise: all CONFIRMED and all counted by SIPp); `gateway / bare` = the
   gateway's all-connected time over that.

Console microphone to speaker delay (--speakers K), on one clock: this process is the console and
holds K raw RTP speakers (benchmarks.rtp_member `SipUas` + `RtpLeg`: SIP UASes that answer the
paging call's sendonly offer recvonly, decode every PCMU packet and time onsets at the kernel's
receive timestamp, SO_TIMESTAMPNS). A live broadcast (`source {"type": "live"}`, no chime) to the
K speakers, `media.open {broadcast_id}` at 16 kHz; the console sends 20 ms frames of silence on an
absolute schedule over the control channel and, from 1 s after every speaker is connected, a 60 ms
1 kHz cosine beep (full amplitude on the first sample of its first frame) every --beep-interval s.
A beep is sent at CLOCK_REALTIME read just before the WebSocket send of its first frame; heard at
the receive timestamp of the speaker's packet holding the first sample over 1/16 full scale after
>= 200 ms of quiet, plus that sample's offset (benchmarks.beep_delay, as for conferences): both
on this host's one clock. Each heard onset is paired with the last beep sent before it (within
0.9 of an interval).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import media_trace
from benchmarks.sip_calls import (
    CLK_TCK,
    TOKEN,
    UAS_HOLD,
    GatewayProcess,
    ROOT,
    SippUas,
    _cpu_ticks,
    build_env,
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

RATE = 16000
FRAME_BYTES = 640  # 20 ms at 16 kHz
SILENCE = bytes(FRAME_BYTES)


class BroadcastWatch:
    """broadcast.target / broadcast.state events of one broadcast, with arrival times."""

    def __init__(self) -> None:
        self.bid: str | None = None
        self.early: list[dict] = []
        self.targets: dict[str, list[tuple[str, float, dict]]] = {}
        self.states: list[tuple[str, float, dict]] = []
        self.changed = asyncio.Event()
        self.overflow = 0

    async def read(self, client: GatewayClient) -> None:
        async for ev in client.events():
            t = time.monotonic()
            if ev.get("type") == "events.overflow":
                self.overflow += 1
            if ev.get("type") not in ("broadcast.target", "broadcast.state"):
                continue
            d = dict(ev["data"], _t=t, _type=ev["type"])
            if self.bid is None:
                self.early.append(d)
            else:
                self._take(d)
            self.changed.set()

    def own(self, bid: str) -> None:
        self.bid = bid
        for d in self.early:
            self._take(d)
        self.early.clear()

    def _take(self, d: dict) -> None:
        if d.get("broadcast_id") != self.bid:
            return
        if d["_type"] == "broadcast.state":
            self.states.append((d["state"], d["_t"], d))
        else:
            self.targets.setdefault(d["target"], []).append((d["state"], d["_t"], d))

    def first(self, target: str, state: str) -> float | None:
        return next((t for s, t, _ in self.targets.get(target, ()) if s == state), None)

    def last_state(self, target: str) -> str | None:
        lst = self.targets.get(target)
        return lst[-1][0] if lst else None

    def ended(self) -> dict | None:
        return next((d for s, _, d in self.states if s == "ended"), None)

    async def until(self, pred: Any, timeout: float) -> bool:
        return await wait_until(self.changed, pred, timeout, tick=0.5)


def _cores(s0: Any, s1: Any, pids: list[int]) -> float:
    """CPU cores used by `pids` between two samples (a pid born in between counts from 0)."""
    return sum(s1.per_pid.get(p, 0.0) - s0.per_pid.get(p, 0.0) for p in pids) / (s1.t - s0.t)


def _busy_pct(s0: Any, s1: Any) -> float | None:
    busy, total = s1.machine[0] - s0.machine[0], s1.machine[1] - s0.machine[1]
    return round(100 * busy / total, 1) if total else None


async def _appears(path_fn: Any, every: float, timeout: float) -> float | None:
    """Poll until path_fn() returns a truthy path; the monotonic time it was first seen."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path_fn():
            return time.monotonic()
        await asyncio.sleep(every)
    return None


def _gateway(workdir: Path, a: argparse.Namespace, cpw: int, max_workers: int) -> GatewayProcess:
    build = getattr(a, "build", "auto")
    gw = GatewayProcess(workdir, python=a.python, max_workers=max_workers, warm=a.warm, cpw=cpw,
                        max_in_flight=32, log_level=a.log_level, rtp_base=a.rtp_port_base, build=build,
                        rtp_ports_per_worker=max(RTP_PORTS_PER_WORKER, 2 * cpw + 100))  # slack: ports of failed calls until freed
    for k, v in {"broadcast.invite_pace_per_s": a.pace, "broadcast.answer_timeout_s": a.answer_timeout,
                 "broadcast.chime": "false"}.items():
        gw.args += ["--set", f"{k}={v}"]
    return gw


# ---- fan-out --------------------------------------------------------------------------------


async def fanout_once(n: int, a: argparse.Namespace, cpw: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-bcast-{n}-"))
    max_workers = math.ceil(n / cpw) + 2
    gw = _gateway(workdir, a, cpw, max_workers)
    tone_s = math.ceil(n / a.pace + a.answer_timeout + a.steady + 30)
    res: dict[str, Any] = {"kind": "fanout", "build": getattr(a, "build", "auto"), "targets": n, "pace_per_s": a.pace, "max_workers": max_workers,
                           "tone_s": tone_s, "workdir": str(workdir)}
    uas = SippUas(UAS_HOLD, calls=n, timeout_s=tone_s + 120, echo=not a.no_echo, trace=a.sipp_trace)
    client: GatewayClient | None = None
    tasks: list[asyncio.Task] = []
    try:
        res["gateway_start_s"] = round(gw.start(), 2)
        await uas.start()
        assert gw.proc is not None
        await asyncio.sleep(2)
        idle = sample(process_tree(gw.proc.pid))
        client = await GatewayClient.connect(gw.url, TOKEN, call_timeout=60, client_name="bench-broadcast",
                                             event_queue=100_000, audio_queue=1000)
        await client.subscribe(client.hello.get("seq", 0))
        w = BroadcastWatch()
        tasks.append(asyncio.create_task(w.read(client)))
        targets = [f"sip:spk{i}@127.0.0.1:{uas.port}" for i in range(n)]

        others = [uas.proc.pid if uas.proc else -1, os.getpid()]  # SIPp, this client
        s0 = sample(process_tree(gw.proc.pid) + others)
        t0 = time.monotonic()
        b = await client.call("broadcast.start", targets=targets, chime=False,
                              source={"type": "tone", "frequency": 1000, "seconds": tone_s})
        t_reply = time.monotonic()
        bid = b["broadcast_id"]
        w.own(bid)
        rec_path = workdir / "data" / "recordings" / f"{bid}.wav"
        file_seen = asyncio.create_task(_appears(rec_path.exists, 0.01, a.answer_timeout + n / a.pace + 30))
        tasks.append(file_seen)
        peak_rss = [0]

        async def rss_peak() -> None:
            while True:
                peak_rss[0] = max(peak_rss[0], sample(process_tree(gw.proc.pid)).rss_kb)
                await asyncio.sleep(0.5)
        tasks.append(asyncio.create_task(rss_peak()))

        def settled() -> bool:
            return all(w.last_state(u) in ("connected", "failed", "busy", "ended") for u in targets)

        ok = await w.until(settled, n / a.pace + a.answer_timeout + 60)
        gw_pids = process_tree(gw.proc.pid)
        s1 = sample(gw_pids + others)
        conn = {u: w.first(u, "connected") for u in targets}
        up = [t - t0 for t in conn.values() if t is not None]
        failures: dict[str, int] = {}
        for u in targets:
            if conn[u] is None:
                k = f"{w.last_state(u)}"
                failures[k] = failures.get(k, 0) + 1
        retried = sum(1 for u in targets if (w.targets.get(u) or [("", 0, {})])[-1][2].get("attempts", 1) > 1)
        t_file = await file_seen
        pump = (t_file - 1.0 - t0) if t_file else None
        res.update({
            "settled": ok, "connected": len(up), "failed": n - len(up), "failures": failures,
            "retried_targets": retried,
            "start_reply_ms": round((t_reply - t0) * 1000, 1),
            "first_connected_s": round(min(up), 2) if up else None,
            "all_connected_s": round(max(up), 2) if up else None,
            "connect_s_p50": round(statistics.median(up), 2) if up else None,
            "active_state_s": next((round(t - t0, 2) for s, t, _ in w.states if s == "active"), None),
            "pump_started_s": round(pump, 2) if pump is not None else None,
            "fanout_cpu_cores": round(_cores(s0, s1, gw_pids), 3),
            "fanout_wall_s": round(s1.t - s0.t, 2),
            # who had the 2 cores from broadcast.start to the last target connected
            "fanout_main_cpu_cores": round(_cores(s0, s1, [gw.proc.pid]), 3),
            "fanout_workers_cpu_cores": round(_cores(s0, s1, [p for p in gw_pids if p != gw.proc.pid]), 3),
            "fanout_sipp_cpu_cores": round(_cores(s0, s1, others[:1]), 3),
            "fanout_client_cpu_cores": round(_cores(s0, s1, others[1:]), 3),
            "fanout_machine_busy_pct": _busy_pct(s0, s1),
            "idle_rss_mb": round(idle.rss_kb / 1024, 1),
        })
        # steady: everyone connected, tone flowing
        await asyncio.sleep(2)
        pids = process_tree(gw.proc.pid)
        sipp0 = _cpu_ticks(uas.proc.pid) / CLK_TCK if uas.proc else 0.0
        a0 = sample(pids)
        await asyncio.sleep(a.steady)
        a1 = sample(pids)
        sipp1 = _cpu_ticks(uas.proc.pid) / CLK_TCK if uas.proc else 0.0
        dt = a1.t - a0.t
        main = gw.proc.pid
        mb, mt = a1.machine[0] - a0.machine[0], a1.machine[1] - a0.machine[1]
        res.update({
            "workers": a1.procs - 1,
            "steady_cpu_cores": round((a1.cpu_s - a0.cpu_s) / dt, 3),
            "steady_main_cpu_cores": round((a1.per_pid[main] - a0.per_pid.get(main, 0.0)) / dt, 3),
            "steady_workers_cpu_cores": round(sum(a1.per_pid[p] - a0.per_pid.get(p, 0.0)
                                                  for p in pids if p != main) / dt, 3),
            "machine_busy_pct": round(100 * mb / mt, 1) if mt else None,
            "sipp_cpu_cores": round((sipp1 - sipp0) / dt, 3),
            "rss_mb": round(a1.rss_kb / 1024, 1), "pss_mb": round(a1.pss_kb / 1024, 1),
            "peak_rss_mb": round(max(peak_rss[0], a1.rss_kb) / 1024, 1),
            "udp_in_per_s": round((a1.udp_in - a0.udp_in) / dt),
            "dropped_before_stop": sum(1 for u in targets if conn[u] and w.last_state(u) != "connected"),
        })
        t_stop = time.monotonic()
        try:
            await client.call("broadcast.stop", broadcast_id=bid)
        except RemoteError as e:  # ended by itself (the tone ran out): reported, not a crash
            res["stop_error"] = e.reason
        ended = await w.until(lambda: w.ended() is not None, 60)
        res["stop_to_ended_s"] = round(time.monotonic() - t_stop, 2)
        res["ended"] = ended
        with contextlib.suppress(RemoteError):
            g = await client.call("broadcast.get", broadcast_id=bid)
            res["end_reason"] = g.get("end_reason")
            fs = g.get("frames_sent")
            if fs is not None and pump is not None:
                res["frames_sent"] = fs
                res["frames_expected"] = round((t_stop - t0 - pump) / 0.02)
                res["frames_realtime_pct"] = round(100 * fs / max(1, res["frames_expected"]), 1)
        sr = await uas.wait(30)
        res.update(_sipp_counts(sr, uas))
        res["events_overflow"] = w.overflow
    finally:
        await close_client(client, tasks)
        await uas.stop()
        res["gateway_rc"] = await asyncio.to_thread(gw.stop)
    res["ok"] = res.get("connected") == n and res.get("sipp_successful") == n
    return res


async def bare_once(n: int, a: argparse.Namespace) -> dict[str, Any]:
    """Bare pjsua2 doing the fan-out's calls without the gateway (benchmarks.pjsua2_fanout
    --answered), against a SIPp UAS of its own like the one the gateway run had."""
    build = getattr(a, "build", "auto")
    res: dict[str, Any] = {"kind": "bare", "build": build, "targets": n}
    uas = SippUas(UAS_HOLD, calls=n, timeout_s=180, echo=not a.no_echo, trace=a.sipp_trace)
    try:
        await uas.start()
        assert uas.proc is not None
        proc = await asyncio.create_subprocess_exec(
            a.python, "-m", "benchmarks.pjsua2_fanout", "--calls", str(n), "--hangup", "--answered",
            f"127.0.0.1:{uas.port}", "--sipp-pid", str(uas.proc.pid), "--rtp-port", str(a.rtp_port_base),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT, env=build_env(build))
        out, err = await asyncio.wait_for(proc.communicate(), 180)
        lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
        res.update(json.loads(lines[-1]) if lines else {"error": err.decode(errors="replace")[-300:]})
        sr = await uas.wait(15)  # every call ended by a BYE: SIPp's own count
        res.update(_sipp_counts(sr, uas))
    finally:
        await uas.stop()
    res["ok"] = res.get("confirmed") == n and res.get("sipp_successful") == n
    return res


def _sipp_counts(sr: dict[str, Any], uas: SippUas) -> dict[str, Any]:
    """SIPp's view of a run: calls it counted successful and failed, its first errors, its trace."""
    out: dict[str, Any] = {"sipp_successful": sr["successful"], "sipp_failed": sr["failed"], "sipp_rc": sr["rc"]}
    if sr["errors"].strip():
        out["sipp_errors_head"] = sr["errors"].strip().splitlines()[:3]
    if uas.trace:
        out["sipp_messages"] = str(uas.messages)
    return out


# ---- delay spot check -------------------------------------------------------------------------


def beep_frames(ms: int = 60, freq: float = 1000.0, amp: float = 0.4) -> list[bytes]:
    """A 1 kHz cosine at 16 kHz PCM16, `ms` long, in 20 ms frames: it starts at full amplitude on
    the first sample of its first frame (no rising edge under the detector's threshold)."""
    import numpy as np

    n = np.arange(RATE * ms // 1000)
    pcm = (np.cos(2 * np.pi * freq * n / RATE) * amp * 32767).astype("<i2").tobytes()
    pcm += bytes((-len(pcm)) % FRAME_BYTES)
    return [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]


async def console_tx(client: GatewayClient, ch: int, beeps: dict[int, int], sent: list[int], late: list[float],
                     stop: asyncio.Event) -> None:
    """The console's microphone: a 20 ms frame on an absolute schedule, silence or the beep whose
    first frame is due (`beeps`: frame index -> beep number). A beep is sent at the time read
    (CLOCK_REALTIME) just before the WebSocket send of its first frame."""
    beep = beep_frames()
    loop = asyncio.get_running_loop()
    start, i, first = loop.time(), 0, -len(beep)
    while not stop.is_set():
        late.append(max(0.0, loop.time() - (start + i * 0.02)))
        if i in beeps:
            first = i
        frame = beep[i - first] if i - first < len(beep) else SILENCE
        if i == first:
            sent.append(time.time_ns())
        await client.send_audio(ch, i, i * (FRAME_BYTES // 2), frame)
        i += 1
        wait = start + i * 0.02 - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)


async def delay_once(a: argparse.Namespace, cpw: int) -> dict[str, Any]:
    """Console microphone to speaker on one clock: this process is the console (a live broadcast,
    `media.open`, 16 kHz frames over the control channel) and holds --speakers raw RTP speakers
    (benchmarks.rtp_member: a SIP UAS answering the paging call recvonly, onsets timed at the
    kernel's receive timestamp). Sent and heard are read from this host's CLOCK_REALTIME."""
    from benchmarks.beep_delay import NS, pair_delays
    from benchmarks.rtp_member import RtpLeg, SipUas

    workdir = Path(tempfile.mkdtemp(prefix="bench-bcast-delay-"))
    gw = _gateway(workdir, a, cpw, max_workers=math.ceil(a.speakers / cpw) + 2)
    if a.trace_ms:
        gw.args += ["--set", f"sip.media_trace_ms={a.trace_ms}"]
    res: dict[str, Any] = {"kind": "delay", "speakers": a.speakers, "beeps": a.beeps, "workdir": str(workdir)}
    speakers = [SipUas(f"spk{i}", RtpLeg()) for i in range(a.speakers)]
    client: GatewayClient | None = None
    tasks: list[asyncio.Task] = []
    stop_tx = asyncio.Event()
    sent: list[int] = []
    late: list[float] = []
    try:
        res["gateway_start_s"] = round(gw.start(), 2)
        client = await GatewayClient.connect(gw.url, TOKEN, call_timeout=60, client_name="bench-broadcast-delay")
        await client.subscribe(client.hello.get("seq", 0))
        w = BroadcastWatch()
        tasks.append(asyncio.create_task(w.read(client)))
        uris = [p.uri for p in speakers]
        t0 = time.monotonic()
        b = await client.call("broadcast.start", targets=uris, chime=False, source={"type": "live"})
        bid = b["broadcast_id"]
        w.own(bid)
        ch = (await client.call("media.open", broadcast_id=bid, rate=RATE))["channel"]
        beeps: dict[int, int] = {}
        tasks.append(asyncio.create_task(console_tx(client, ch, beeps, sent, late, stop_tx)))
        ok = await w.until(lambda: all(w.last_state(u) == "connected" for u in uris), 60)
        res["all_connected_s"] = round(max((w.first(u, "connected") or t0) for u in uris) - t0, 2)
        await asyncio.sleep(1.0)
        since = time.time_ns()
        base, step = len(late) + 5, round(a.beep_interval / 0.02)
        beeps.update({base + k * step: k for k in range(a.beeps)})
        await asyncio.sleep((5 + a.beeps * step) * 0.02 + 1.0)
        stop_tx.set()
        await client.call("broadcast.stop", broadcast_id=bid)
        await w.until(lambda: w.ended() is not None, 30)
        window = int(a.beep_interval * 0.9 * NS)
        per, delays = [], []
        for p in speakers:
            d = [x / 1e6 for x in pair_delays([t for t in sent if t >= since], p.leg.detector.onsets, window)]
            per.append({"uri": p.uri, "frames": p.leg.frames_received, "heard": len(p.leg.detector.onsets),
                        "delay_ms": [round(v, 1) for v in d]})
            delays += d
        if a.trace_ms:  # frames waiting in the worker's stream queue just before each beep was sent
            series = media_trace.playout_series(media_trace.read_trace(workdir / "gateway.log"))
            res["stream_queued_frames"] = [(jb or {}).get("frames") for jb in
                                           (media_trace.at_or_before(series, t) for t in sent if t >= since)]
        res.update({"ok": ok and len(delays) >= 0.9 * a.beeps * a.speakers, "per_speaker": per,
                    "beeps_sent": len(sent), "delays": len(delays),
                    "delay_ms_p50": round(statistics.median(delays), 1) if delays else None,
                    "delay_ms_p95": round(pct(delays, 95), 1) if delays else None,  # type: ignore[arg-type]
                    "delay_ms_min": round(min(delays), 1) if delays else None,
                    "delay_ms_max": round(max(delays), 1) if delays else None,
                    "console_send_late_ms_p95": round(pct(late, 95) * 1000, 1) if late else None,  # type: ignore[operator]
                    "console_send_late_ms_max": round(max(late) * 1000, 1) if late else None})
    finally:
        stop_tx.set()
        await close_client(client, tasks)
        for p in speakers:
            p.stop()
        res["gateway_rc"] = await asyncio.to_thread(gw.stop)
    return res


# ---- main -----------------------------------------------------------------------------------

SUMMARY = [("connected", "connected"), ("start_reply_ms", "start reply ms"),
           ("first_connected_s", "first conn s"), ("connect_s_p50", "p50 conn s"),
           ("all_connected_s", "all conn s"), ("pump_started_s", "pump start s"),
           ("frames_realtime_pct", "frames % of real time"), ("workers", "workers"),
           ("fanout_cpu_cores", "fan-out CPU"), ("fanout_main_cpu_cores", "fan-out main CPU"),
           ("fanout_workers_cpu_cores", "fan-out workers CPU"), ("fanout_sipp_cpu_cores", "fan-out SIPp CPU"),
           ("fanout_client_cpu_cores", "fan-out client CPU"), ("fanout_machine_busy_pct", "fan-out machine busy %"),
           ("bare_all_confirmed_s", "bare pjsua2 all conn s"), ("bare_cpu_cores", "bare pjsua2 CPU"),
           ("bare_sipp_cpu_cores", "bare SIPp CPU"), ("gateway_over_bare", "gateway / bare"),
           ("steady_cpu_cores", "steady CPU"),
           ("steady_main_cpu_cores", "main proc CPU"), ("machine_busy_pct", "machine busy %"),
           ("peak_rss_mb", "peak RSS MB"), ("pss_mb", "PSS MB"), ("sipp_successful", "SIPp ok"),
           ("bare_sipp_successful", "bare SIPp ok")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.broadcast", description=__doc__.split("\n")[0])
    ap.add_argument("--targets", default="50,100,200", help="comma-separated fan-out sizes (0: none)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--pace", type=float, default=20.0, help="broadcast.invite_pace_per_s")
    ap.add_argument("--answer-timeout", type=float, default=60.0, help="broadcast.answer_timeout_s")
    ap.add_argument("--steady", type=float, default=10.0)
    ap.add_argument("--warm", type=int, default=2)
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--speakers", type=int, default=0, help="raw RTP speakers for the console-to-speaker "
                    "delay (0: skip)")
    ap.add_argument("--beeps", type=int, default=20)
    ap.add_argument("--trace-ms", type=int, default=0, help="sip.media_trace_ms: with --speakers, the frames "
                    "queued in the worker's stream queue before each beep")
    ap.add_argument("--beep-interval", type=float, default=1.0)
    ap.add_argument("--no-echo", action="store_true", help="the SIPp UASes send no RTP back (a sendonly "
                    "speaker's side: the echo is the benchmark's, and it lands in the dialling worker)")
    ap.add_argument("--bare", action="store_true", help="after each fan-out, the same calls from bare pjsua2 "
                    "(benchmarks.pjsua2_fanout --answered) to a SIPp of its own: the gateway's share")
    ap.add_argument("--rtp-port-base", type=int, default=10000, help="sip.rtp_port_base (and the bare run's "
                    "first RTP port): move it when other gateways on the machine use 10000 and up")
    ap.add_argument("--sipp-trace", action="store_true", help="SIPp UASes log every message (-trace_msg); "
                    "the run's result names the file (sipp_messages)")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--json", default=None, help="append each run's result to this JSONL file")
    ap.add_argument("--builds", default="auto", help="pjsua2 builds side by side, e.g. source,wheel "
                    "(DISPATCH_GATEWAY_PJSUA2; the source build probes up to the largest size)")
    a = ap.parse_args(argv)
    sizes = [int(x) for x in a.targets.split(",") if int(x) > 0]
    builds = a.builds.split(",")
    info = machine_info()
    cpws = {b: probe_calls_per_worker(a.python, b, limit=max([64, *sizes]) if b != "wheel" else 64)
            for b in builds}
    print(json.dumps({"machine": info, "calls_per_worker": cpws,
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}), flush=True)
    results: dict[tuple[str, int], list[dict]] = {}
    all_ok = True

    def emit(r: dict) -> None:
        print(json.dumps(r), flush=True)
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps({**r, "machine": info}) + "\n")

    for size in sizes:
        for _ in range(a.repeat):
            for b in builds:
                a.build = b
                r = asyncio.run(fanout_once(size, a, cpws[b]))
                if a.bare:
                    bare = asyncio.run(bare_once(size, a))
                    emit(bare)
                    all_ok &= bool(bare.get("ok"))  # every call confirmed, and counted by SIPp
                    r["bare_sipp_successful"] = bare.get("sipp_successful")
                    if bare.get("confirmed") == size:
                        r.update({"bare_all_confirmed_s": bare["all_confirmed_s"], "bare_cpu_cores": bare["cpu_cores"],
                                  "bare_sipp_cpu_cores": bare["sipp_cpu_cores"]})
                        if r.get("all_connected_s"):
                            r["gateway_over_bare"] = round(r["all_connected_s"] / bare["all_confirmed_s"], 2)
                results.setdefault((b, size), []).append(r)
                all_ok &= bool(r.get("ok"))
                emit(r)
    delays = []
    a.build = builds[0]
    for _ in range(a.repeat if a.speakers else 0):
        r = asyncio.run(delay_once(a, cpws[builds[0]]))
        delays.append(r)
        all_ok &= bool(r.get("ok"))
        emit(r)
    if results:
        print("\n| build | targets | runs ok | " + " | ".join(h for _, h in SUMMARY) + " |")
        print("|" + "---|" * (len(SUMMARY) + 3))
        for (b, size), rs in results.items():
            cells = []
            for k, _ in SUMMARY:
                vals = [r[k] for r in rs if isinstance(r.get(k), (int, float))]
                cells.append(f"{statistics.median(vals):g}" if vals else "-")
            print(f"| {b} | {size} | {sum(bool(r['ok']) for r in rs)}/{len(rs)} | " + " | ".join(cells) + " |")
    if delays:
        print("\n| run | speakers | beeps | p50 ms | p95 ms | min | max | console send late p95 / max ms |")
        print("|---|---|---|---|---|---|---|---|")
        for i, r in enumerate(delays, 1):
            print(f"| {i} | {r['speakers']} | {r.get('delays')} | {r.get('delay_ms_p50')} | {r.get('delay_ms_p95')} "
                  f"| {r.get('delay_ms_min')} | {r.get('delay_ms_max')} "
                  f"| {r.get('console_send_late_ms_p95')} / {r.get('console_send_late_ms_max')} |")
        vals = [v for r in delays for s in r["per_speaker"] for v in s.get("delay_ms", [])]
        if vals:
            print(f"\nconsole -> speaker delay over {len(vals)} beeps: p50 {statistics.median(vals):.1f} ms,"
                  f" p95 {pct(vals, 95):.1f}, min {min(vals):.1f}, max {max(vals):.1f}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
