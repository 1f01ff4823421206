"""Benchmark: conferences mixed by a worker's conference bridge; join time, CPU, mouth-to-ear delay.

    python -m benchmarks.conferences --layout 1x50,10x5 --repeat 3

Everything on 127.0.0.1; every process started here is stopped here by PID. The gateway process,
SIPp UAS, /proc sampling and machine description come from `benchmarks.sip_calls`.

One run per layout CxM (C conferences of M members; `1x50` and `10x5` are the issue's):
1. Gateway as its own process (sip.proxy none, the pjsua2 build of --build, calls_per_worker from
   the probe, 2 RTP ports a call): a conference lives on the worker of its first member, so with
   the source build every member of every conference is on one worker.
2. Conference 0 has two baresip phones, the talker and the listener
   (tests.peers.baresip.BaresipPhone, module sndfile dumps what each encoded and decoded); every
   other member is a call to one SIPp UAS (answers, holds until BYE, no RTP echo: an echoing member
   would feed the mix back into itself). The talker plays a WAV of silence with a 50 ms 1 kHz beep
   every --beep-interval s.
3. `conference.create` C times, then every `conference.add` sent at once (members of all
   conferences interleaved). Join time: from the first `conference.add` sent to every member's
   `conference.member` "joined" event (and per conference, to its last member joined).
4. CPU (utime+stime) of gateway + workers over --steady s with everyone joined; RSS/PSS.
5. Mouth-to-ear delay, talker to listener, the broadcast benchmark's method: the talker's
   `dump-*-enc.wav` appears when it encodes its first frame, the listener's `dump-*-dec.wav` when it
   decodes its first (both polled every 5 ms); beep k's onset (first sample over 1/16 full scale
   after >= 200 ms of quiet) is sent at enc0 + e_k and heard at dec0 + d_k; each heard beep is
   paired with the last beep sent before it, delay = (dec0 + d_k) - (enc0 + e_k). Includes
   baresip's jitter buffer (1-10 frames) and audio_buffer, as a phone's would.
6. `conference.end` on each, every member's call ended, SIPp's count of successful calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.broadcast import _appears, _onsets
from benchmarks.sip_calls import (
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

BEEP_RATE = 8000  # the talker's WAV (baresip's aufile source)


def beep_wav_pcm(seconds: float, interval: float, lead: float = 2.0, ms: int = 50) -> bytes:
    """Silence with a 1 kHz beep of `ms` every `interval` s after `lead` s, PCM16LE at 8 kHz."""
    import numpy as np
    x = np.zeros(int(seconds * BEEP_RATE), dtype="<i2")
    n = BEEP_RATE * ms // 1000
    beep = (np.sin(2 * np.pi * 1000 * np.arange(n) / BEEP_RATE) * 0.4 * 32767).astype("<i2")
    t = lead
    while t + ms / 1000 < seconds:
        i = int(t * BEEP_RATE)
        x[i:i + n] = beep
        t += interval
    return x.tobytes()


def pair_delays(sent: list[float], heard: list[float], window: float) -> list[float]:
    """Each heard onset paired with the last sent onset before it (within `window` s): the delays."""
    out = []
    for h in heard:
        before = [s for s in sent if s <= h]
        if before and h - before[-1] <= window:
            out.append(h - before[-1])
    return out


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


async def run_once(confs: int, size: int, a: argparse.Namespace, cpw: int) -> dict[str, Any]:
    from tests.audio import read_wav
    from tests.peers.baresip import BaresipPhone, write_wav

    n = confs * size
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-conf-{confs}x{size}-"))
    max_workers = math.ceil(n / cpw) + 1
    gw = GatewayProcess(workdir, python=a.python, max_workers=max_workers, warm=1, cpw=cpw,
                        max_in_flight=max(32, 2 * n), log_level=a.log_level, rtp_base=10000,
                        build=a.build, rtp_ports_per_worker=max(RTP_PORTS_PER_WORKER, 2 * cpw))
    res: dict[str, Any] = {"build": a.build, "layout": f"{confs}x{size}", "members": n,
                           "calls_per_worker": cpw, "max_workers": max_workers, "workdir": str(workdir)}
    play_s = 120.0
    wav = write_wav(workdir / "beeps.wav", beep_wav_pcm(play_s, a.beep_interval), BEEP_RATE)
    talker, listener = BaresipPhone(user="talker", play_wav=wav), BaresipPhone(user="listener",
                                                                               play_seconds=play_s)
    uas = SippUas(UAS_HOLD, calls=n - 2, timeout_s=play_s + 120, echo=False)
    client: GatewayClient | None = None
    tasks: list[asyncio.Task] = []
    try:
        res["gateway_start_s"] = round(gw.start(), 2)
        await uas.start()
        await talker.start()
        await listener.start()
        assert gw.proc is not None
        client = await GatewayClient.connect(gw.url, TOKEN, call_timeout=60, client_name="bench-conferences",
                                             event_queue=100_000)
        await client.subscribe(client.hello.get("seq", 0))
        w = MemberWatch()
        tasks.append(asyncio.create_task(w.read(client)))
        cids = [(await client.call("conference.create", title=f"bench {i}"))["conference_id"]
                for i in range(confs)]
        # member j of conference i; conference 0 starts with the talker and the listener
        plan = [(i, j) for j in range(size) for i in range(confs)]
        targets = {(0, 0): talker.uri, (0, 1): listener.uri}
        enc0 = asyncio.create_task(_appears(lambda: talker.recordings("enc"), 0.005, 120))
        dec0 = asyncio.create_task(_appears(lambda: listener.recordings("dec"), 0.005, 120))
        tasks += [enc0, dec0]
        members: dict[tuple[int, int], dict] = {}
        errors: dict[str, int] = {}

        async def add(i: int, j: int) -> None:
            target = targets.get((i, j), f"sip:m{i}-{j}@127.0.0.1:{uas.port}")
            try:
                members[(i, j)] = await client.call("conference.add", conference_id=cids[i], target=target)
            except RemoteError as e:
                errors[e.reason] = errors.get(e.reason, 0) + 1

        s0 = sample(process_tree(gw.proc.pid))
        t0 = time.monotonic()
        await asyncio.gather(*(add(i, j) for i, j in plan))
        res["add_replies_s"] = round(time.monotonic() - t0, 2)

        def joined() -> bool:
            return all(w.at(m["member_id"], "joined") or w.at(m["member_id"], "left") for m in members.values())

        settled = await w.until(joined, a.join_timeout)
        s1 = sample(process_tree(gw.proc.pid))
        join = {k: w.at(m["member_id"], "joined") for k, m in members.items()}
        ok_join = [t - t0 for t in join.values() if t is not None]
        per_conf = [max((join[(i, j)] or math.inf) - t0 for j in range(size) if (i, j) in join)
                    for i in range(confs)]
        res.update({
            "settled": settled, "joined": len(ok_join), "add_errors": errors,
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
        for cid in cids:
            with contextlib.suppress(RemoteError):
                await client.call("conference.end", conference_id=cid)
        res["all_left"] = await w.until(lambda: all(w.at(m["member_id"], "left") for m in members.values()), 60)
        for p in (talker, listener):
            with contextlib.suppress(TimeoutError):
                await p.wait_log("terminated", timeout=10)
        t_enc, t_dec = await enc0, await dec0
        delays: list[float] = []
        if t_enc and t_dec:
            xs, rs = read_wav(talker.recordings("enc")[-1])
            xh, rh = read_wav(listener.recordings("dec")[-1])
            sent = [t_enc + o for o in _onsets(xs, rs)]
            heard = [t_dec + o for o in _onsets(xh, rh)]
            delays = [d * 1000 for d in pair_delays(sent, heard, window=min(0.5, a.beep_interval / 2))]
            res.update({"beeps_sent": len(sent), "beeps_heard": len(heard),  # nearest sent beep, to see an offset
                        "heard_minus_nearest_sent_ms": [round(min((h - x for x in sent), key=abs) * 1000, 1)
                                                        for h in heard] if sent else []})
        res.update({"beeps_paired": len(delays),
                    "delay_ms_p50": round(statistics.median(delays), 1) if delays else None,
                    "delay_ms_p90": round(pct(delays, 90), 1) if delays else None,
                    "delay_ms_min": round(min(delays), 1) if delays else None,
                    "delay_ms_max": round(max(delays), 1) if delays else None})
        sr = await uas.wait(30)
        res.update({"sipp_successful": sr["successful"], "sipp_failed": sr["failed"]})
        res["events_overflow"] = w.overflow
    finally:
        await close_client(client, tasks)
        for p in (talker, listener):
            with contextlib.suppress(Exception):
                await p.stop()
        await uas.stop()
        res["gateway_rc"] = await asyncio.to_thread(gw.stop)
    res["ok"] = (res.get("joined") == n and res.get("sipp_successful") == n - 2 and bool(res.get("beeps_paired")))
    return res


SUMMARY = [("joined", "joined"), ("all_joined_s", "all joined s"), ("join_s_p50", "join p50 s"),
           ("conference_all_joined_s_p50", "conf joined p50 s"), ("join_cpu_cores", "join CPU"),
           ("workers", "workers"), ("steady_cpu_cores", "steady CPU"), ("cpu_ms_per_member_s", "CPU ms/member/s"),
           ("steady_main_cpu_cores", "main proc CPU"), ("pss_mb", "PSS MB"), ("delay_ms_p50", "delay p50 ms"),
           ("delay_ms_p90", "delay p90 ms"), ("beeps_paired", "beeps")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.conferences", description=__doc__.split("\n")[0])
    ap.add_argument("--layout", default="1x50,10x5", help="comma-separated CxM: C conferences of M members")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--build", default="auto", help="DISPATCH_GATEWAY_PJSUA2 of the gateway: source, wheel, auto")
    ap.add_argument("--steady", type=float, default=10.0)
    ap.add_argument("--join-timeout", type=float, default=60.0)
    ap.add_argument("--beep-interval", type=float, default=1.0)
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--json", default=None, help="append each run's result to this JSONL file")
    a = ap.parse_args(argv)
    layouts = [tuple(int(v) for v in x.split("x")) for x in a.layout.split(",")]
    if any(m < 2 or (c == 1 and m < 2) for c, m in layouts):
        ap.error("conference 0 needs at least 2 members (talker and listener)")
    info = machine_info()
    cpw = probe_calls_per_worker(a.python, a.build, limit=max([64, *(c * m for c, m in layouts)]))
    print(json.dumps({"machine": info, "calls_per_worker": cpw, "build": a.build,
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}), flush=True)
    results: dict[str, list[dict]] = {}
    for _ in range(a.repeat):
        for c, m in layouts:
            r = asyncio.run(run_once(c, m, a, cpw))
            results.setdefault(f"{c}x{m}", []).append(r)
            print(json.dumps(r), flush=True)
            if a.json:
                with open(a.json, "a") as f:
                    f.write(json.dumps({**r, "machine": info}) + "\n")
    print("\n| layout | runs ok | " + " | ".join(h for _, h in SUMMARY) + " |")
    print("|" + "---|" * (len(SUMMARY) + 2))
    for lay, rs in results.items():
        cells = []
        for k, _ in SUMMARY:
            vals = [r[k] for r in rs if isinstance(r.get(k), (int, float))]
            cells.append(f"{statistics.median(vals):g}" if vals else "-")
        print(f"| {lay} | {sum(bool(r['ok']) for r in rs)}/{len(rs)} | " + " | ".join(cells) + " |")
    return 0 if all(r["ok"] for rs in results.values() for r in rs) else 1


if __name__ == "__main__":
    sys.exit(main())
