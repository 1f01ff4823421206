"""Benchmark: N concurrent outbound SIP calls with media, placed through the control channel.

    python -m benchmarks.sip_calls --calls 200 --rate 10
    python -m benchmarks.sip_calls --ramp 50,100,200 --repeat 3 --rate 10
    python -m benchmarks.sip_calls --ramp 200,500 --builds source,wheel --rate 50   # side by side, ratios

What one run does (everything on 127.0.0.1, every process started here is stopped here by PID):

1. Starts the gateway as its own process (`python -m gateway.cli serve --set ...`): proxy "none"
   (outbound only), sip.max_workers = ceil(N / calls_per_worker) + 1, sip.warm_workers (2),
   calls.dial_timeout_s large. calls_per_worker is probed once (`python -m sip.worker --probe`).
2. Starts a SIPp UAS (own scenario below: 100, 200 + SDP, waits for the BYE) with -rtp_echo, so
   every RTP packet a worker sends comes back to it: media flows both ways on every call. (A worker
   bridges each call to an AudioMediaPort and, with noVad, sends RTP all the time.)
3. A GatewayClient (dispatcher) dials N calls paced at --rate calls/s; connect time is measured
   from sending `call.dial` to receiving the call's `call.state` "connected" event.
4. On --media of the calls (default 10) the client also opens `media.open` (both ways, 16 kHz)
   and streams 20 ms PCM frames; frames coming back (SIPp's echo) are counted.
5. With all calls up: settles 2 s, then samples CPU (utime+stime) and memory (RSS, PSS) of the
   gateway process plus all its descendants (the SIP workers) from /proc over --steady seconds,
   plus machine-wide CPU (/proc/stat) and loopback UDP datagrams (/proc/net/snmp).
6. Hangs every call up (paced at --hangup-rate), waits for every "ended" event, and checks that
   SIPp counted N successful calls.

Results are printed as JSON lines (one per run) and, at the end, a table of medians.
"""

from __future__ import annotations

from sip.config import RTP_PORTS_PER_WORKER
import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.client import GatewayClient, RemoteError

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-dispatcher"
CLK_TCK = os.sysconf("SC_CLK_TCK")
FRAME_MS = 20
PCM_FRAME = b"".join(struct.pack("<h", int(3000 * math.sin(2 * math.pi * 440 * i / 16000)))
                     for i in range(320))  # 20 ms of 440 Hz at 16 kHz

# A UAS that answers at once and keeps the call until the caller's BYE. 100 Trying goes out
# first so the INVITE is not retransmitted while SIPp is busy; the 200 is retransmitted (on its own
# timer, from 500 ms) until the ACK. A copy of the INVITE that arrives after the 200 (a busy caller
# whose retransmission timer fired before it read our 100 and 200: a fan-out's worker) is absorbed.
# It must not lead back to sending the 200: SIPp sends nothing while a message of its own still
# retransmits, so the call then sat at that send until the ACK came, "unexpected" there, and was
# aborted (137-211 of 500 calls in the broadcast benchmark; docs/benchmarks.md;
# tests/benchmarks/test_uas_hold_scenario.py).
UAS_HOLD = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uas-hold-echo">
  <recv request="INVITE" crlf="true"/>
  <send>
    <![CDATA[
      SIP/2.0 100 Trying
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
      a=sendrecv
    ]]>
  </send>
  <recv request="INVITE" optional="true"/>
  <recv request="ACK" crlf="true"/>
  <recv request="BYE"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  <timewait milliseconds="500"/>
