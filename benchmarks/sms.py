"""Benchmark: one sms.send to N recipients through the gateway to a local Twilio stub.

    python -m benchmarks.sms --recipients 10000 --rate 200 --repeat 3            # direct to the stub
    python -m benchmarks.sms --recipients 1000 --rate 200 --prism                 # via Prism (spec check)

Everything on 127.0.0.1. The gateway runs as its own process (`python -m gateway.cli serve`, started
and stopped by PID; helpers from tests/gateway/test_sms_crash.py), SQLite in a fresh temp data dir,
sms.provider = twilio, sms.rate_per_s = --rate, sms.burst = --burst, sms.in_flight = --in-flight.
This process runs the stateful Twilio Messages stub (tests/peers/twilio_stub.py: answers creates,
then POSTs signed status callbacks queued -> sent -> delivered to the gateway's webhook, 50 ms
apart) and, with --prism, Prism 5.14 as a validating proxy in between (API calls only; callbacks
go straight to the gateway).

Per run:
- accept: the `sms.send` round trip (validation, N rows stored in one transaction, N `queued`
  events), measured by the client.
- send rate: monotonic arrival time of every create at the stub; achieved rate = (N-1) / (last -
  first arrival), and the busiest 1 s window; compared with the configured rate (+ burst).
- all final: from `sms.send` sent until the client has an `sms.status` event in a final state
  (delivered/undelivered/failed) for every message (events.subscribe before sending). Bounded by
  --final-timeout; what is not final by then is counted.
- checks: creates per number at the stub (lost / duplicated), the store's counts at the end,
  gateway CPU (utime+stime from /proc) and RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway.client import GatewayClient
from tests.gateway.test_sms_crash import GatewayProc, numbers, sms_gateway_overrides
from tests.gateway.test_sms_twilio import SID, TOKEN
from tests.peers.prism import ensure_prism, prism_proxy, repo_root, twilio_spec_for_prism
from tests.peers.twilio_stub import TwilioStub

FINAL = ("delivered", "undelivered", "failed")
CLK_TCK = os.sysconf("SC_CLK_TCK")


class TimedStub(TwilioStub):
    """The stub, noting when each create arrives (monotonic)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.arrivals: list[float] = []

    async def _create(self, request):  # type: ignore[no-untyped-def]
        self.arrivals.append(time.monotonic())
        return await super()._create(request)


def _proc_cpu_rss(pid: int) -> tuple[float, int]:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    cpu = (int(parts[11]) + int(parts[12])) / CLK_TCK
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:"))
    return cpu, rss


def _busiest_1s(times: list[float]) -> int:
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


async def run_once(a: argparse.Namespace, spec_dir: Path) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-sms-"))
    stub = TimedStub(SID, TOKEN)
    await stub.start()
    res: dict[str, Any] = {"recipients": a.recipients, "rate_per_s": a.rate, "burst": a.burst,
                           "in_flight": a.in_flight, "via_prism": a.prism, "workdir": str(work)}
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(stub.stop)
        api = stub.url
        if a.prism:
            spec, _ = twilio_spec_for_prism(spec_dir)
            binary = await ensure_prism(repo_root() / ".cache" / "prism")
            prism = await stack.enter_async_context(prism_proxy(binary, spec, stub.url, log=work / "prism.log"))
            api = prism.url
        gw = GatewayProc(sms_gateway_overrides(work / "data", api, rate_per_s=a.rate, burst=a.burst,
                                               in_flight=a.in_flight, log_level=a.log_level), work)
        stack.push_async_callback(gw.stop)
        res["gateway_start_s"] = round(await gw.start(), 2)
        assert gw.proc is not None
        client = await GatewayClient.connect(gw.url, "tok-dispatcher", reconnect=False, call_timeout=120)
        stack.push_async_callback(client.close)
        await client.subscribe(client.hello["seq"])
        final_at: dict[str, float] = {}
        seen_overflow = 0

        async def read() -> None:
            nonlocal seen_overflow
            async for ev in client.events():
                if ev.get("type") == "events.overflow":
                    seen_overflow += 1
                elif ev.get("type") == "sms.status" and ev["data"]["state"] in FINAL:
                    final_at.setdefault(ev["data"]["message_id"], time.monotonic())

        reader = asyncio.get_running_loop().create_task(read())
        stack.callback(reader.cancel)
        to = numbers(a.recipients, base=8613700000000)
        cpu0, _ = _proc_cpu_rss(gw.proc.pid)
        t0 = time.monotonic()
        sent = await client.call("sms.send", to=to, body="Flood warning district 3: move to high ground now.")
        t_acc = time.monotonic()
        res["accept_s"] = round(t_acc - t0, 3)
        deadline = t0 + a.recipients / a.rate + a.final_timeout
        while len(final_at) < a.recipients and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        cpu1, rss = _proc_cpu_rss(gw.proc.pid)
        arr = sorted(stub.arrivals)
        res["creates"] = len(arr)
        if len(arr) > 1:
            span = arr[-1] - arr[0]
            res["first_create_after_send_s"] = round(arr[0] - t0, 3)
            res["send_span_s"] = round(span, 2)
            res["achieved_rate_per_s"] = round((len(arr) - 1) / span, 1)
            res["busiest_1s"] = _busiest_1s(arr)
        res["all_final_s"] = round(max(final_at.values()) - t0, 2) if len(final_at) == a.recipients else None
        res["final_events"] = len(final_at)
        res["not_final"] = a.recipients - len(final_at)
        res["last_final_after_last_create_s"] = round(max(final_at.values()) - arr[-1], 2) if final_at and arr else None
        # Read straight from SQLite: sms.get answers all N rows in one frame, over 1 MiB at 10,000
        # (the client's default max_size), which closes the connection.
        with contextlib.closing(sqlite3.connect(f"file:{gw.store_path}?mode=ro", uri=True, timeout=10)) as db:
            res["counts"] = dict(db.execute("SELECT state, COUNT(*) FROM sms WHERE send_id = ? GROUP BY state",
                                            (sent["send_id"],)).fetchall())
        res["lost_at_stub"] = len(set(to) - set(stub.creates))
        res["duplicated_at_stub"] = sum(1 for v in stub.creates.values() if v > 1)
        res["create_attempts"] = stub.create_attempts
        res["gateway_cpu_s"] = round(cpu1 - cpu0, 2)
        res["gateway_cpu_pct_of_core"] = round(100 * (cpu1 - cpu0) / max(time.monotonic() - t0, 1e-9), 1)
        res["gateway_rss_mb"] = round(rss / 1024, 1)
        res["events_overflow"] = seen_overflow
    return res


def machine_info() -> dict[str, str]:
    model = ""
    with contextlib.suppress(Exception):
        for ln in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if ln.startswith("Model name:"):
                model = ln.split(":", 1)[1].strip()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo_root(), capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "gateway", "sms"], cwd=repo_root(),
                           capture_output=True, text=True).stdout.split()
    return {"nproc": str(os.cpu_count()), "cpu": model, "python": platform.python_version(),
            "git": head + (" (modified: " + " ".join(dirty[1::2]) + ")" if dirty else ""),
            "loadavg": " ".join(open("/proc/loadavg").read().split()[:3]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


ROWS = [
    ("sms.send accepted and stored (RPC round trip)", "accept_s", "s"),
    ("first create at the stub after sms.send", "first_create_after_send_s", "s"),
    ("achieved send rate (stub arrivals)", "achieved_rate_per_s", "/s"),
    ("busiest 1 s window at the stub", "busiest_1s", "creates"),
    ("first to last create", "send_span_s", "s"),
    ("sms.send -> every status final", "all_final_s", "s"),
    ("last final after last create", "last_final_after_last_create_s", "s"),
    ("messages not final at the end", "not_final", ""),
    ("lost / duplicated at the stub", None, ""),
    ("gateway CPU (send -> all final)", "gateway_cpu_pct_of_core", "% of a core"),
    ("gateway RSS at the end", "gateway_rss_mb", "MB"),
]


def table(runs: list[dict[str, Any]]) -> str:
    out = ["| measure | median | runs |", "|---|---|---|"]
    for label, key, unit in ROWS:
        if key is None:
            vals = [f"{r['lost_at_stub']} / {r['duplicated_at_stub']}" for r in runs]
            out.append(f"| {label} | {vals[len(vals) // 2]} | {' ; '.join(vals)} |")
            continue
        vals = [r.get(key) for r in runs]
        nums = [v for v in vals if isinstance(v, (int, float))]
        med = statistics.median(nums) if nums else None
        out.append(f"| {label} | {med if med is not None else '-'} {unit} | "
                   f"{' / '.join('-' if v is None else str(v) for v in vals)} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.sms", description=__doc__.split("\n")[0])
    ap.add_argument("--recipients", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=200.0, help="sms.rate_per_s")
    ap.add_argument("--burst", type=float, default=20.0, help="sms.burst")
    ap.add_argument("--in-flight", type=int, default=20, help="sms.in_flight")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--prism", action="store_true", help="API calls through Prism (validating proxy)")
    ap.add_argument("--final-timeout", type=float, default=60.0,
                    help="seconds past recipients/rate to wait for every final status")
    ap.add_argument("--log-level", default="info", help="gateway.log_level")
    a = ap.parse_args(argv)
    runs = []
    spec_dir = Path(tempfile.mkdtemp(prefix="bench-sms-spec-"))
    for i in range(a.repeat):
        r = asyncio.run(run_once(a, spec_dir))
        print(json.dumps({"run": i + 1, **r}), flush=True)
        runs.append(r)
    print(json.dumps({"machine": machine_info(), "args": vars(a)}), flush=True)
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