</scenario>
"""


# ---- /proc sampling -------------------------------------------------------------------------


def _ppid_map() -> dict[int, int]:
    out: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rindex(")") + 2:].split()
        out[int(d)] = int(rest[1])
    return out


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants alive now."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _ppid_map().items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return 0
    rest = s[s.rindex(")") + 2:].split()
    return int(rest[11]) + int(rest[12])  # utime + stime


def _mem_kb(pid: int) -> tuple[int, int]:
    rss = pss = 0
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/status") as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    rss = int(ln.split()[1])
                    break
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for ln in f:
                if ln.startswith("Pss:"):
                    pss = int(ln.split()[1])
                    break
    return rss, pss


@dataclass
class Sample:
    t: float
    cpu_s: float  # utime + stime of the processes, seconds
    per_pid: dict[int, float]  # pid -> cpu seconds
    rss_kb: int
    pss_kb: int
    procs: int
    machine: tuple[int, int]  # (busy, total) jiffies, all CPUs
    udp_in: int  # Udp InDatagrams, whole machine


def _machine() -> tuple[int, int]:
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals) - idle, sum(vals)


def _udp_in() -> int:
    with open("/proc/net/snmp") as f:
        lines = [ln.split() for ln in f if ln.startswith("Udp:")]
    return int(lines[1][lines[0].index("InDatagrams")])


def sample(pids: list[int]) -> Sample:
    per = {p: _cpu_ticks(p) / CLK_TCK for p in pids}
    rss = pss = 0
    for p in pids:
        r, s = _mem_kb(p)
        rss, pss = rss + r, pss + s
    return Sample(time.monotonic(), sum(per.values()), per, rss, pss, len(pids), _machine(), _udp_in())


# ---- helpers --------------------------------------------------------------------------------


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_udp_block(span: int, offset: int, lo: int = 20000, hi: int = 64000) -> int:
    """A base port `k*1000 + offset` whose `span` UDP ports are free now. RTP ranges of workers
    start at multiples of 1000 (sip.rtp_port_base = 10000) and use their first few ports, so
    blocks placed at an offset into a thousand do not collide with them."""
    import random
    starts = list(range(lo + offset, hi - span, 1000))
    random.shuffle(starts)
    for base in starts:
        if all(udp_free(base + k) for k in range(span)):
            return base
    raise RuntimeError(f"no free UDP block of {span} ports")


class SippUas:
    """One SIPp UAS process (own scenario, -rtp_echo unless echo=False), started and stopped by PID."""

    def __init__(self, scenario: str, calls: int, timeout_s: float, *, echo: bool = True, trace: bool = False) -> None:
        self.echo = echo
        self.trace = trace  # -trace_msg: every message sent and received, timed, in messages.log
        self.dir = Path(tempfile.mkdtemp(prefix="bench-sipp-"))
        (self.dir / "uas.xml").write_text(scenario)
        self.port = free_udp_block(1, 900)
        self.media_port = free_udp_block(4, 950)
        self.calls, self.timeout_s = calls, timeout_s
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def uri(self) -> str:
        return f"sip:bench@127.0.0.1:{self.port}"

    async def start(self, attempts: int = 3) -> None:
        """Start SIPp; when a port found free was taken before SIPp bound it, again on new ports."""
        for attempt in range(attempts):
            try:
                return await self._start()
            except RuntimeError:
                if attempt == attempts - 1 or "errno = 98" not in self.errors():
                    raise
                (self.dir / "errors.log").unlink(missing_ok=True)
                self.port, self.media_port = free_udp_block(1, 900), free_udp_block(4, 950)

    async def _start(self) -> None:
        args = ["sipp", "-sf", str(self.dir / "uas.xml"), "-i", "127.0.0.1", "-p", str(self.port),
                "-mi", "127.0.0.1", "-mp", str(self.media_port), *(["-rtp_echo"] if self.echo else []), "-m", str(self.calls),
                "-nostdin", "-timeout", f"{int(self.timeout_s)}s", "-timeout_error",
                "-trace_stat", "-stf", str(self.dir / "stats.csv"), "-fd", "1",
                "-trace_err", "-error_file", str(self.dir / "errors.log"),
                *(["-trace_msg", "-message_file", str(self.messages)] if self.trace else [])]
        self.proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, cwd=self.dir)
        async with asyncio.timeout(10):  # bound by this SIPp (another process may take a port found free)
            while self.port not in udp_ports_of({self.proc.pid}).get(self.proc.pid, []):
                if self.proc.returncode is not None:
                    raise RuntimeError(f"sipp exited with {self.proc.returncode}: {self.errors()[:300]}")
                await asyncio.sleep(0.02)

    @property
    def messages(self) -> Path:
        return self.dir / "messages.log"

    def errors(self) -> str:
        f = self.dir / "errors.log"
        return f.read_text(errors="replace") if f.exists() else ""

    async def wait(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None
        try:
            async with asyncio.timeout(timeout):
                rc = await self.proc.wait()
        except TimeoutError:
            await self.stop()
            rc = self.proc.returncode
        stats: dict[str, str] = {}
        f = self.dir / "stats.csv"
        if f.exists():
            lines = [ln for ln in f.read_text(errors="replace").splitlines() if ln.strip()]
            if len(lines) >= 2:
                stats = dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))
        return {"rc": rc, "successful": int(stats.get("SuccessfulCall(C)", "0") or 0),
                "failed": int(stats.get("FailedCall(C)", "0") or 0), "errors": self.errors()}

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                async with asyncio.timeout(3):
                    await self.proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()


def udp_ports_of(pids: set[int]) -> dict[int, list[int]]:
    """UDP ports bound by each pid (from `ss -uanpH`)."""
    out: dict[int, list[int]] = {}
    text = subprocess.run(["ss", "-uanpH"], capture_output=True, text=True).stdout
    for ln in text.splitlines():
        parts = ln.split()
        if len(parts) < 5 or "pid=" not in ln:
            continue
        port = int(parts[3].rsplit(":", 1)[1])
        for chunk in ln.split("pid=")[1:]:
            pid = int(chunk.split(",", 1)[0])
            if pid in pids:
                out.setdefault(pid, []).append(port)
    return out


def build_env(build: str) -> dict[str, str]:
    """The environment that makes the gateway (and the workers it starts) load `build`'s pjsua2:
    "source" (scripts/build_pjsua2.sh), "wheel" (PyPI, 4 calls a worker) or "auto"."""
    return {**os.environ, "DISPATCH_GATEWAY_PJSUA2": build}


def probe_calls_per_worker(python: str, build: str = "auto", limit: int = 64) -> int:
    out = subprocess.run([python, "-m", "sip.worker", "--probe", "--probe-limit", str(limit)], cwd=ROOT,
                         capture_output=True, timeout=120, env=build_env(build)).stdout.decode()
    counts = [json.loads(ln).get("ok_calls", 0) for ln in out.splitlines() if ln.startswith('{"ok_calls"')]
    if not counts:
        raise RuntimeError(f"probe printed nothing: {out!r}")
    return max(counts)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, math.ceil(q / 100 * len(v)) - 1))
    return v[k]


def _toml(v: Any) -> str:
    if isinstance(v, str):
        return v  # --set takes strings bare (see gateway.config overrides)
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


@dataclass
class CallRec:
    index: int
    t_dial: float
    call_id: str | None = None
    t_reply: float | None = None
    error: str | None = None


async def close_client(client: GatewayClient | None, tasks: list[asyncio.Task]) -> None:
    """A run's teardown: close its client (whatever state it is in), cancel and reap its tasks."""
    if client is not None:
        with contextlib.suppress(Exception):
            await client.close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def wait_until(changed: asyncio.Event, pred: Any, timeout: float, tick: float = 1.0) -> bool:
    """Wait until pred() holds, looking again whenever `changed` is set (at least every `tick` s)."""
    end = time.monotonic() + timeout
    while not pred():
        left = end - time.monotonic()
        if left <= 0:
            return False
        changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(left, tick)):
                await changed.wait()
    return True


@dataclass
class Watch:
    """call.state events of every call, with the time each arrived."""

    states: dict[str, list[tuple[str, float, dict]]] = field(default_factory=dict)
    connected: set[str] = field(default_factory=set)
    ended: set[str] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    overflow: int = 0

    async def read(self, client: GatewayClient) -> None:
        async for ev in client.events():
            if ev.get("type") == "events.overflow":
                self.overflow += 1
            if ev.get("type") != "call.state":
                continue
            d = ev["data"]
            cid, st = d["call_id"], d["state"]
            self.states.setdefault(cid, []).append((st, time.monotonic(), d))
            if st == "connected":
                self.connected.add(cid)
            elif st == "ended":
                self.ended.add(cid)
            self.changed.set()

    def first(self, cid: str, state: str) -> tuple[float, dict] | None:
        for st, t, d in self.states.get(cid, ()):
            if st == state:
                return t, d
        return None

    async def until(self, pred: Any, timeout: float) -> bool:
        return await wait_until(self.changed, pred, timeout)


# ---- gateway process ------------------------------------------------------------------------


class GatewayProcess:
    def __init__(self, workdir: Path, *, python: str, max_workers: int, warm: int, cpw: int,
                 max_in_flight: int, log_level: str, rtp_base: int, build: str = "auto",
                 rtp_ports_per_worker: int = RTP_PORTS_PER_WORKER) -> None:
        self.workdir = workdir
        self.env = build_env(build)
        self.control_port = free_tcp_port()
        self.http_port = free_tcp_port()
        sip_base = free_udp_block(10 * (max_workers + 2), 200)
        self.rtp_base, self.max_workers, self.sip_base = rtp_base, max_workers, sip_base
        # Worker i takes RTP ports rtp_base + per*i .. +per-1 (sip/config.py): past 65535 it cannot bind.
        per = rtp_ports_per_worker
        self.rtp_overflow = sum(1 for i in range(max_workers) if rtp_base + per * i + per - 1 > 65535)
        if self.rtp_overflow:
            print(f"warning: {self.rtp_overflow} of {max_workers} workers get RTP ports past 65535 "
                  f"(sip.rtp_port_base={rtp_base} + {per}*i)", file=sys.stderr)
        sets = {
            "gateway.data_dir": str(workdir / "data"),
            "gateway.log_format": "json",
            "gateway.log_level": log_level,
            "control.port": self.control_port,
            "control.max_in_flight": max_in_flight,
            "http.port": self.http_port,
            "sip.proxy": "none",
            "sip.port": sip_base,
            "sip.worker_base_port": sip_base + 10,
            "sip.rtp_port_base": rtp_base,
            "sip.rtp_ports_per_worker": per,
            "sip.max_workers": max_workers,
            "sip.warm_workers": min(warm, max_workers),
            "sip.calls_per_worker": cpw,
            "sip.log_dir": str(workdir / "sip-logs"),
            "calls.dial_timeout_s": 300,
            "auth.dev_tokens": False,
        }
        self.args = [python, "-m", "gateway.cli", "serve"]
        for k, v in sets.items():
            self.args += ["--set", f"{k}={_toml(v)}"]
        self.args += ["--set", f'auth.tokens={{"{TOKEN}" = {{principal = "bench", role = "dispatcher"}}}}']
        self.proc: subprocess.Popen | None = None
        self.url = f"ws://127.0.0.1:{self.control_port}/v1/control"

    def start(self, timeout: float = 60) -> float:
        t0 = time.monotonic()
        self.log = open(self.workdir / "gateway.log", "wb")
        self.proc = subprocess.Popen(self.args, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=self.env)
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}; see {self.workdir}/gateway.log")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.control_port), 0.2):
                return time.monotonic() - t0
            time.sleep(0.05)
        raise RuntimeError("gateway did not open its control port")

    def stop(self, timeout: float = 60) -> int | None:
        if self.proc is None:
            return None
        tree = process_tree(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # Workers it started and left behind (if any): ours too, by PID.
        for pid in tree[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.log.close()
        return self.proc.returncode


# ---- one run --------------------------------------------------------------------------------


async def run_once(n: int, a: argparse.Namespace, cpw: int) -> dict[str, Any]:
    build = getattr(a, "build", "auto")
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-sip-{build}-{n}-"))
    max_workers = a.max_workers or (math.ceil(n / cpw) + 1)
    per = max(RTP_PORTS_PER_WORKER, 2 * cpw)  # one worker's calls fit its RTP range
    gw = GatewayProcess(workdir, python=a.python, max_workers=max_workers, warm=a.warm, cpw=cpw,
                        max_in_flight=a.max_in_flight, log_level=a.log_level, rtp_base=a.rtp_port_base,
                        build=build, rtp_ports_per_worker=per)
    res: dict[str, Any] = {"build": build, "calls": n, "rate": a.rate, "calls_per_worker": cpw,
                           "rtp_ports_per_worker": per, "max_workers": max_workers,
                           "rtp_port_base": a.rtp_port_base, "rtp_overflow_workers": gw.rtp_overflow,
                           "media_channels": min(a.media, n), "workdir": str(workdir)}
    uas = SippUas(UAS_HOLD, calls=n, timeout_s=n / a.rate + a.steady + 300)
    client: GatewayClient | None = None
    tasks: list[asyncio.Task] = []
    stop_media = asyncio.Event()
    try:
        res["gateway_start_s"] = round(gw.start(), 2)
        await uas.start()
        assert gw.proc is not None
        # Idle baseline: the gateway and its warm workers, no calls, over 3 s.
        idle_pids = process_tree(gw.proc.pid)
        idle0 = sample(idle_pids)
        await asyncio.sleep(3)
        idle = sample(idle_pids)
        idle_dt = idle.t - idle0.t
        res["idle_main_cpu_cores"] = round((idle.per_pid[gw.proc.pid] - idle0.per_pid[gw.proc.pid]) / idle_dt, 4)
        idle_workers = [p for p in idle_pids if p != gw.proc.pid]
        res["idle_worker_cpu_cores"] = round(
            sum(idle.per_pid[p] - idle0.per_pid.get(p, 0.0) for p in idle_workers) / idle_dt / max(1, len(idle_workers)), 4)
        client = await GatewayClient.connect(gw.url, TOKEN, call_timeout=a.call_timeout,
                                             client_name="bench-sip-calls", event_queue=100_000,
                                             audio_queue=10_000)
        await client.subscribe(client.hello.get("seq", 0))
        w = Watch()
        tasks.append(asyncio.create_task(w.read(client)))
        recs: list[CallRec] = []

        async def dial(rec: CallRec) -> None:
            try:
                r = await client.call("call.dial", target=uas.uri)
                rec.call_id, rec.t_reply = r["call_id"], time.monotonic()
            except RemoteError as e:
                rec.error = f"dial:{e.reason}"
            except Exception as e:  # noqa: BLE001  (timeout, disconnect): a failure, with its cause
                rec.error = f"dial:{type(e).__name__}"

        cpu_before = sample(process_tree(gw.proc.pid))
        t0 = time.monotonic()
        dials = []
        for i in range(n):  # paced: call i is sent at t0 + i / rate
            delay = t0 + i / a.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            rec = CallRec(i, time.monotonic())
            recs.append(rec)
            dials.append(asyncio.create_task(dial(rec)))
        await asyncio.gather(*dials)
        res["dial_send_s"] = round(time.monotonic() - t0, 2)

        def settled() -> bool:
            return all(r.error or (r.call_id in w.connected or r.call_id in w.ended) for r in recs)

        ok = await w.until(settled, a.connect_timeout)
        reply_ms = [(r.t_reply - r.t_dial) * 1000 for r in recs if r.t_reply is not None]
        t_all = time.monotonic()
        cpu_ramp = sample(process_tree(gw.proc.pid))
        connect_ms, failures = [], {}
        up: list[str] = []
        for r in recs:
            if r.error:
                failures[r.error] = failures.get(r.error, 0) + 1
                continue
            c = w.first(r.call_id, "connected")
            if c is None:
                e = w.first(r.call_id, "ended")
                why = (f"ended:{e[1].get('cause')}/{e[1].get('sip_code')}" if e else "no-connected-event")
                failures[why] = failures.get(why, 0) + 1
                continue
            connect_ms.append((c[0] - r.t_dial) * 1000)
            up.append(r.call_id)
        last_conn = max((w.first(c, "connected")[0] for c in up), default=t0)  # type: ignore[index]
        res.update({
            "connected": len(up), "failed": n - len(up), "failures": failures, "settled": ok,
            "all_connected_s": round(last_conn - t0, 2) if up else None,
            # calls connected per second over the whole ramp (first dial to last connect)
            "calls_per_s_sustained": round(len(up) / (last_conn - t0), 1) if up and last_conn > t0 else None,
            "connect_ms_p50": round(statistics.median(connect_ms), 1) if connect_ms else None,
            "connect_ms_p99": round(pct(connect_ms, 99), 1) if connect_ms else None,
            "connect_ms_max": round(max(connect_ms), 1) if connect_ms else None,
            "dial_reply_ms_p50": round(statistics.median(reply_ms), 1) if reply_ms else None,
            "dial_reply_ms_p99": round(pct(reply_ms, 99), 1) if reply_ms else None,
            "ramp_cpu_s": round(cpu_ramp.cpu_s - cpu_before.cpu_s, 2),
            "ramp_wall_s": round(t_all - t0, 2),
        })

        # Console media on a subset: media.open both ways, 20 ms frames out, count frames back.
        chans: dict[int, str] = {}
        for cid in up[: a.media]:
            try:
                m = await client.call("media.open", call_id=cid, direction="both", rate=16000)
                chans[m["channel"]] = cid
            except RemoteError as e:
                failures[f"media.open:{e.reason}"] = failures.get(f"media.open:{e.reason}", 0) + 1
        got: dict[int, int] = {ch: 0 for ch in chans}
        sent = [0]

        async def send_frames() -> None:
            seq, nxt = 0, time.monotonic()
            while not stop_media.is_set():
                for ch in chans:
                    with contextlib.suppress(Exception):
                        await client.send_audio(ch, seq, seq * 320, PCM_FRAME)
                        sent[0] += 1
                seq += 1
                nxt += FRAME_MS / 1000
                await asyncio.sleep(max(0, nxt - time.monotonic()))

        async def recv_frames() -> None:
            async for fr in client.audio():
                if fr.channel in got:
                    got[fr.channel] += 1

        # --unlisten: a worker forwards every call's audio to the gateway until told otherwise
        # (sip/worker/pjcalls.py CallPort.listening = True); media.open(out) + media.close on a call makes
        # the gateway send `listen off`, so only console-bound calls cost IPC audio.
        unlistened = 0
        if a.unlisten:
            for cid in up[a.media:]:
                with contextlib.suppress(RemoteError):
                    m = await client.call("media.open", call_id=cid, direction="out", rate=16000)
                    await client.call("media.close", channel=m["channel"])
                    unlistened += 1
        res["unlistened"] = unlistened

        if chans:
            tasks.append(asyncio.create_task(send_frames()))
            tasks.append(asyncio.create_task(recv_frames()))

        # Steady state: everything up, media flowing.
        await asyncio.sleep(2)
        pids = process_tree(gw.proc.pid)
        # RTP ports the workers really bound, against their configured ranges.
        wpids = {p for p in pids if p != gw.proc.pid}
        ports = [pt for pl in udp_ports_of(wpids).values() for pt in pl]
        sip_ports = {gw.sip_base} | {gw.sip_base + 10 + 10 * i for i in range(max_workers)}
        rtp_lo, rtp_hi = gw.rtp_base, gw.rtp_base + per * max_workers
        res["worker_udp_ports"] = len(ports)
        res["worker_rtp_ports_outside_range"] = sorted(p for p in ports if p not in sip_ports
                                                       and not rtp_lo <= p < min(rtp_hi, 65536))[:10]
        sipp_cpu0 = _cpu_ticks(uas.proc.pid) / CLK_TCK if uas.proc else 0.0
        s0 = sample(pids)
        got0, sent0 = sum(got.values()), sent[0]
        await asyncio.sleep(a.steady)
        s1 = sample(pids)
        sipp_cpu1 = _cpu_ticks(uas.proc.pid) / CLK_TCK if uas.proc else 0.0
        dt = s1.t - s0.t
        cpu = s1.cpu_s - s0.cpu_s
        mb, mt = s1.machine[0] - s0.machine[0], s1.machine[1] - s0.machine[1]
        live = max(1, len(up))
        main_pid = gw.proc.pid
        worker_cpu = sorted((s1.per_pid[p] - s0.per_pid.get(p, 0.0)) / dt for p in pids if p != main_pid)
        dropped = [c for c in up if c in w.ended]
        res.update({
            "steady_s": round(dt, 1),
            "procs": s1.procs,
            "workers_running": s1.procs - 1,
            "cpu_cores": round(cpu / dt, 3),  # gateway + workers, in cores
            "cpu_ms_per_call_s": round(cpu / dt / live * 1000, 2),  # CPU ms per call per second
            "gateway_main_cpu_cores": round((s1.per_pid[main_pid] - s0.per_pid[main_pid]) / dt, 3),
            "workers_cpu_cores": round(sum(worker_cpu), 3),
            "worker_cpu_cores_max": round(worker_cpu[-1], 3) if worker_cpu else None,
            "calls_dropped_before_hangup": len(dropped),
            "machine_busy_pct": round(100 * mb / mt, 1) if mt else None,
            "sipp_cpu_cores": round((sipp_cpu1 - sipp_cpu0) / dt, 3),
            "rss_mb": round(s1.rss_kb / 1024, 1),
            "pss_mb": round(s1.pss_kb / 1024, 1),
            "idle_rss_mb": round(idle.rss_kb / 1024, 1),
            "idle_procs": idle.procs,
            "rss_mb_per_call": round(s1.rss_kb / 1024 / live, 2),
            "pss_mb_per_call": round(s1.pss_kb / 1024 / live, 2),
            "pss_mb_per_call_over_idle": round((s1.pss_kb - idle.pss_kb) / 1024 / live, 2),
            "udp_in_per_s": round((s1.udp_in - s0.udp_in) / dt),
            "media_frames_sent_per_s": round((sent[0] - sent0) / dt),
            "media_frames_back_per_s": round((sum(got.values()) - got0) / dt),
        })
        stop_media.set()

        # Hang up everything (paced), wait for every "ended", then for SIPp's verdict.
        t_h = time.monotonic()
        hang_err: dict[str, int] = {}
        hang_ms: list[float] = []

        async def hangup(cid: str) -> None:
            for attempt in range(50):  # bounded: rate-limited (max_in_flight) is retried
                t = time.monotonic()
                try:
                    await client.call("call.hangup", call_id=cid)
                    hang_ms.append((time.monotonic() - t) * 1000)
                    return
                except Exception as e:  # noqa: BLE001
                    k = e.reason if isinstance(e, RemoteError) else type(e).__name__
                    hang_err[k] = hang_err.get(k, 0) + 1
                    if k != "rate-limited":
                        return
                    await asyncio.sleep(0.2)

        hangs = []
        for i, cid in enumerate(up):
            delay = t_h + i / a.hangup_rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            hangs.append(asyncio.create_task(hangup(cid)))
        await asyncio.gather(*hangs)
        all_ended = await w.until(lambda: all(c in w.ended for c in up), 60)
        res["hangup_s"] = round(time.monotonic() - t_h, 2)
        res["hangup_errors"] = hang_err
        res["hangup_ms_p50"] = round(statistics.median(hang_ms), 1) if hang_ms else None
        res["hangup_ms_p99"] = round(pct(hang_ms, 99), 1) if hang_ms else None
        res["all_ended"] = all_ended
        causes: dict[str, int] = {}
        for cid in up:
            e = w.first(cid, "ended")
            k = str(e[1].get("cause")) if e else "none"
            causes[k] = causes.get(k, 0) + 1
        res["end_causes"] = causes
        sr = await uas.wait(30 if len(up) == n else 5)
        res["sipp_rc"] = sr["rc"]
        res["sipp_successful"] = sr["successful"]
        res["sipp_failed"] = sr["failed"]
        if sr["errors"].strip():
            res["sipp_errors_head"] = sr["errors"].strip().splitlines()[:3]
        res["events_overflow"] = w.overflow
    finally:
        stop_media.set()
        await close_client(client, tasks)
        await uas.stop()
        t_stop = time.monotonic()
        res["gateway_rc"] = await asyncio.to_thread(gw.stop)
        res["gateway_stop_s"] = round(time.monotonic() - t_stop, 2)
    res["ok"] = (res.get("connected") == n and res.get("sipp_successful") == n and res.get("all_ended") is True)
    return res


# ---- main -----------------------------------------------------------------------------------

SUMMARY_KEYS = [
    ("connected", "connected"), ("all_connected_s", "all up (s)"), ("calls_per_s_sustained", "calls/s"), ("connect_ms_p50", "p50 ms"),
    ("connect_ms_p99", "p99 ms"), ("workers_running", "workers"), ("cpu_cores", "CPU cores"),
    ("cpu_ms_per_call_s", "CPU ms/call/s"), ("gateway_main_cpu_cores", "main proc cores"),
    ("machine_busy_pct", "machine busy %"),
    ("rss_mb", "RSS MB"), ("pss_mb", "PSS MB"), ("pss_mb_per_call", "PSS MB/call"),
    ("udp_in_per_s", "UDP in/s"), ("hangup_ms_p99", "hangup p99 ms"), ("sipp_successful", "SIPp ok"),
]


def machine_info() -> dict[str, str]:
    model = ""
    with contextlib.suppress(Exception):
        for ln in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if ln.startswith("Model name:"):
                model = ln.split(":", 1)[1].strip()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "sip", "gateway"], cwd=ROOT,
                           capture_output=True, text=True).stdout.split()
    return {"nproc": str(os.cpu_count()), "cpu": model, "python": platform.python_version(),
            "kernel": platform.release(), "git": head + (" (sip/gateway modified: " + " ".join(dirty[1::2]) + ")" if dirty else "")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.sip_calls", description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=200, help="concurrent calls (one size)")
    ap.add_argument("--ramp", default=None, help="comma-separated sizes, e.g. 50,100,200 (overrides --calls)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per size; medians reported")
    ap.add_argument("--rate", type=float, default=10.0, help="dials per second")
    ap.add_argument("--hangup-rate", type=float, default=20.0, help="hangups per second")
    ap.add_argument("--media", type=int, default=10, help="calls that also get media.open + frames")
    ap.add_argument("--steady", type=float, default=10.0, help="seconds of steady-state sampling")
    ap.add_argument("--warm", type=int, default=2, help="sip.warm_workers")
    ap.add_argument("--max-workers", type=int, default=0, help="sip.max_workers (0: ceil(calls/cpw)+1)")
    ap.add_argument("--max-in-flight", type=int, default=32, help="control.max_in_flight (the gateway default)")
    ap.add_argument("--log-level", default="info", help="gateway.log_level")
    ap.add_argument("--rtp-port-base", type=int, default=10000,
                    help="sip.rtp_port_base (worker i: base + 100*i; the config refuses a range past 65535)")
    ap.add_argument("--unlisten", action="store_true",
                    help="turn off call -> gateway audio on calls without console media (A/B of the default)")
    ap.add_argument("--connect-timeout", type=float, default=120.0, help="wait for the last connect")
    ap.add_argument("--call-timeout", type=float, default=120.0, help="client timeout per request")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--json", default=None, help="append each run's result to this JSONL file")
    ap.add_argument("--builds", default="auto",
                    help="pjsua2 builds run side by side, e.g. source,wheel (DISPATCH_GATEWAY_PJSUA2 of each "
                         "gateway); source probes up to the largest size and gets 2 RTP ports a call")
    ap.add_argument("--wheel-max-calls", type=int, default=0,
                    help="skip wheel runs above this many calls (4 a worker: 500 calls = 125 workers)")
    a = ap.parse_args(argv)
    sizes = [int(x) for x in a.ramp.split(",")] if a.ramp else [a.calls]
    builds = a.builds.split(",")
    info = machine_info()
    cpws = {b: probe_calls_per_worker(a.python, b, limit=max(64, max(sizes)) if b != "wheel" else 64)
            for b in builds}
    print(json.dumps({"machine": info, "calls_per_worker": cpws, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}), flush=True)
    results: dict[tuple[str, int], list[dict]] = {}
    for size in sizes:
        for _ in range(a.repeat):
            for b in builds:  # interleaved, so the builds see the same machine load
                if b == "wheel" and a.wheel_max_calls and size > a.wheel_max_calls:
                    continue
                a.build = b
                r = asyncio.run(run_once(size, a, cpws[b]))
                results.setdefault((b, size), []).append(r)
                print(json.dumps(r), flush=True)
                if a.json:
                    with open(a.json, "a") as f:
                        f.write(json.dumps({**r, "machine": info}) + "\n")
    print(summary_table(results, builds))
    return 0 if all(r["ok"] for rs in results.values() for r in rs) else 1


def _median(rs: list[dict], k: str) -> float | None:
    vals = [r[k] for r in rs if isinstance(r.get(k), (int, float))]
    return statistics.median(vals) if vals else None


RATIO_KEYS = [("cpu_cores", "CPU"), ("pss_mb_per_call", "PSS/call"), ("connect_ms_p50", "connect p50"),
              ("connect_ms_p99", "connect p99"), ("calls_per_s_sustained", "calls/s"), ("workers_running", "workers")]


def summary_table(results: dict[tuple[str, int], list[dict]], builds: list[str]) -> str:
    """Medians per build and size; with two builds, their ratios (first / second) per size."""
    out = ["", "| build | calls | runs ok | " + " | ".join(h for _, h in SUMMARY_KEYS) + " |",
           "|" + "---|" * (len(SUMMARY_KEYS) + 3)]
    for (b, size), rs in results.items():
        cells = [f"{v:g}" if (v := _median(rs, k)) is not None else "-" for k, _ in SUMMARY_KEYS]
        out.append(f"| {b} | {size} | {sum(r['ok'] for r in rs)}/{len(rs)} | " + " | ".join(cells) + " |")
    if len(builds) == 2:
        x, y = builds
        out += ["", f"| calls | " + " | ".join(f"{h} {x}/{y}" for _, h in RATIO_KEYS) + " |",
                "|" + "---|" * (len(RATIO_KEYS) + 1)]
        for size in sorted({s for _, s in results}):
            if (x, size) not in results or (y, size) not in results:
                continue
            cells = []
            for k, _ in RATIO_KEYS:
                vx, vy = _median(results[(x, size)], k), _median(results[(y, size)], k)
                cells.append(f"{vx / vy:.2f}" if vx is not None and vy else "-")
            out.append(f"| {size} | " + " | ".join(cells) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
